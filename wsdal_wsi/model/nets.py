"""The networks of WS-DAL: a ResNet-18 trunk and the three heads built on it.

* :class:`CamNet` — ResNet-18 trunk, 1x1-convolution class-activation head,
  patch logit = spatial max of the activation map (the NS classifier and the
  baseline).
* :class:`DualViewNet` — two trunks (weak view, strong view), each with its own
  activation head, plus a fused linear head on the concatenated pooled features
  (DMU).
* :class:`ProjNet` — trunk + linear classifier head + MLP projection head whose
  output is L2-normalised (CSDGL, the final model).
* :class:`CascadeNet` — a small convolutional network on the patch at half
  resolution: the cascade's first stage, distilled from the final model, which
  decides which candidates the final model scores.

The trunk has torchvision's ResNet-18 layout and parameter names
(``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so ImageNet weights load into it
when ``width=64``; a narrower trunk (``width=16`` for the ``demo``/``tiny``
presets) is the same architecture family with fewer channels.

Every network's ``forward`` takes a normalised float batch ``(B, 3, P, P)`` and
returns class logits ``(B, 2)`` (index 1 = mitosis), which is what
:mod:`wsdal_wsi.model.file` relies on. :func:`build_network` constructs one
from its registry name and keyword arguments (the model file stores both).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock

from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.model.torch_files import read_torch_file

__all__ = [
    "ARCHITECTURES",
    "CamNet",
    "CascadeNet",
    "DualViewNet",
    "ProjNet",
    "ResNet18Trunk",
    "build_network",
    "find_imagenet_weights",
    "fold_batchnorm",
    "load_trunk_weights",
]

log = logging.getLogger(__name__)

#: File name of torchvision's ImageNet ResNet-18 checkpoint in the torch hub cache.
IMAGENET_RESNET18_FILE = "resnet18-f37072fd.pth"


class ResNet18Trunk(nn.Module):
    """ResNet-18 feature extractor (no pooling, no classifier).

    Parameters
    ----------
    width : int
        Channels of the first stage; the four stages have ``width * (1, 2, 4, 8)``
        channels. 64 is torchvision's ResNet-18 (ImageNet weights fit).

    Notes
    -----
    Input ``(B, 3, H, W)`` float; output ``(B, 8 * width, ceil(H / 32), ceil(W / 32))``
    (``(B, 512, 3, 3)`` for an 80 px patch at ``width=64``).
    """

    def __init__(self, *, width: int = 64) -> None:
        super().__init__()
        if width < 4 or width > 256:
            raise ConfigError(f"ResNet-18 width must be in [4, 256], got {width}")
        self.width = int(width)
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = width
        self.layer1 = self._make_layer(width, stride=1)
        self.layer2 = self._make_layer(width * 2, stride=2)
        self.layer3 = self._make_layer(width * 4, stride=2)
        self.layer4 = self._make_layer(width * 8, stride=2)
        self.out_channels = width * 8
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, *, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        blocks = [BasicBlock(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes
        blocks.append(BasicBlock(planes, planes))
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class CamNet(nn.Module):
    """ResNet-18 trunk + class-activation head; patch logit = spatial max.

    Parameters
    ----------
    width : int
        Trunk width (see :class:`ResNet18Trunk`).
    num_classes : int
        Output classes (2: non-mitosis, mitosis).
    """

    def __init__(self, *, width: int = 64, num_classes: int = 2) -> None:
        super().__init__()
        self.trunk = ResNet18Trunk(width=width)
        self.cam = nn.Conv2d(self.trunk.out_channels, num_classes, kernel_size=1)

    def activation_map(self, x: Tensor) -> Tensor:
        """Class-activation map ``(B, num_classes, h, w)`` of a batch ``(B, 3, P, P)``."""
        return self.cam(self.trunk(x))

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (B, C), pooled features (B, 8 * width))``."""
        fmap = self.trunk(x)
        logits = torch.amax(self.cam(fmap), dim=(2, 3))
        return logits, fmap.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.amax(self.activation_map(x), dim=(2, 3))


