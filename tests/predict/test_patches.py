"""Patches on the device: the crop is the slide's pixels; pooling does not change the scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.predict.patches import PatchClassifier, crop_patches
from wsdal_wsi.slide import open_slide


@pytest.fixture(scope="module")
def slide(mini_data):
    with open_slide(mini_data.slides[0].slide_path) as s:
        yield s


def test_patches_are_the_slides_pixels_around_each_candidate(slide):
    batch = torch.from_numpy(slide.read_region((100.0, 50.0), (300, 200), target_mpp=0.25))[None]
    b = torch.tensor([0, 0])
    x, y = torch.tensor([40, 250]), torch.tensor([60, 150])
    patches = crop_patches(batch, b, x, y, 32)
    assert patches.shape == (2, 3, 32, 32) and patches.dtype == torch.uint8
    for k in range(2):
        ref = slide.read_region((100.0 + x[k].item() - 16, 50.0 + y[k].item() - 16), (32, 32),
                                target_mpp=0.25)  # fmt: skip
        np.testing.assert_array_equal(patches[k].permute(1, 2, 0).numpy(), ref)


def test_pooled_batches_give_the_scores_of_one_big_batch(tiny_model):
    g = torch.Generator().manual_seed(0)
    patches = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g)
    xy = torch.stack([torch.arange(50), torch.arange(50) * 2], dim=1)
    direct = tiny_model.predict_proba(patches).numpy()
    thr = float(np.median(direct))
    for batch_size in (1, 7, 64):
        pool = PatchClassifier(tiny_model, batch_size=batch_size, threshold=thr)
        for start in range(0, 50, 9):  # tiles of 9 candidates
            pool.add(patches[start : start + 9], xy[start : start + 9])
        pool.flush()
        got_xy, got_p = pool.results()
        keep = direct >= thr
        assert pool.n_classified == 50
        np.testing.assert_array_equal(got_xy, xy.numpy()[keep])
        np.testing.assert_allclose(got_p, direct[keep], rtol=1e-5, atol=1e-6)


def test_an_empty_pool_gives_empty_results(tiny_model):
    pool = PatchClassifier(tiny_model, batch_size=4, threshold=0.5)
    pool.add(torch.zeros((0, 3, 32, 32), dtype=torch.uint8), torch.zeros((0, 2), dtype=torch.long))
    pool.flush()
    xy, p = pool.results()
    assert xy.shape == (0, 2) and p.shape == (0,) and pool.n_classified == 0


def _with_cascade(tiny_model_path, tmp_path, patches, *, skip: float):
    """The tiny model with a first stage whose cut lets ``1 - skip`` of ``patches`` through."""
    from wsdal_wsi.model.cascade import CascadeSpec
    from wsdal_wsi.model.file import load_model, read_spec, save_model
    from wsdal_wsi.model.nets import CascadeNet, ProjNet

    spec = read_spec(tiny_model_path)
    net = ProjNet(**spec.arch_kwargs)
    net.load_state_dict(torch.load(tiny_model_path, weights_only=True)["state_dict"])
    torch.manual_seed(3)
    first = CascadeNet(width=4).eval()
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        z = np.sort(first.logit((patches.float() / 255 - mean) / std).numpy())
    k = int(skip * len(z))
    cut = float((z[k - 1] + z[k]) / 2)  # between two logits: no tie at the cut
    table = ({"final_threshold": 0.0, "first_threshold": cut},)
    cascade = CascadeSpec(arch="cascade_cnn", arch_kwargs={"width": 4, "downsample": 2},
                          table=table, keep_fraction=0.995)  # fmt: skip
    path = save_model(tmp_path / "cascade.pt", net.eval(), spec, cascade=(first, cascade))
    return load_model(path, device="cpu"), cut


def test_the_cascade_sends_only_first_stage_passes_to_the_final_network(tiny_model_path, tmp_path):
    g = torch.Generator().manual_seed(4)
    patches = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8, generator=g)
    xy = torch.stack([torch.arange(60), torch.arange(60) * 3], dim=1)
    model, cut = _with_cascade(tiny_model_path, tmp_path, patches, skip=0.7)
    passes = (model.first_stage_logits(patches) >= cut).numpy()
    assert passes.sum() == 18
    direct = model.predict_proba(patches).numpy()
    thr = float(np.quantile(direct, 0.3))
    for batch_size in (1, 8, 256):
        pool = PatchClassifier(model, batch_size=batch_size, threshold=thr)
        assert pool.first_threshold == cut
        for start in range(0, 60, 11):
            pool.add(patches[start : start + 11], xy[start : start + 11])
        pool.flush()
        got_xy, got_p = pool.results()
        keep = passes & (direct >= thr)
        assert pool.n_classified == 60 and pool.n_full == 18
        np.testing.assert_array_equal(got_xy, xy.numpy()[keep])
        np.testing.assert_allclose(got_p, direct[keep], rtol=1e-5, atol=1e-6)
    # without the cascade every candidate reaches the final network
    off = PatchClassifier(model, batch_size=16, threshold=thr, cascade=False)
    off.add(patches, xy)
    off.flush()
    assert off.first_threshold is None and off.n_full == 60
    assert len(off.results()[1]) == int((direct >= thr).sum())
