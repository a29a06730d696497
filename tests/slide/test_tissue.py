from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsdal_wsi.errors import ConfigError, ResolutionError
from wsdal_wsi.slide import Slide, TissueMask, open_slide, tissue_mask
from wsdal_wsi.slide._geometry import ReadPlan
from wsdal_wsi.slide.tissue import classify_tissue_pixels, clean_mask
from wsdal_wsi.synth.stain import od_to_rgb, sample_look

from .conftest import write_pyramid

CANVAS_UM = 3072.0
BLOB = ((900.0, 1000.0), (700.0, 550.0))  # centre, radii (µm)
SMALL_HOLE = ((700.0, 900.0), 25.0)  # centre, radius: 0.002 mm², filled
BIG_HOLE = ((1050.0, 1150.0), 280.0)  # 0.25 mm², stays a hole
FAINT = ((2300.0, 700.0), (400.0, 300.0))
BLUE_PEN = ((200.0, 2800.0), (2900.0, 2100.0), 80.0)  # start, end, width (µm)
GREEN_PEN = ((1700.0, 1600.0), (2900.0, 1700.0), 60.0)
BLACK_INK = ((2600.0, 2700.0), 90.0)


def _disc(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], r: float) -> np.ndarray:
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= r**2


def _ellipse(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple) -> np.ndarray:
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 <= 1


def _stroke(x: np.ndarray, y: np.ndarray, start: tuple, end: tuple, width: float) -> np.ndarray:
    p = np.stack(np.broadcast_arrays(x - start[0], y - start[1]), axis=-1)
    d = np.array(end) - np.array(start)
    t = np.clip((p @ d) / (d @ d), 0, 1)
    return np.linalg.norm(p - t[..., None] * d, axis=-1) <= width / 2


def _dust_spots(seed: int = 1) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    spots = []
    while len(spots) < 36:
        x, y = rng.uniform(100, CANVAS_UM - 100, 2)
        if _far_from_everything(np.array([[x, y]]), 150)[0]:
            spots.append((float(x), float(y)))
    return spots[:24], spots[24:]  # grey dust, tiny pink specks


def _far_from_everything(xy_um: np.ndarray, margin: float) -> np.ndarray:
    x, y = xy_um[:, 0], xy_um[:, 1]
    (bc, (rx, ry)), (fc, (fx, fy)) = BLOB, FAINT
    near = _ellipse(x, y, bc, (rx + margin, ry + margin))
    near |= _ellipse(x, y, fc, (fx + margin, fy + margin))
    for start, end, width in (BLUE_PEN, GREEN_PEN):
        near |= _stroke(x, y, start, end, width + 2 * margin)
    near |= _disc(x, y, BLACK_INK[0], BLACK_INK[1] + margin)
    return ~near


def scene(mpp: float, seed: int = 0) -> np.ndarray:
    """A low-resolution slide scene: ``(h, w, 3) uint8``, geometry in µm."""
    n = round(CANVAS_UM / mpp)
    rng = np.random.default_rng(seed)
    coords = (np.arange(n) + 0.5) * mpp
    x, y = coords[None, :], coords[:, None]
    image = np.empty((n, n, 3), np.float32)
    image[:] = (238, 238, 235)  # slightly tinted glass
    blob = _ellipse(x, y, *BLOB) & ~_disc(x, y, *SMALL_HOLE) & ~_disc(x, y, *BIG_HOLE)
    image[blob] = (222, 150, 190)
    nuclei = blob & (rng.random((n, n)) < 0.25)
    image[nuclei] = (130, 70, 160)
    image[_ellipse(x, y, *FAINT)] = (235, 222, 232)  # very faint pink tissue
    image[_stroke(x, y, *BLUE_PEN)] = (45, 75, 175)
    image[_stroke(x, y, *GREEN_PEN)] = (55, 150, 95)
    image[_disc(x, y, *BLACK_INK)] = (25, 25, 30)
    grey, pink = _dust_spots()
    for centre in grey:
        image[_disc(x, y, centre, 12.0)] = (110, 110, 110)
    for centre in pink:
        image[_disc(x, y, centre, 15.0)] = (200, 120, 170)
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene_slide_path(slide_dir: Path) -> Path:
    """The scene as a 2-level TIFF at 4 µm/px (768 x 768 px)."""
    return write_pyramid(
        slide_dir / "scene.tiff", scene(4.0), mpp=4.0, n_levels=2, compression="jpeg"
    )


@pytest.fixture(scope="module")
def scene_mask(scene_slide_path: Path) -> TissueMask:
    with open_slide(scene_slide_path) as slide:
        return tissue_mask(slide, mask_mpp=8.0)


def _points(mask: TissueMask, xy_um: np.ndarray) -> np.ndarray:
    return mask.contains(xy_um / 4.0)  # the scene slide is 4 µm/px


