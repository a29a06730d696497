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
        pool = PatchClassifier(tiny_model, batch_size=batch_size, keep_from=thr)
        for start in range(0, 50, 9):  # tiles of 9 candidates
            pool.add(patches[start : start + 9], xy[start : start + 9])
        pool.flush()
        got_xy, got_p = pool.results()
        keep = direct >= thr
        assert pool.n_classified == 50
        np.testing.assert_array_equal(got_xy, xy.numpy()[keep])
        np.testing.assert_allclose(got_p, direct[keep], rtol=1e-5, atol=1e-6)


def test_an_empty_pool_gives_empty_results(tiny_model):
    pool = PatchClassifier(tiny_model, batch_size=4, keep_from=0.5)
    pool.add(torch.zeros((0, 3, 32, 32), dtype=torch.uint8), torch.zeros((0, 2), dtype=torch.long))
    pool.flush()
    xy, p = pool.results()
    assert xy.shape == (0, 2) and p.shape == (0,) and pool.n_classified == 0
