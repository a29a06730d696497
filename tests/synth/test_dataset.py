from __future__ import annotations

import json

import numpy as np
import openslide
import pytest
from scipy import ndimage

from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.synth import (
    AnnotationNoise,
    SynthParams,
    generate_dataset,
    generate_slide,
    load_dataset,
    slide_seed,
)
from wsdal_wsi.synth.layout import make_bank, tissue_value
from wsdal_wsi.synth.nuclei import N_TUMOUR, chunk_nuclei, make_nucleus_library
from wsdal_wsi.synth.plan import make_plan


def test_slide_opens_in_openslide_at_its_resolution(synth_slide):
    with openslide.OpenSlide(str(synth_slide.slide_path)) as osr:
        assert osr.dimensions == (2048, 1536)
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(0.25)
        assert osr.properties["openslide.vendor"] == "generic-tiff"
        assert osr.level_count >= 3 and osr.level_count == synth_slide.level_count
        assert osr.level_downsamples[:3] == pytest.approx((1.0, 2.0, 4.0))
        assert f"seed={synth_slide.seed}" in osr.properties["tiff.ImageDescription"]


def test_lower_levels_look_like_level0_downsampled(synth_slide, synth_level0):
    with openslide.OpenSlide(str(synth_slide.slide_path)) as osr:
        lvl2 = np.asarray(osr.read_region((0, 0), 2, osr.level_dimensions[2]).convert("RGB"))
    ref = synth_level0.astype(float).reshape(384, 4, 512, 4, 3).mean(axis=(1, 3))
    # Both went through JPEG separately: compare them beyond the finest JPEG detail.
    smooth = [ndimage.gaussian_filter(a.astype(float), (1.0, 1.0, 0)) for a in (lvl2, ref)]
    assert np.abs(smooth[0] - smooth[1]).mean() < 3.0
    assert np.corrcoef(lvl2[..., 1].ravel(), ref[..., 1].ravel())[0, 1] > 0.95