def _grid_um(step: float = 20.0) -> np.ndarray:
    coords = np.arange(step / 2, CANVAS_UM, step)
    gx, gy = np.meshgrid(coords, coords)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def test_mask_shape_and_scale(scene_mask: TissueMask) -> None:
    assert scene_mask.mask.shape == (384, 384)
    assert scene_mask.mask.dtype == bool
    assert scene_mask.downsample == pytest.approx(2.0)


def test_tissue_is_found_including_faint_tissue(scene_mask: TissueMask) -> None:
    xy = _grid_um()
    x, y = xy[:, 0], xy[:, 1]
    (bc, (rx, ry)), (fc, (fx, fy)) = BLOB, FAINT
    inner_blob = _ellipse(x, y, bc, (rx - 40, ry - 40)) & ~_disc(
        x, y, BIG_HOLE[0], BIG_HOLE[1] + 40
    )
    inner_faint = _ellipse(x, y, fc, (fx - 40, fy - 40))
    assert _points(scene_mask, xy[inner_blob]).mean() > 0.98
    assert _points(scene_mask, xy[inner_faint]).mean() > 0.95


def test_background_pen_and_dust_are_not_tissue(scene_mask: TissueMask) -> None:
    xy = _grid_um()
    x, y = xy[:, 0], xy[:, 1]
    background = _far_from_everything(xy, 60)
    grey, pink = _dust_spots()
    for centre in grey + pink:
        background &= ~_disc(x, y, centre, 60)
    assert _points(scene_mask, xy[background]).mean() < 0.002
    for start, end, width in (BLUE_PEN, GREEN_PEN):
        on_ink = _stroke(x, y, start, end, width)
        assert _points(scene_mask, xy[on_ink]).mean() < 0.02
    assert _points(scene_mask, xy[_disc(x, y, *BLACK_INK)]).mean() < 0.02
    assert not _points(scene_mask, np.array(grey + pink)).any()


def test_small_holes_are_filled_big_ones_are_not(scene_mask: TissueMask) -> None:
    assert _points(scene_mask, np.array([SMALL_HOLE[0]])).all()
    xy = _grid_um()
    big = _disc(xy[:, 0], xy[:, 1], BIG_HOLE[0], BIG_HOLE[1] - 40)
    assert _points(scene_mask, xy[big]).mean() < 0.02


def test_area_and_fraction(scene_mask: TissueMask) -> None:
    (_, (rx, ry)), (_, (fx, fy)) = BLOB, FAINT
    expected_mm2 = (
        np.pi * (rx * ry + fx * fy) - np.pi * BIG_HOLE[1] ** 2
    ) / 1e6  # small hole filled
    assert scene_mask.area_mm2(4.0) == pytest.approx(expected_mm2, rel=0.05)
    centre = np.array(BLOB[0]) / 4.0  # level-0 px
    box = (centre[0] - 20, centre[1] - 80, centre[0] + 20, centre[1] - 40)
    assert scene_mask.fraction_in(box) == 1.0
    assert scene_mask.fraction_in((-100, -100, -10, -10)) == 0.0
    assert scene_mask.fraction_in((0, 0, 40, 40)) == 0.0


def test_contains_edges() -> None:
    mask = TissueMask(mask=np.array([[True, False], [False, True]]), downsample=10.0)
    xy = [(0, 0), (9.99, 9.99), (10, 0), (15, 15), (-0.1, 5), (25, 5), (5, 20)]
    np.testing.assert_array_equal(
        mask.contains(np.array(xy, float)), [True, True, False, True, False, False, False]
    )
    assert mask.contains(np.zeros((0, 2))).shape == (0,)
    assert mask.area_mm2(0.5) == pytest.approx(2 * 100 * 0.25 / 1e6)


def test_pen_colours_are_not_he_colours() -> None:
    colours = np.array(
        [
            [[45, 75, 175], [55, 150, 95], [25, 25, 30], [160, 185, 230]],  # inks
            [[130, 70, 160], [222, 150, 190], [37, 29, 56], [180, 110, 190]],  # H&E
        ],
        np.uint8,
    )
    _, pen, _ = classify_tissue_pixels(colours)
    assert pen[0].all()
    assert not pen[1].any()


def _clean(rgb: np.ndarray) -> np.ndarray:
    return clean_mask(*classify_tissue_pixels(rgb), min_component_px=10, max_hole_px=0)


def test_strongly_bluish_haematoxylin_is_tissue_not_ink() -> None:
    """Another lab's slide (synth stain shift 1): H-rich tissue the colour of navy ink stays."""
    look = sample_look(
        np.random.default_rng(0), stain_variation=0.0, blur_um=0.0, jpeg_quality=90, stain_shift=1.0
    )
    rng = np.random.default_rng(1)
    c_h = np.zeros((160, 160), np.float32)
    c_e = np.zeros((160, 160), np.float32)
    c_h[30:130, 30:130] = rng.uniform(0.33, 0.55, (100, 100))
    c_e[30:130, 30:130] = rng.uniform(0.05, 0.12, (100, 100))
    rgb = od_to_rgb(c_h, c_e, look)
    tissue, pen, maybe_ink = classify_tissue_pixels(rgb)
    blob = np.zeros((160, 160), bool)
    blob[30:130, 30:130] = True
    assert tissue[blob].mean() > 0.99
    assert maybe_ink[blob].mean() > 0.5  # navy-ink colours: the old rule dropped them
    assert not pen[blob].any()
    assert _clean(rgb)[blob].mean() > 0.99


