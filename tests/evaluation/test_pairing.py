"""Pairing GeoJSON files by slide stem."""

import pytest

from wsdal_wsi.errors import InputError
from wsdal_wsi.evaluation.pairing import image_key, pair_files


def test_image_key_drops_geojson_and_a_slide_extension(tmp_path):
    assert image_key(tmp_path / "CMU-1.svs.geojson") == "CMU-1"
    assert image_key(tmp_path / "a.b.geojson") == "a.b"


def test_pairs_and_the_files_on_one_side(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    files = {
        pred: ["a.geojson", "b.tiff.geojson", "c.geojson", ".x.geojson"],
        truth: ["a.geojson", "b.geojson", "d.geojson", "notes.txt"],
    }
    for folder, names in files.items():
        for name in names:
            (folder / name).write_text("[]")
    pairs, pred_only, truth_only = pair_files(pred, truth)
    assert [k for k, _, _ in pairs] == ["a", "b"]
    assert [p.name for p in pred_only] == ["c.geojson"]
    assert [p.name for p in truth_only] == ["d.geojson"]
    (pred / "a.svs.geojson").write_text("[]")
    with pytest.raises(InputError, match="are both for image 'a'"):
        pair_files(pred, truth)
