from __future__ import annotations

import numpy as np
import pytest

from wsdal_wsi.synth.layout import make_bank, tissue_value
from wsdal_wsi.synth.params import SynthParams
from wsdal_wsi.synth.plan import make_plan
from wsdal_wsi.synth.render import CHUNK_H_PX, CHUNK_W_PX, ChunkRenderer, chunk_grid, iter_bands

PARAMS = SynthParams(width_px=2048, height_px=1536, mitoses_per_mm2=80.0, lookalikes_per_mm2=80.0)


@pytest.fixture(scope="module")
def renderer() -> ChunkRenderer:
    bank = make_bank(PARAMS, 21)
    return ChunkRenderer(make_plan(PARAMS, seed=21, name="r", bank=bank), bank=bank)


def test_any_window_matches_the_chunks(renderer):
    """Pixels depend on their position only: a window equals the crop of a larger render."""
    big = renderer.render(0, 0, 1024, 512)
    assert big.shape == (512, 1024, 3) and big.dtype == np.uint8
    small = renderer.render(301, 77, 333, 210)
    assert np.array_equal(small, big[77:287, 301:634])
    # A second renderer of the same plan (another worker) agrees, caches or not.
    other = ChunkRenderer(renderer.plan)
    assert np.array_equal(other.render(301, 77, 333, 210), small)


def test_background_and_tissue(renderer):
    plan, bank = renderer.plan, renderer.bank
    img = renderer.render(0, 0, 2048, 1536)
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, [2048, 1536], (3000, 2))
    tv = tissue_value(plan.fields, bank, pts, plan.mpp)
    ix = np.floor(pts).astype(int)
    px = img[ix[:, 1], ix[:, 0]].astype(int)
    outside = px[tv < -3]
    assert len(outside) and (outside == renderer.background).all()  # plain glass
    inside = px[tv > 3]
    assert inside.mean() < 200  # stained
    assert (inside[:, 0] > inside[:, 1]).mean() > 0.95  # H&E: red over green (pink-purple)


def test_blank_windows_are_the_background(renderer):
    bg = renderer.render(-5000, -5000, 300, 200)
    assert renderer.is_blank(-5000, -5000, 300, 200)
    assert (bg == renderer.background).all()


def test_figures_are_darker_than_their_surroundings(renderer, hod):
    plan = renderer.plan
    img = renderer.render(0, 0, 2048, 1536)
    h_od = hod(img)
    obj = plan.objects
    mit = obj.xy[obj.kind == 0]
    assert len(mit) >= 5
    for x, y in np.round(mit).astype(int):
        if 30 <= x < 2018 and 30 <= y < 1506:
            near = h_od[y - 24 : y + 25, x - 24 : x + 25]
            assert near.max() > 0.5


def test_bands_cover_the_slide_in_order(renderer):
    bands = chunk_grid(2048, 1536)
    assert len(bands) == 1536 // CHUNK_H_PX and len(bands[0]) == 2048 // CHUNK_W_PX
    out = list(iter_bands(None, renderer, width_px=2048, height_px=1536, tile_px=256, quality=90))
    assert len(out) == 3
    assert len(out[0].tiles) == 2 * 8 and out[0].half.shape == (256, 1024, 3)
    with pytest.raises(ValueError, match="tile_px"):
        next(iter_bands(None, renderer, width_px=2048, height_px=1536, tile_px=384, quality=90))
