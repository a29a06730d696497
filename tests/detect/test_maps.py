"""Tests of wsdal_wsi.detect.maps: the OD table, the separable and sampled Gaussians.

The reference is the frozen frequency-domain implementation (``frozen_candidates_v1``):
exact Gaussians by one FFT, as the detector computed them before.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.detect.candidates import RUIFROK_EOSIN, RUIFROK_HAEMATOXYLIN
from wsdal_wsi.detect.maps import background_step, gaussian_pair, haematoxylin_od

from .frozen_candidates_v1 import _gaussian_pair as fft_pair
from .frozen_candidates_v1 import haematoxylin_od as od_v1
from .test_candidates import BLOBS, render, to_tensor

STAINS = {"stain_haematoxylin": RUIFROK_HAEMATOXYLIN, "stain_eosin": RUIFROK_EOSIN}


def _tissue(shape=(300, 340), seed=0) -> torch.Tensor:
    """An H&E-like image with many nuclei of every size and darkness, and pixel noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    blobs = [
        (rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, 14), rng.uniform(0.1, 1.5))
        for _ in range(80)
    ]
    return to_tensor(render(shape, blobs, seed=seed))


def test_od_table_gives_the_logarithms_values():
    rgb = torch.randint(
        0, 256, (2, 3, 37, 53), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    ours = haematoxylin_od(rgb, **STAINS)
    assert ours.shape == (2, 37, 53) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, od_v1(rgb, **STAINS)[:, 0], rtol=0, atol=2e-7)
    # a channels-last view (how the engine hands tiles over) gives the same
    hwc = rgb.permute(0, 2, 3, 1).contiguous()
    torch.testing.assert_close(haematoxylin_od(hwc.permute(0, 3, 1, 2), **STAINS), ours)


@pytest.mark.parametrize(("small", "large"), [(4.0, 16.0), (2.0, 8.0), (3.0, 5.0)])
def test_gaussians_match_the_exact_frequency_domain_ones(small, large):
    od = od_v1(_tissue(), **STAINS)
    ref_small, ref_large = fft_pair(od, small, large)
    got_small, got_large = gaussian_pair(od[:, 0], small, large)
    span = float(od.max())
    # truncation at 5 sigma: 6e-7 of the kernel mass
    assert float((got_small - ref_small[:, 0]).abs().max()) < 2e-6 * span
    # the reference mirrors only 4 sigmas beyond the edges: compare the interior tightly
    m = int(5 * large)
    inner = (got_large - ref_large[:, 0])[:, m:-m, m:-m]
    assert float(inner.abs().max()) < 2e-6 * span
    assert float((got_large - ref_large[:, 0]).abs().max()) < 2e-5 * span


def test_background_step_keeps_aliasing_negligible():
    assert background_step(4.0, 16.0) == 4  # defaults at 0.25 µm/px: a sixteenth of the pixels
    assert background_step(2.0, 8.0) == 2  # 0.5 µm/px
    assert background_step(3.0, 5.0) == 2
    assert background_step(1.0, 8.0) == 1  # a small first Gaussian leaves too much detail


def test_sampled_background_equals_the_full_resolution_one():
    od = haematoxylin_od(_tissue(seed=3), **STAINS)
    small, sampled = gaussian_pair(od, 4.0, 16.0)
    small_full, full = gaussian_pair(od, 4.0, 16.0, step=1)
    torch.testing.assert_close(small, small_full, rtol=0, atol=0)
    assert float((sampled - full).abs().max()) < 2e-6


@pytest.mark.parametrize("shift", [(1, 0), (3, 2), (5, 7)])
def test_maps_do_not_depend_on_where_the_sampling_grid_starts(shift):
    """Shifts that are not multiples of the sampling step give the shifted maps."""
    big = haematoxylin_od(_tissue((360, 380), seed=5), **STAINS)
    dx, dy = shift
    a = gaussian_pair(big[:, 0:300, 0:320], 4.0, 16.0)[1]
    b = gaussian_pair(big[:, dy : dy + 300, dx : dx + 320], 4.0, 16.0)[1]
    m = 70  # beyond the background's reach from every edge
    interior_a = a[:, m + dy : 300 - m, m + dx : 320 - m]
    interior_b = b[:, m : 300 - m - dy, m : 320 - m - dx]
    assert float((interior_a - interior_b).abs().max()) < 2e-6


def test_tiny_and_odd_images():
    for shape in [(1, 1), (5, 3), (12, 20), (65, 129)]:
        od = haematoxylin_od(to_tensor(render(shape, BLOBS[:1])), **STAINS)
        small, large = gaussian_pair(od, 4.0, 16.0)
        assert small.shape == large.shape == (1, *shape)
        assert torch.isfinite(small).all() and torch.isfinite(large).all()
    flat = torch.full((1, 40, 50), 0.3)
    small, large = gaussian_pair(flat, 4.0, 16.0)
    torch.testing.assert_close(small, flat, rtol=0, atol=1e-6)
    torch.testing.assert_close(large, flat, rtol=0, atol=1e-6)
