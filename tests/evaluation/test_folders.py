"""Tests of wsdal_wsi.evaluation.folders: pairing result and truth files, mpp, counting."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from wsdal_wsi.errors import AnnotationFormatError, InputError, ResolutionError
from wsdal_wsi.evaluation.folders import (
    evaluate_folders,
    provenance_mpp,
    read_mitosis_points,
)
from wsdal_wsi.qupath import (
    area_feature,
    detection_feature,
    point_feature,
    points_feature,
    write_features,
    write_results_geojson,
)


def write_truth(path: Path, mitoses, *, others=(), mpp: float | None = 0.25, synth=False):
    """A truth file: a Points annotation of Mitosis clicks, plus other classes."""
    features = []
    if len(mitoses):
        features.append(points_feature(np.asarray(mitoses, dtype=float), "Mitosis"))
    for x, y, cls in others:
        features.append(point_feature(x, y, cls))
    prov = None
    if mpp is not None:
        prov = {"settings": {"params": {"mpp": mpp}}} if synth else {"mpp": mpp}
    write_features(path, features, provenance=prov)
    return path


def write_pred(path: Path, detections, *, mpp: float | None = 0.25, extra=()):
    """A results file as `wsdal predict` writes it (slide block with the mpp)."""
    prov = {"slide": {"name": path.stem, "mpp": mpp}} if mpp is not None else None
    write_results_geojson(
        path,
        detections=np.asarray(detections, float).reshape(-1, 3),
        provenance=prov,
        extra_features=extra,
    )
    return path


@pytest.fixture
def folders(tmp_path):
    pred = tmp_path / "pred"
    truth = tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    # Image a: 2 mitoses, both found, one false positive (radius 7.5 µm = 30 px at 0.25).
    write_truth(
        truth / "a.geojson",
        [[100, 100], [400, 400]],
        others=[(700, 700, "Mitosis-like"), (900, 900, "Lymphocyte")],
    )
    write_pred(pred / "a.geojson", [[105, 100, 0.9], [400, 420, 0.8], [700, 700, 0.7]])
    # Image b: 3 mitoses, one found (29 px away), one too far (31 px), one missed.
    write_truth(truth / "b.geojson", [[100, 100], [300, 300], [600, 600]], synth=True)
    write_pred(pred / "b.geojson", [[129, 100, 0.9], [331, 300, 0.9]])
    # Unpaired files.
    write_pred(pred / "c.geojson", [[1, 1, 0.5]])
    write_truth(truth / "d.geojson", [[5, 5]])
    return pred, truth


def test_folder_counts_are_summed(folders):
    pred, truth = folders
    result = evaluate_folders(pred, truth, count_unpaired=False)
    assert [i.key for i in result.images] == ["a", "b"]
    a, b = result.images
    assert (a.n_pred, a.n_truth, a.tp, a.fp, a.fn) == (3, 2, 2, 1, 0)
    assert (b.n_pred, b.n_truth, b.tp, b.fp, b.fn) == (2, 3, 1, 1, 2)
    assert (result.tp, result.fp, result.fn) == (3, 2, 2)
    precision, recall, f1 = result.prf()
    assert (precision, recall, f1) == pytest.approx((0.6, 0.6, 0.6))
    assert [p.name for p in result.pred_only] == ["c.geojson"]
    assert [p.name for p in result.truth_only] == ["d.geojson"]
    assert a.mpp_source == "prediction provenance" and a.radius_px == pytest.approx(30.0)
    assert not result.unpaired_counted


def test_images_on_one_side_only_count_as_midog_counts_them(folders):
    """Also seen in issue 11: images on one side only were ignored; MIDOG counts truth
    without predictions as false negatives, and predictions without truth as false positives."""
    pred, truth = folders
    result = evaluate_folders(pred, truth)
    assert [(i.key, i.side) for i in result.images] == [
        ("a", "both"), ("b", "both"), ("c", "predictions only"), ("d", "truth only")
    ]  # fmt: skip
    c, d = result.images[2:]
    assert (c.n_pred, c.n_truth, c.tp, c.fp, c.fn) == (1, 0, 0, 1, 0)
    assert (d.n_pred, d.n_truth, d.tp, d.fp, d.fn) == (0, 1, 0, 0, 1)
    assert c.mpp is None and c.truth_path is None and d.pred_path is None
    assert (result.tp, result.fp, result.fn) == (3, 3, 3)
    assert result.prf() == pytest.approx((0.5, 0.5, 0.5))
    doc = result.to_dict()
    assert doc["unpaired_counted"] and doc["images"][3]["pred"] is None
    assert doc["images"][3]["side"] == "truth only"


def test_radius_option_changes_matches(folders):
    pred, truth = folders
    wide = evaluate_folders(pred, truth, radius_um=8.0)  # 32 px: b's 31 px miss becomes a hit
    assert wide.images[1].tp == 2


def test_user_mpp_overrides_the_files(folders):
    pred, truth = folders
    result = evaluate_folders(pred, truth, mpp=0.5, count_unpaired=False)  # 7.5 µm = 15 px
    assert {i.mpp_source for i in result.images} == {"--mpp"}
    assert result.images[0].tp == 1  # 5 px away matches, 20 px away no longer
    assert result.images[0].radius_px == pytest.approx(15.0)
    assert result.images[1].tp == 0


def test_to_dict_is_json_with_nulls_for_undefined(tmp_path):
    pred, truth = tmp_path / "p", tmp_path / "t"
    pred.mkdir()
    truth.mkdir()
    write_pred(pred / "x.geojson", [])
    write_truth(truth / "x.geojson", [])
    data = json.loads(json.dumps(evaluate_folders(pred, truth).to_dict()))
    assert (data["tp"], data["fp"], data["fn"]) == (0, 0, 0)
    assert data["f1"] is None and data["images"][0]["precision"] is None
    assert set(data) >= {"tp", "fp", "fn", "precision", "recall", "f1", "images"}


def test_truth_ignores_tool_objects_and_other_classes(tmp_path):
    path = tmp_path / "slide.geojson"
    write_features(
        path,
        [
            points_feature([[1, 1], [2, 2]], "Mitosis"),
            point_feature(3, 3, "Mitosis", object_type="detection"),
            point_feature(4, 4, "Mitosis-like"),
            point_feature(5, 5, None),
            detection_feature(6, 6, 0.9),  # the tool's own detection
            area_feature(box(0, 0, 10, 10), "Mitosis"),  # an area, not a point
        ],
    )
    truth = read_mitosis_points(path, role="truth")
    assert truth.tolist() == [[1, 1], [2, 2], [3, 3]]
    # A prediction file with tool objects: only those count.
    assert read_mitosis_points(path, role="pred").tolist() == [[6, 6]]
    assert read_mitosis_points(path, role="truth", classes=("Mitosis*",)).tolist() == [
        [1, 1],
        [2, 2],
        [3, 3],
        [4, 4],
    ]


def test_prediction_file_from_another_tool_counts_all_its_mitoses(tmp_path):
    path = tmp_path / "other.geojson"
    write_features(path, [point_feature(7, 7, "Mitosis", object_type="detection")])
    assert read_mitosis_points(path, role="pred").tolist() == [[7, 7]]


def test_predictions_kept_beside_user_annotations(tmp_path):
    # write_results_geojson keeps the user's own clicks in the file: they are not predictions.
    path = tmp_path / "slide.geojson"
    write_truth(path, [[50, 50]])
    write_pred(path, [[10, 10, 0.9]])
    assert read_mitosis_points(path, role="pred").tolist() == [[10, 10]]
    assert read_mitosis_points(path, role="truth").tolist() == [[50, 50]]


def test_stems_with_a_slide_extension_pair(tmp_path):
    pred, truth = tmp_path / "p", tmp_path / "t"
    pred.mkdir()
    truth.mkdir()
    write_pred(pred / "CMU-1.geojson", [[0, 0, 1.0]])
    write_truth(truth / "CMU-1.svs.geojson", [[0, 0]])
    result = evaluate_folders(pred, truth)
    assert [i.key for i in result.images] == ["CMU-1"]
    assert result.tp == 1


def test_two_files_for_one_image_are_refused(tmp_path):
    pred, truth = tmp_path / "p", tmp_path / "t"
    pred.mkdir()
    truth.mkdir()
    write_truth(truth / "s.geojson", [[0, 0]])
    write_truth(truth / "s.tif.geojson", [[0, 0]])
    write_pred(pred / "s.geojson", [])
    with pytest.raises(InputError, match=r"s\.geojson and s\.tif\.geojson are both for image 's'"):
        evaluate_folders(pred, truth)


def test_single_files(tmp_path):
    p = write_pred(tmp_path / "run.geojson", [[0, 0, 1.0], [500, 500, 0.5]])
    t = write_truth(tmp_path / "gt.geojson", [[3, 4]])
    result = evaluate_folders(p, t)
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)
    with pytest.raises(InputError, match="must both be folders or both be GeoJSON files"):
        evaluate_folders(p, tmp_path)


def test_missing_paths_and_no_pairs(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    with pytest.raises(InputError, match=r"prediction path .*nowhere does not exist"):
        evaluate_folders(tmp_path / "nowhere", tmp_path / "t")
    write_pred(tmp_path / "p" / "one.geojson", [])
    write_truth(tmp_path / "t" / "two.geojson", [])
    with pytest.raises(InputError, match=r"no image has a GeoJSON file in both .*\(1 files\)"):
        evaluate_folders(tmp_path / "p", tmp_path / "t")


def test_malformed_file_names_the_file(folders):
    pred, truth = folders
    (truth / "a.geojson").write_text('{"type": "FeatureCollection", "features": [', "utf-8")
    with pytest.raises(AnnotationFormatError, match=r"a\.geojson"):
        evaluate_folders(pred, truth)


def test_missing_mpp_names_the_file_and_the_option(tmp_path):
    pred, truth = tmp_path / "p", tmp_path / "t"
    pred.mkdir()
    truth.mkdir()
    write_pred(pred / "s.geojson", [[0, 0, 1.0]], mpp=None)
    write_truth(truth / "s.geojson", [[0, 0]], mpp=None)
    with pytest.raises(ResolutionError, match=r"s\.geojson: no resolution .*--mpp"):
        evaluate_folders(pred, truth)
    assert evaluate_folders(pred, truth, mpp=0.25).tp == 1


def test_mpp_from_a_slide_beside_the_geojson(tmp_path, synth_slide):
    folder = tmp_path / "slides"
    folder.mkdir()
    os.symlink(synth_slide.slide_path, folder / "case.tiff")
    write_truth(folder / "case.geojson", [[10, 10]], mpp=None)
    pred = write_pred(tmp_path / "case.geojson", [[12, 10, 1.0]], mpp=None)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pred.rename(pred_dir / "case.geojson")
    result = evaluate_folders(pred_dir, folder)
    (image,) = result.images
    assert image.mpp == pytest.approx(0.25)
    assert image.mpp_source.startswith("slide ") and "case.tiff" in image.mpp_source
    assert image.tp == 1


def test_synthetic_dataset_annotations_against_truth(synth_dataset):
    """The simulated pathologist's clicks scored against the truth: the injected noise shows."""
    result = evaluate_folders(synth_dataset.out_dir, synth_dataset.out_dir / "truth")
    assert len(result.images) == len(synth_dataset.slides)
    assert {i.mpp_source for i in result.images} == {"prediction provenance"}
    precision, recall, _ = result.prf()
    # 15 % of mitoses missed, false clicks worth 15 % of the true ones.
    assert 0.75 <= recall <= 0.92
    assert 0.75 <= precision <= 0.92


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"slide": {"mpp": 0.5}}, 0.5),
        ({"mpp": 0.25}, 0.25),
        ({"settings": {"params": {"mpp": 0.3}}}, 0.3),
        ({"settings": {"mpp": 0.2}}, 0.2),
        ({"slide": {"mpp": None}, "mpp": 0.25}, 0.25),
        ({"slide": {"mpp": "bad"}}, None),
        ({"mpp": True}, None),
        ({"mpp": -1}, None),
        ("not a block", None),
        (None, None),
    ],
)
def test_provenance_mpp(block, expected):
    assert provenance_mpp(block) == expected