class DualViewNet(nn.Module):
    """Two trunks (weak and strong view), their activation heads, and a fused head.

    ``forward(weak, strong)`` returns ``(logits_weak, logits_strong, logits_fused,
    features)``, each logit ``(B, C)``, ``features (B, 16 * width)`` the
    concatenated pooled features of both trunks (used for the SCD). Called with
    one batch (``forward(x)``) it feeds ``x`` to both trunks and returns the fused
    logits only, like the other networks.
    """

    def __init__(self, *, width: int = 64, num_classes: int = 2) -> None:
        super().__init__()
        self.weak = CamNet(width=width, num_classes=num_classes)
        self.strong = CamNet(width=width, num_classes=num_classes)
        self.fused = nn.Linear(2 * self.weak.trunk.out_channels, num_classes)

    def forward_views(self, weak: Tensor, strong: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        lw, fw = self.weak.forward_features(weak)
        ls, fs = self.strong.forward_features(strong)
        feats = torch.cat([fw, fs], dim=1)
        return lw, ls, self.fused(feats), feats

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_views(x, x)[2]


class ProjNet(nn.Module):
    """ResNet-18 trunk + linear classifier + MLP projection head (CSDGL).

    Parameters
    ----------
    width : int
        Trunk width.
    num_classes : int
        Output classes.
    proj_dim : int
        Size of the L2-normalised projection.
    input_px : int, optional
        Resize inputs to this side first (upstream resized 80 px patches to 224 px
        for this stage; default: no resize).
    """

    def __init__(
        self,
        *,
        width: int = 64,
        num_classes: int = 2,
        proj_dim: int = 128,
        input_px: int | None = None,
    ) -> None:
        super().__init__()
        if input_px is not None and not 8 <= input_px <= 1024:
            raise ConfigError(f"input_px must be in [8, 1024] or None, got {input_px}")
        if not 2 <= num_classes <= 64 or not 1 <= proj_dim <= 4096:
            raise ConfigError(
                f"num_classes must be in [2, 64] and proj_dim in [1, 4096], got "
                f"{num_classes} and {proj_dim}"
            )
        self.trunk = ResNet18Trunk(width=width)
        self.input_px = input_px
        c = self.trunk.out_channels
        self.classifier = nn.Linear(c, num_classes)
        self.projection = nn.Sequential(
            nn.Linear(c, c), nn.ReLU(inplace=True), nn.Linear(c, proj_dim)
        )

    def _resize(self, x: Tensor) -> Tensor:
        if self.input_px and x.shape[-1] != self.input_px:
            x = nn.functional.interpolate(
                x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False
            )
        return x

    def features(self, x: Tensor) -> Tensor:
        """Pooled trunk features ``(B, 8 * width)``."""
        return self.trunk(self._resize(x)).mean(dim=(2, 3))

    def forward_train(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (B, C), projection (B, proj_dim), L2-normalised float32)``."""
        feats = self.features(x)
        proj = nn.functional.normalize(self.projection(feats).float(), dim=1)
        return self.classifier(feats), proj

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class CascadeNet(nn.Module):
    """The cascade's first stage: three strided convolutions on the patch at half resolution.

    About 2 MFLOP per 80 px patch at ``width=16`` (the final model: about 15 MFLOP at
    ResNet-18 width 16, 230 at width 64). Trained to predict the final model's logit.

    Parameters
    ----------
    width : int
        Channels of the first convolution (then ``2 width`` and ``4 width``).
    downsample : int
        Average-pooling factor applied to the input first (2: 0.25 µm/px patches
        are seen at 0.5 µm/px).

    Notes
    -----
    Input ``(B, 3, P, P)`` normalised float; output ``(B, 2)`` logits ``(0, z)``,
    so that ``softmax(...)[:, 1] = sigmoid(z)`` like the other networks.
    """

    def __init__(self, *, width: int = 16, downsample: int = 2) -> None:
        super().__init__()
        if width < 2 or width > 128 or downsample < 1:
            raise ConfigError(
                f"CascadeNet needs 2 <= width <= 128 and downsample >= 1, "
                f"got width={width}, downsample={downsample}"
            )
        self.downsample = int(downsample)
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, 1)

    def pool(self, x: Tensor) -> Tensor:
        """The input average-pooled by ``downsample`` (2: two strided additions, cheap on a CPU).

        Pooling is linear per channel, so pooling raw RGB and normalising after gives
        the same input as normalising first.
        """
        if self.downsample == 1:
            return x
        if self.downsample == 2:
            h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
            rows = x[..., 0:h:2, :w] + x[..., 1:h:2, :w]
            return (rows[..., 0::2] + rows[..., 1::2]).mul_(0.25)
        return nn.functional.avg_pool2d(x, self.downsample)

    def logit_pooled(self, x: Tensor) -> Tensor:
        """``(B,)`` logit of an input already passed through :meth:`pool`."""
        f = self.features(x)
        pooled = torch.cat([torch.amax(f, dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]

    def logit(self, x: Tensor) -> Tensor:
        """``(B,)`` logit of mitosis (the final model's, as well as it learnt it)."""
        return self.logit_pooled(self.pool(x))

    def forward(self, x: Tensor) -> Tensor:
        z = self.logit(x)
        return torch.stack([torch.zeros_like(z), z], dim=1)


#: Registry of architecture names (stored in model files) to constructors.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "cam_resnet18": CamNet,
    "dual_resnet18": DualViewNet,
    "proj_resnet18": ProjNet,
    "cascade_cnn": CascadeNet,
}


def build_network(arch: str, **kwargs: Any) -> nn.Module:
    """Construct a network from its registry name and constructor arguments.

    Raises
    ------
    ConfigError
        For an unknown name or bad arguments.
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    try:
        return ARCHITECTURES[arch](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for architecture {arch!r}: {kwargs} ({exc})") from exc


def _fold_pair(owner: nn.Module, conv: str, bn: str) -> None:
    c, b = getattr(owner, conv, None), getattr(owner, bn, None)
    if isinstance(c, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
        setattr(owner, conv, fuse_conv_bn_eval(c, b))
        setattr(owner, bn, nn.Identity())


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a convolution into it (inference only).

    In eval mode a batch norm is an affine map per channel, so the convolution
    before it can absorb it (``conv(x) * scale + shift``): the same outputs up to
    float rounding, one operation instead of two. Pairs are a convolution followed by
    a batch norm in an ``nn.Sequential``, and ``conv1/bn1``, ``conv2/bn2`` of the
    ResNet-18 trunk and its blocks. ``module`` must be in eval mode; it is changed in
    place and returned.
    """
    if module.training:
        raise ValueError("fold_batchnorm needs a module in eval mode")
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d):
                    m[i] = fuse_conv_bn_eval(m[i], m[i + 1])
                    m[i + 1] = nn.Identity()
        if isinstance(m, (BasicBlock, ResNet18Trunk)):
            _fold_pair(m, "conv1", "bn1")
            _fold_pair(m, "conv2", "bn2")
    return module


