from __future__ import annotations

import numpy as np
import pytest

from wsdal_wsi.synth.fields import (
    FIELD_NAMES,
    CoarseFields,
    interp_blocks,
    interp_points,
    interp_window,
    make_textures,
    smooth_noise,
)


@pytest.fixture(scope="module")
def fields() -> CoarseFields:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(len(FIELD_NAMES), 20, 30)).astype(np.float32)
    return CoarseFields(data=data, cell_px=32)


def test_window_and_points_interpolate_alike(fields):
    x0, y0, w, h = 37, 51, 200, 120
    (win,) = interp_window(fields, ("tumour",), x0, y0, w, h)
    assert win.shape == (h, w) and win.dtype == np.float32 and win.flags["C_CONTIGUOUS"]
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    pts = interp_points(fields, "tumour", np.column_stack([xx.ravel(), yy.ravel()]).astype(float))
    assert np.allclose(win.ravel(), pts, atol=1e-5)
    # Bilinear: grid nodes are reproduced exactly.
    node = fields.field("tumour")[3, 4]
    assert interp_points(fields, "tumour", np.array([[4 * 32.0, 3 * 32.0]]))[0] == pytest.approx(
        node
    )


def test_blocks_sample_block_centres(fields):
    (blk,) = interp_blocks(fields, ("stain_h",), 64, 32, 128, 16, (8, 64))
    assert blk.shape == (2, 1, 2, 1)
    centre = np.array([[64 + 31.5, 32 + 3.5], [64 + 64 + 31.5, 32 + 8 + 3.5]])
    want = interp_points(fields, "stain_h", centre)
    assert blk[0, 0, 0, 0] == pytest.approx(want[0], abs=1e-5)
    assert blk[1, 0, 1, 0] == pytest.approx(want[1], abs=1e-5)


def test_smooth_noise_is_standardised_and_seeded():
    a = smooth_noise(np.random.default_rng(5), (80, 90), scale_cells=20.0)
    b = smooth_noise(np.random.default_rng(5), (80, 90), scale_cells=20.0)
    assert np.array_equal(a, b)
    assert abs(float(a.std()) - 1.0) < 1e-3 and abs(float(a.mean())) < 1e-3
    # Smooth: neighbouring cells are strongly correlated at a 20-cell scale.
    assert np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1] > 0.95


def test_texture_windows_wrap_and_match_point_lookup():
    bank = make_textures(np.random.default_rng(2), mpp=0.25, period_px=256)
    p = bank.period_px
    view = bank.window("edge", 512, 256, 128, 64)
    assert view.base is not None  # inside one period: a view, no copy
    wrapped = bank.window("edge", 200, 230, 100, 50)  # crosses both period edges
    yy, xx = np.mgrid[230:280, 200:300]
    pts = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
    assert np.array_equal(wrapped.ravel(), bank.at("edge", pts))
    assert np.array_equal(
        bank.window("gran", 3, 5, 10, 10), bank.window("gran", 3 + p, 5 + 2 * p, 10, 10)
    )
    for k in range(3):
        fib = bank.tex[f"fibre{k}"]
        assert 0.0 <= fib.min() and fib.max() <= 1.0