def test_mitoses_are_where_the_pixels_say(synth_slide, synth_level0, hod, peak, read_truth):
    h_od = hod(synth_level0)
    xy, classes, _ = read_truth(synth_slide.truth_path)
    classes = np.array(classes)
    mit = peak(h_od, xy[classes == "Mitosis"], radius_px=24)
    mit = mit[np.isfinite(mit)]
    assert len(mit) >= 5
    # Random points in tissue, away from every truth object.
    bank = make_bank(_params_of(synth_slide), synth_slide.seed)
    plan = make_plan(_params_of(synth_slide), seed=synth_slide.seed, name="x", bank=bank)
    rng = np.random.default_rng(0)
    pts = rng.uniform(40, [2008, 1496], (3000, 2))
    pts = pts[tissue_value(plan.fields, bank, pts, 0.25) > 5]
    far = np.min(np.hypot(*(pts[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)), axis=1) > 60
    rand = peak(h_od, pts[far][:300], radius_px=24)
    assert np.median(mit) > np.median(rand) + 0.25
    assert (mit > np.percentile(rand, 50)).mean() > 0.9


def _params_of(slide) -> SynthParams:
    doc = json.loads(slide.truth_path.read_text())["wsdal"]["settings"]["params"]
    doc["lookalike_mix"] = tuple(doc["lookalike_mix"])
    return SynthParams(**doc)


def test_figures_are_darker_than_ordinary_nuclei_and_lookalikes_as_dark(
    synth_dataset, hod, peak, read_truth
):
    mit, look, nuclei = [], [], []
    for slide in synth_dataset.slides[:1]:
        with openslide.OpenSlide(str(slide.slide_path)) as osr:
            img = np.asarray(osr.read_region((0, 0), 0, osr.dimensions).convert("RGB"))
        h_od = hod(img)
        xy, classes, _ = read_truth(slide.truth_path)
        classes = np.array(classes)
        mit.extend(peak(h_od, xy[classes == "Mitosis"], radius_px=24))
        look.extend(peak(h_od, xy[classes != "Mitosis"], radius_px=24))
        params = _params_of(slide)
        bank = make_bank(params, slide.seed)
        plan = make_plan(params, seed=slide.seed, name="x", bank=bank)
        st = chunk_nuclei(
            plan,
            bank,
            make_nucleus_library(slide.seed, 0.25),
            0,
            0,
            2048,
            2048,
            avoid_xy=xy,
            avoid_r_px=np.full(len(xy), 60.0),
        )
        nxy = np.column_stack([st.cx, st.cy])[st.sprite < N_TUMOUR][:400]
        nuclei.extend(peak(h_od, nxy, radius_px=12))  # the nucleus itself, not its neighbours
    mit, look, nuclei = (np.array(v)[np.isfinite(v)] for v in (mit, look, nuclei))
    assert np.mean(mit) > 1.3 * np.mean(nuclei)  # figures darker than ordinary nuclei
    assert 0.85 < np.mean(look) / np.mean(mit) < 1.2  # darkness alone cannot separate them
    # ... but not trivially: some ordinary nuclei are as dark as some mitoses.
    assert (nuclei > np.percentile(mit, 10)).mean() > 0.01


def test_dataset_counts_noise_and_manifest(synth_dataset):
    assert len(synth_dataset.slides) == 4
    manifest = synth_dataset.manifest
    assert manifest["seed"] == 1127 and manifest["n_slides"] == 4
    assert manifest["wsdal"]["tool"] == "wsdal-wsi" and "version" in manifest["wsdal"]
    assert manifest["params"]["width_px"] == 2048 and manifest["noise"]["missed_fraction"] == 0.15
    looks = set()
    true_clicks = missed = mitoses = false = 0
    for i, s in enumerate(synth_dataset.slides):
        assert s.seed == slide_seed(1127, i)
        assert s.slide_path.is_file() and s.annotation_path == s.slide_path.with_suffix(".geojson")
        assert s.truth_path.parent.name == "truth" and s.noise_path.is_file()
        assert 25 <= s.n_mitoses <= 70 and 25 <= s.n_lookalikes <= 80
        record = json.loads(s.noise_path.read_text())
        assert record["summary"]["missed"] == s.counts["missed"]
        mitoses += s.n_mitoses
        missed += s.counts["missed"]
        true_clicks += s.counts["true_clicks"]
        false += s.counts["false_clicks"]
        looks.add(json.dumps(s.look, sort_keys=True))
    assert missed / mitoses == pytest.approx(0.15, abs=0.03)
    assert false / true_clicks == pytest.approx(0.15, abs=0.03)
    assert len(looks) == 4  # every slide its own stain, blur and JPEG quality


def test_regions_in_the_slide_fixture(synth_slide):
    doc = json.loads(synth_slide.annotation_path.read_text())
    regions = [f for f in doc["features"] if f["properties"]["classification"]["name"] == "Region"]
    assert len(regions) == 1 and regions[0]["properties"]["name"] == "Region 1"
    assert synth_slide.counts["regions"] == 1
    record = json.loads(synth_slide.noise_path.read_text())
    assert record["summary"]["outside_regions"] == len(record["outside_regions"])


def _small(**kw) -> SynthParams:
    return SynthParams(
        width_px=1024, height_px=768, mitoses_per_mm2=100.0, lookalikes_per_mm2=100.0, **kw
    )


def _strip_provenance(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith('"wsdal":'))


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path):
    noise = AnnotationNoise(negative_click_fraction=0.3, regions=1, region_area_mm2=0.02)
    a = generate_slide(tmp_path / "a", name="s", params=_small(), noise=noise, seed=42)
    b = generate_slide(tmp_path / "b", name="s", params=_small(), noise=noise, seed=42, workers=2)
    assert a.slide_path.read_bytes() == b.slide_path.read_bytes()
    for pa, pb in ((a.annotation_path, b.annotation_path), (a.truth_path, b.truth_path)):
        assert _strip_provenance(pa.read_text()) == _strip_provenance(pb.read_text())
    na, nb = (json.loads(p.read_text()) for p in (a.noise_path, b.noise_path))
    assert na["clicks"] == nb["clicks"] and na["missed"] == nb["missed"]
    c = generate_slide(tmp_path / "c", name="s", params=_small(), noise=noise, seed=43)
    assert c.slide_path.read_bytes() != a.slide_path.read_bytes()


def test_dataset_slides_are_the_seeded_slides(tmp_path):
    slides = generate_dataset(tmp_path / "d", n_slides=2, params=_small(), seed=9, prefix="x")
    alone = generate_slide(tmp_path / "e", name="x001", params=_small(), seed=slide_seed(9, 1))
    assert slides[1].slide_path.read_bytes() == alone.slide_path.read_bytes()
    loaded = load_dataset(tmp_path / "d")
    assert [s.name for s in loaded.slides] == ["x000", "x001"]
    assert loaded.slides[1].counts == slides[1].counts


def test_bad_arguments_and_folders(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        generate_slide(tmp_path, params=_small(), seed=-1)
    with pytest.raises(ConfigError, match="workers"):
        generate_slide(tmp_path, params=_small(), workers=0)
    with pytest.raises(ConfigError, match="n_slides"):
        generate_dataset(tmp_path, n_slides=0, params=_small())
    with pytest.raises(ConfigError, match="name"):
        generate_slide(tmp_path, name="a/b", params=_small())
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        generate_slide(tmp_path / "file", params=_small())
    with pytest.raises(InputError, match=r"synth\.json"):
        load_dataset(tmp_path)
