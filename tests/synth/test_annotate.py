from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from wsdal_wsi.qupath.annotations import read_annotations, read_points
from wsdal_wsi.synth.annotate import (
    simulate_annotations,
    write_annotations,
    write_noise,
    write_truth,
)
from wsdal_wsi.synth.objects import Objects
from wsdal_wsi.synth.params import AnnotationNoise

SIZE = (8000, 6000)


def _objects(n_mit: int = 400, n_look: int = 300, seed: int = 0) -> Objects:
    rng = np.random.default_rng(seed)
    n = n_mit + n_look
    kind = np.r_[np.zeros(n_mit), rng.integers(1, 4, n_look)].astype(np.int8)
    return Objects(
        xy=rng.uniform(100, [SIZE[0] - 100, SIZE[1] - 100], (n, 2)),
        kind=kind,
        variant=np.zeros(n, np.int8),
        hard=rng.uniform(0, 1, n) < 0.25,
        angle=np.zeros(n, np.float32),
        size=np.ones(n, np.float32),
        dark=np.ones(n, np.float32),
        cluster=np.where(kind == 3, 0, -1).astype(np.int32),
    )


def _all_tumour(xy: np.ndarray) -> np.ndarray:
    return np.ones(len(xy), bool)


def _simulate(noise: AnnotationNoise, obj: Objects | None = None, seed: int = 1):
    return simulate_annotations(
        obj if obj is not None else _objects(),
        noise,
        rng=np.random.default_rng(seed),
        size_px=SIZE,
        mpp=0.25,
        in_tumour=_all_tumour,
    )


def test_noise_fractions_are_as_requested():
    noise = AnnotationNoise(
        missed_fraction=0.2,
        false_click_fraction=0.25,
        click_offset_um=2.0,
        negative_click_fraction=0.3,
        missed_as_negative_fraction=0.5,
    )
    obj = _objects()
    ann = _simulate(noise, obj)
    n_true, n_false = ann.count("true"), ann.count("false")
    assert len(ann.missed) == round(0.2 * 400) and n_true == 400 - len(ann.missed)
    assert n_false == round(0.25 * n_true)
    assert ann.count("negative") == round(0.3 * (300 - n_false))
    assert ann.count("mislabelled") == round(0.5 * len(ann.missed))
    for c in ann.clicks:
        truth_kind = obj.kind[c.truth_index]
        assert (truth_kind == 0) == (c.kind in ("true", "mislabelled"))
        assert c.class_name == ("Mitosis" if c.kind in ("true", "false") else "Mitosis-like")
    # Clicks a few µm off centre: RMS as asked, never more than 3x.
    off = np.array([c.offset_um for c in ann.clicks])
    assert np.sqrt((off**2).mean()) == pytest.approx(2.0, rel=0.15)
    assert off.max() <= 6.0 + 1e-6
    # Borderline look-alikes are preferred for false clicks.
    false_hard = np.mean([obj.hard[c.truth_index] for c in ann.clicks if c.kind == "false"])
    assert false_hard > 0.35


def test_regions_limit_what_is_clicked():
    noise = AnnotationNoise(
        regions=2, region_area_mm2=0.3, missed_fraction=0.1, negative_click_fraction=0.5
    )
    obj = _objects()
    ann = _simulate(noise, obj)
    assert len(ann.regions) == 2
    assert ann.regions[0].area * 0.25**2 / 1e6 == pytest.approx(0.3, rel=0.02)
    union = shapely.union_all(ann.regions)
    inside = shapely.contains_xy(union, obj.xy[:, 0], obj.xy[:, 1])
    assert set(ann.outside_regions) == set(np.nonzero(inside & (obj.kind == 0))[0]) ^ set(
        np.nonzero(obj.kind == 0)[0]
    )
    for c in ann.clicks:
        assert inside[c.truth_index]


def test_same_stream_same_annotation():
    noise = AnnotationNoise(regions=1)
    assert _simulate(noise, seed=4) == _simulate(noise, seed=4)
    assert _simulate(noise, seed=4) != _simulate(noise, seed=5)


def test_files_are_qupath_geojson_and_the_noise_record_matches(tmp_path):
    noise = AnnotationNoise(negative_click_fraction=0.2, regions=1, region_area_mm2=0.5)
    obj = _objects(60, 40)
    ann = _simulate(noise, obj)
    prov = {"tool": "test"}
    ann_path, truth_path, noise_path = (
        tmp_path / "a.geojson",
        tmp_path / "t.geojson",
        tmp_path / "n.json",
    )
    write_annotations(ann_path, ann, seed=1, provenance=prov)
    assert write_truth(truth_path, obj, seed=1, provenance=prov) == 100
    summary = write_noise(noise_path, ann, obj, noise=noise, provenance=prov)
    # The annotation file reads back through the QuPath reader: points and the region.
    read = read_annotations(ann_path)
    assert read.points_per_class() == {
        k: v
        for k, v in {
            "Mitosis": summary["true_clicks"] + summary["false_clicks"],
            "Mitosis-like": summary["negative_clicks"],
        }.items()
        if v
    }
    assert read.areas_per_class() == {"Region": 1}
    doc = json.loads(ann_path.read_text())
    assert doc["wsdal"] == prov
    multipoints = [f for f in doc["features"] if f["geometry"]["type"] == "MultiPoint"]
    assert multipoints[0]["properties"]["classification"]["name"] == "Mitosis"
    # noise.json lists the clicks in the file's order.
    record = json.loads(noise_path.read_text())
    file_xy = [tuple(p) for f in multipoints for p in f["geometry"]["coordinates"]]
    assert file_xy == [(c["x"], c["y"]) for c in record["clicks"]]
    assert len(record["missed"]) == summary["missed"]
    truth = read_points(truth_path, classes=["Mitosis"])
    assert len(truth) == 60
    tdoc = json.loads(truth_path.read_text())["features"]
    assert [f["properties"]["measurements"]["Truth index"] for f in tdoc] == list(range(100))
