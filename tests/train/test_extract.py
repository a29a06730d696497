"""Tests of patch extraction from a source: areas, labels, jitter, split, skipped images."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest
import shapely

from wsdal_wsi.errors import ConfigError, TrainingError
from wsdal_wsi.qupath import ClassSettings, points_feature, read_annotations
from wsdal_wsi.slide import open_slide
from wsdal_wsi.train import extract as extract_mod
from wsdal_wsi.train.extract import extract_store, split_by_slide
from wsdal_wsi.train.presets import ExtractSettings

SETTINGS = ExtractSettings(  # read as scanned; stain normalisation has its own test
    stain_normalise=False,
    context_px=96,
    n_jitter=2,
    max_candidates_per_image=40,
    max_val_candidates_per_image=40,
    read_threads=2,
)


@pytest.fixture(scope="module")
def slide_store(synth_slide, tmp_path_factory):
    root = tmp_path_factory.mktemp("extract") / "store"
    store = extract_store(
        synth_slide.slide_path.parent, root, settings=SETTINGS, val_fraction=0.0, seed=0
    )
    return store, synth_slide


def test_clicks_jitter_and_negative_clicks(slide_store):
    store, synth = slide_store
    ann = read_annotations(synth.annotation_path, classes=ClassSettings())
    pos = np.array([(p.x, p.y) for p in ann.points_with_role("positive", ClassSettings())])
    neg = [p for p in ann.points_with_role("negative", ClassSettings())]
    clicks = store.select(source="click")
    assert len(clicks) == len(pos) > 0
    np.testing.assert_allclose(
        np.sort(store.xy_level0[clicks], axis=0), np.sort(pos, axis=0), atol=0.01
    )
    jit = store.select(source="jitter")
    assert len(jit) == 2 * len(pos)
    for r in jit[:10]:  # each copy within 16 px (target) of its click's centre, same click id
        c = clicks[store.click_id[clicks] == store.click_id[r]][0]
        d = np.linalg.norm(store.xy_level0[r] - store.centre_level0[c])
        assert 0 < d <= 16 * 1.0 + 1e-6
        np.testing.assert_array_equal(store.centre_level0[r], store.xy_level0[r])
    assert len(store.select(source="negative_click", label=0)) == len(neg)
    assert (store.split == "train").all()


def test_clicks_are_centred_on_the_candidate_under_them(slide_store, synth_slide, tmp_path):
    store, _ = slide_store
    clicks = store.select(source=("click", "negative_click"))
    moved = np.linalg.norm(store.centre_level0[clicks] - store.xy_level0[clicks], axis=1)
    # synthetic clicks lie ~1.5 µm off the nucleus: most move, none farther than 4 µm
    assert (moved > 0).sum() == store.images[0]["n_snapped"] > len(clicks) // 2
    assert moved.max() <= 4.0 / 0.25 + 0.01
    cand = store.select(source="candidate")
    np.testing.assert_array_equal(store.centre_level0[cand], store.xy_level0[cand])
    # the centre is a candidate the detector found (all found ones are kept with cap 10^4)
    wide = extract_store(
        synth_slide.slide_path.parent,
        tmp_path / "wide",
        settings=ExtractSettings(context_px=96, n_jitter=0, max_candidates_per_image=10_000),
        val_fraction=0.0,
    )
    c = wide.select(source="click")
    snapped = c[np.linalg.norm(wide.centre_level0[c] - wide.xy_level0[c], axis=1) > 0]
    allc = wide.xy_level0[wide.select(source="candidate")]
    d = np.linalg.norm(wide.centre_level0[snapped][:, None] - allc[None], axis=2).min(axis=1)
    assert len(snapped) and d.max() < 0.01
    # snap_um=0 keeps the clicks where they are
    off = extract_store(
        synth_slide.slide_path.parent,
        tmp_path / "off",
        settings=ExtractSettings(context_px=96, n_jitter=0, max_candidates_per_image=5, snap_um=0),
        val_fraction=0.0,
    )
    np.testing.assert_array_equal(off.centre_level0, off.xy_level0)


def test_candidates_inside_the_region_and_clear_of_positives(slide_store):
    store, synth = slide_store
    ann = read_annotations(synth.annotation_path, classes=ClassSettings())
    region = shapely.union_all([a.geometry for a in ann.areas_with_role("region", ClassSettings())])
    im = store.images[0]
    assert im["has_regions"] is True and im["area_mm2"] > 0
    cand = store.select(source="candidate")
    assert len(cand) == min(40, im["n_candidates_found"]) and im["n_candidates"] == len(cand)
    xy = store.xy_level0[cand]
    assert shapely.contains_xy(region, xy[:, 0], xy[:, 1]).all()
    pos = store.xy_level0[store.select(source="click")]
    d = np.linalg.norm(xy[:, None] - pos[None], axis=2).min(axis=1)
    lab = store.label[cand]
    assert (d[lab == 0] >= 80).all() and (d[lab == -1] < 80).all()  # 80 px at 0.25 µm/px
    assert store.meta["settings"]["candidate_params"]["threshold_od"] > 0


def test_patches_are_the_slide_around_the_point(slide_store):
    store, synth = slide_store
    r = int(store.select(source="click")[0])
    x, y = store.centre_level0[r]
    with open_slide(synth.slide_path) as slide:
        ref = slide.read_region((x - 48, y - 48), (96, 96), target_mpp=0.25)
    np.testing.assert_array_equal(store.patches[r].transpose(1, 2, 0), ref)


def test_split_by_slide():
    keys = [f"s{i}" for i in range(10)]
    split = split_by_slide(keys, val_fraction=0.2, seed=0)
    assert sorted(split) == keys and list(split.values()).count("val") == 2
    assert split == split_by_slide(keys, val_fraction=0.2, seed=0)
    assert split != split_by_slide(keys, val_fraction=0.2, seed=1)
    assert list(split_by_slide(keys[:2], val_fraction=0.01, seed=0).values()).count("val") == 1
    assert set(split_by_slide(keys[:1], val_fraction=0.5, seed=0).values()) == {"train"}
    with pytest.raises(ConfigError, match="--val-fraction must be in"):
        split_by_slide(keys, val_fraction=1.0, seed=0)


def test_unusable_images_are_skipped_with_their_reason(synth_slide, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(synth_slide.slide_path, folder / "good.tiff")
    shutil.copy(synth_slide.annotation_path, folder / "good.geojson")
    shutil.copy(synth_slide.slide_path, folder / "bare.tiff")  # no annotations
    store = extract_store(folder, tmp_path / "store", settings=SETTINGS, val_fraction=0.0)
    skipped = store.meta["settings"]["skipped"]
    assert [s["key"] for s in skipped] == ["bare"] and skipped[0]["reason"]
    assert {im["key"] for im in store.images} == {"good"}
    (folder / "good.geojson").unlink()
    with pytest.raises(TrainingError, match="no image can be used for training"):
        extract_store(folder, tmp_path / "store2", settings=SETTINGS)


def _with_extra_clicks(synth_slide, folder, extra_xy):
    """The synthetic slide in ``folder`` with its sidecar plus ``extra_xy`` Mitosis clicks."""
    folder.mkdir()
    shutil.copy(synth_slide.slide_path, folder / "s.tiff")
    doc = json.loads(synth_slide.annotation_path.read_text(encoding="utf-8"))
    doc["features"].append(points_feature(extra_xy, "Mitosis"))
    (folder / "s.geojson").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def test_clicks_outside_the_slide_are_not_trained_on(synth_slide, tmp_path, caplog):
    """Finding 2: clicks at (-500, -500), (99999, 99999), (1e12, 5) became white positives."""
    settings = ExtractSettings(context_px=96, n_jitter=0, max_candidates_per_image=5)
    plain = extract_store(
        synth_slide.slide_path.parent, tmp_path / "plain", settings=settings, val_fraction=0.0
    )
    folder = _with_extra_clicks(
        synth_slide, tmp_path / "src", [[-500, -500], [99999, 99999], [1e12, 5]]
    )
    with caplog.at_level(logging.WARNING, logger="wsdal_wsi.train"):
        store = extract_store(folder, tmp_path / "store", settings=settings, val_fraction=0.0)
    assert len(store.select(source="click")) == len(plain.select(source="click"))
    assert store.images[0]["n_positive"] == plain.images[0]["n_positive"]
    xy = store.xy_level0
    assert xy.min() >= 0 and (xy[:, 0] <= 2048).all() and (xy[:, 1] <= 1536).all()
    assert "s.geojson: 3 point(s) outside the slide, left out of training" in caplog.text


def test_patches_are_read_in_bounded_chunks(synth_slide, tmp_path, monkeypatch):
    """Finding 3: 2.7 M clicks made one (5.4 M, 96, 96, 3) array; now a chunk at a time."""
    n_clicks = 400
    rng = np.random.default_rng(3)
    extra = rng.uniform((100, 100), (1900, 1400), (n_clicks, 2))
    folder = _with_extra_clicks(synth_slide, tmp_path / "src", extra)
    settings = ExtractSettings(context_px=32, patch_px=32, n_jitter=1, max_candidates_per_image=5)
    monkeypatch.setattr(extract_mod, "PATCH_CHUNK_BYTES", 25 * 3 * 32 * 32)  # 25 patches
    sizes = []
    real = extract_mod._read_patches

    def spy(slide, xy, **kwargs):
        out = real(slide, xy, **kwargs)
        sizes.append(out.shape[0])
        return out

    monkeypatch.setattr(extract_mod, "_read_patches", spy)
    store = extract_store(folder, tmp_path / "store", settings=settings, val_fraction=0.0)
    n_pos = store.images[0]["n_positive"]
    assert n_pos >= n_clicks
    assert len(store) == 2 * n_pos + store.images[0]["n_negative_clicks"] + 5
    assert max(sizes) == 25 and sum(sizes) == len(store)  # never more than a chunk at once
    # the same store as one read would give: rows in order, jitter from the same draws
    monkeypatch.setattr(extract_mod, "PATCH_CHUNK_BYTES", 1 << 30)
    whole = extract_store(folder, tmp_path / "whole", settings=settings, val_fraction=0.0)
    np.testing.assert_array_equal(whole.xy_level0, store.xy_level0)
    np.testing.assert_array_equal(np.asarray(whole.patches), np.asarray(store.patches))


def test_every_image_is_read_mapped_onto_the_images_median_stains(synth_dataset, tmp_path):
    """The store records each image's stains and their median; its patches are normalised."""
    import torch

    from wsdal_wsi.stain import StainEstimate, median_estimate, normalise_rgb, stain_matrix

    store = extract_store(
        synth_dataset.out_dir,
        tmp_path / "store",
        settings=dataclasses.replace(SETTINGS, stain_normalise=True),
        val_fraction=0.25,
        seed=0,
    )
    stain = store.meta["settings"]["stain"]
    estimates = {k: StainEstimate.from_dict(v["estimate"]) for k, v in stain["images"].items()}
    assert len(estimates) == 4
    reference = StainEstimate.from_dict(stain["reference"])
    assert reference.to_dict() == median_estimate(list(estimates.values())).to_dict()
    moved = 0
    for im in store.images:
        r = int(store.select(image_key=im["key"], source="click")[0])
        x, y = store.centre_level0[r]
        m = stain_matrix(estimates[im["key"]], reference)
        with open_slide(im["slide"]) as slide:
            raw = slide.read_region((x - 48, y - 48), (96, 96), target_mpp=0.25)
        got = store.patches[r].transpose(1, 2, 0)
        np.testing.assert_array_equal(got, normalise_rgb(torch.from_numpy(raw), m).numpy())
        moved += not np.array_equal(got, raw)
    assert moved >= 3  # every slide has its own stains, so (nearly) every one moves

    plain = extract_store(
        synth_dataset.out_dir,
        tmp_path / "plain",
        settings=SETTINGS,  # stain_normalise off
        val_fraction=0.25,
        seed=0,
    )
    assert plain.meta["settings"]["stain"] == {
        "reference": None,
        "reason": "stain_normalise is off",
    }