def find_imagenet_weights() -> Path | None:
    """Return torchvision's ResNet-18 ImageNet checkpoint in the torch hub cache, if present.

    Nothing is downloaded: the file is used only when it already exists
    (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``).
    """
    path = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_RESNET18_FILE
    return path if path.is_file() else None


def load_trunk_weights(trunk: ResNet18Trunk, path: str | Path) -> int:
    """Load ResNet-18 weights (a torchvision-layout state dict) into ``trunk``.

    The ``fc.*`` entries are ignored. Returns the number of tensors loaded.

    Raises
    ------
    InputError
        If the file cannot be read safely, or its tensors do not fit the trunk
        (a trunk narrower than 64 channels cannot take ImageNet weights).
    """
    path = Path(path)
    state = read_torch_file(path, what="ResNet-18 weights file")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: pretrained weights are not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    if any(k.startswith("trunk.") for k in state):  # a wsdal model file: its trunk only
        state = {k.removeprefix("trunk."): v for k, v in state.items() if k.startswith("trunk.")}
    own = trunk.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    if bad or missing:
        raise InputError(
            f"{path}: weights do not fit a ResNet-18 trunk of width {trunk.width} "
            f"({len(bad)} mismatched, {len(missing)} missing tensors; "
            "ImageNet weights need width 64)"
        )
    trunk.load_state_dict(state)
    return len(state)
