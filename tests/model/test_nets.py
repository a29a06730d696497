"""Tests of the networks: shapes, registry, pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.model.nets import (
    CamNet,
    CascadeNet,
    DualViewNet,
    ProjNet,
    ResNet18Trunk,
    build_network,
    fold_batchnorm,
    load_trunk_weights,
)


def test_shapes_at_80px():
    x = torch.randn(2, 3, 80, 80)
    trunk = ResNet18Trunk(width=8)
    assert trunk(x).shape == (2, 64, 3, 3)
    cam = CamNet(width=8)
    assert cam(x).shape == (2, 2)
    assert cam.activation_map(x).shape == (2, 2, 3, 3)
    # the patch logit is the spatial max of the activation map
    torch.testing.assert_close(cam(x), cam.activation_map(x).amax(dim=(2, 3)))
    dual = DualViewNet(width=8)
    lw, ls, lf, f = dual.forward_views(x, x.flip(-1))
    assert lw.shape == ls.shape == lf.shape == (2, 2) and f.shape == (2, 128)
    proj = ProjNet(width=8, proj_dim=16)
    logits, z = proj.forward_train(x)
    assert logits.shape == (2, 2) and z.shape == (2, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))


def test_projnet_resizes_to_input_px():
    net = ProjNet(width=4, input_px=64)
    seen = []
    net.trunk.conv1.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    net(torch.randn(1, 3, 32, 32))
    assert seen[0][-1] == 64


def test_registry():
    assert isinstance(build_network("cam_resnet18", width=4), CamNet)
    with pytest.raises(ConfigError, match="unknown architecture 'x'"):
        build_network("x")
    with pytest.raises(ConfigError, match="bad arguments"):
        build_network("cam_resnet18", depth=3)
    with pytest.raises(ConfigError, match="width must be"):
        ResNet18Trunk(width=2)


def test_trunk_matches_torchvision_layout(tmp_path):
    ref = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    trunk = ResNet18Trunk(width=64)
    assert load_trunk_weights(trunk, path) == len(ref.state_dict()) - 2  # fc.weight, fc.bias
    torch.testing.assert_close(trunk.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    with pytest.raises(InputError, match="width 8"):
        load_trunk_weights(ResNet18Trunk(width=8), path)


def test_bad_pretrained_file(tmp_path):
    p = tmp_path / "w.pth"
    p.write_text("nope")
    with pytest.raises(InputError, match=r"w\.pth: not a ResNet-18 weights file"):
        load_trunk_weights(ResNet18Trunk(width=64), p)


@pytest.mark.parametrize(
    "net",
    [ProjNet(width=8, proj_dim=8), CamNet(width=8), DualViewNet(width=4), CascadeNet(width=8)],
    ids=["proj", "cam", "dual", "cascade"],
)
def test_folding_batch_norms_keeps_the_outputs(net):
    torch.manual_seed(1)
    for m in net.modules():  # running statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(5, 3, 48, 48)
    before = net(x)
    fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(net.train())


def test_cascade_net_pools_then_scores():
    net = CascadeNet(width=4).eval()
    x = torch.randn(3, 3, 80, 80)
    torch.testing.assert_close(net.pool(x), torch.nn.functional.avg_pool2d(x, 2))
    out = net(x)
    assert out.shape == (3, 2) and torch.equal(out[:, 0], torch.zeros(3))
    torch.testing.assert_close(out[:, 1], net.logit(x))
    with pytest.raises(ConfigError, match="CascadeNet"):
        CascadeNet(width=1)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pretrained_weights_that_would_run_code_are_refused_in_one_line(tmp_path):
    """Finding 4: the --pretrained error spanned 10 lines and invited weights_only=False."""
    marker = tmp_path / "PWNED"
    p = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _RunsCode(marker)}, p)
    with pytest.raises(InputError) as info:
        load_trunk_weights(ResNet18Trunk(width=64), p)
    msg = str(info.value)
    assert "\n" not in msg and "weights_only" not in msg and "tampered" in msg
    assert not marker.exists()


def test_an_earlier_wsdal_model_initialises_the_trunk(tmp_path):
    from wsdal_wsi.model.file import ModelSpec, save_model
    from wsdal_wsi.model.nets import ProjNet

    torch.manual_seed(3)
    net = ProjNet(width=8, proj_dim=8)
    spec = ModelSpec(arch="proj_resnet18", arch_kwargs={"width": 8, "proj_dim": 8},
                     patch_size_px=80, target_mpp=0.25, mean=(0.5,) * 3, std=(0.25,) * 3,
                     threshold=0.5, class_names=("Non-mitosis", "Mitosis"), candidate_params={},
                     merge_radius_um=5.0, provenance={})  # fmt: skip
    path = save_model(tmp_path / "model.pt", net, spec)
    trunk = ResNet18Trunk(width=8)
    n = load_trunk_weights(trunk, path)
    assert n == len(trunk.state_dict())
    for k, v in trunk.state_dict().items():
        assert torch.equal(v, net.trunk.state_dict()[k]), k
    with pytest.raises(InputError, match="width 16"):
        load_trunk_weights(ResNet18Trunk(width=16), path)