def test_navy_ink_is_ink_next_to_a_clear_stroke() -> None:
    rgb = np.full((120, 160, 3), 238, np.uint8)
    rgb[20:100, 20:60] = (130, 70, 160)  # H&E tissue on the left
    rgb[20:100, 20:60:3] = (222, 150, 190)
    rgb[51:69, 70:150] = (60, 70, 130)  # navy ink (the stroke's 4 px rim) ...
    rgb[55:65, 70:150] = (45, 75, 175)  # ... around a clear blue stroke
    _, pen, maybe_ink = classify_tissue_pixels(rgb)
    assert maybe_ink[51:55, 70:150].all() and pen[55:65, 70:150].all()
    mask = _clean(rgb)
    assert not mask[45:75, 66:155].any()  # stroke, rim and margin
    assert mask[20:100, 20:60].mean() > 0.99
    # A navy patch with no clear ink near it is kept: it may be haematoxylin.
    rgb[51:69, 70:150] = (60, 70, 130)
    assert _clean(rgb)[51:69, 70:150].all()


def test_mask_reads_a_low_level(jpeg_slide_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    levels: list[int] = []
    original = Slide._read_pixels

    def spy(self: Slide, plan: ReadPlan) -> tuple[np.ndarray, float, float]:
        levels.append(plan.level)
        return original(self, plan)

    monkeypatch.setattr(Slide, "_read_pixels", spy)
    with open_slide(jpeg_slide_path) as slide:
        mask = tissue_mask(slide, mask_mpp=8.0)  # 32 level-0 px per mask px
    assert levels and set(levels) == {2}
    assert mask.mask.shape == (32, 32)


def test_needs_the_resolution_and_good_options(no_resolution_slide_path: Path) -> None:
    with (
        open_slide(no_resolution_slide_path) as slide,
        pytest.raises(ResolutionError, match="--mpp"),
    ):
        tissue_mask(slide)
    with open_slide(no_resolution_slide_path, mpp=0.5) as slide:
        with pytest.raises(ConfigError, match="mask_mpp"):
            tissue_mask(slide, mask_mpp=0)
        with pytest.raises(ConfigError, match="max_hole_mm2"):
            tissue_mask(slide, max_hole_mm2=-1)


def test_real_slides(cmu1_path: Path, tcga_path: Path) -> None:
    with open_slide(cmu1_path) as slide:
        cmu = tissue_mask(slide)
    with open_slide(tcga_path, mpp=0.5) as slide:
        tcga = tissue_mask(slide)
    assert cmu.downsample == pytest.approx(8.0 / 0.499)
    assert 0.25 < cmu.mask.mean() < 0.6  # a strip of skin on white glass
    assert 0.45 < tcga.mask.mean() < 0.85  # a large section
    # The white corner of CMU-1 is glass; its centre is tissue.
    assert not cmu.mask[:10, :10].any()
    assert cmu.contains(np.array([[700.0, 2400.0]]))[0]


def test_synthetic_he_slide(tmp_path: Path) -> None:
    """On a wsdal synth slide: the mask covers every object of the truth and the tissue area."""
    import json

    from wsdal_wsi.synth import SynthParams, generate_slide

    params = SynthParams(
        width_px=2048, height_px=1536, mitoses_per_mm2=150.0, lookalikes_per_mm2=150.0
    )
    synth = generate_slide(tmp_path, name="he", params=params, seed=3)
    with open_slide(synth.slide_path) as slide:
        mask = tissue_mask(slide)
        assert slide.info()["reader"] == "raw JPEG tiles"
    truth = json.loads(synth.truth_path.read_text())["features"]
    points = [
        xy
        for feature in truth
        for xy in (
            [feature["geometry"]["coordinates"]]
            if feature["geometry"]["type"] == "Point"
            else feature["geometry"]["coordinates"]
        )
    ]
    assert len(points) >= 10
    assert mask.contains(np.array(points, float)).mean() >= 0.95
    # The default mask (8 µm/px) counts small holes (lumens) and the frayed border as tissue,
    # the generator's own area does not: on a 0.5 x 0.4 mm slide that border is a large share.
    assert mask.area_mm2(0.25) == pytest.approx(synth.tissue_area_mm2, rel=0.3)
    # A finer mask without hole filling converges on the generator's area.
    with open_slide(synth.slide_path) as slide:
        fine = tissue_mask(slide, mask_mpp=2.0, max_hole_mm2=0.0)
    assert fine.area_mm2(0.25) == pytest.approx(synth.tissue_area_mm2, rel=0.1)
    assert fine.area_mm2(0.25) < mask.area_mm2(0.25)
