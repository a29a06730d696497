"""One image of a batch: regions to count, the detection key after a recount, missing slides."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from shapely.geometry import box

from wsdal_wsi.errors import SlideError
from wsdal_wsi.predict import PredictSettings
from wsdal_wsi.predict.image import (
    _find_detection_key,
    exchange_copies,
    predict_image,
    regions_of,
)
from wsdal_wsi.qupath import AreaAnnotation, ClassSettings, ImageAnnotations, ImageRecord
from wsdal_wsi.report import ModelInfo


def _record(**kw):
    base = dict(name="s.svs", key="s", slide_path=None, annotations=None, problems=[])
    base.update(kw)
    return ImageRecord(**base)


def test_regions_are_the_areas_not_ignored():
    ann = ImageAnnotations(
        areas=(
            AreaAnnotation(box(0, 0, 10, 10), "Region", name="R1"),
            AreaAnnotation(box(0, 0, 5, 5), "Tumor"),
            AreaAnnotation(box(0, 0, 5, 5), "Ignore artefact"),
        )
    )
    regions = regions_of(_record(annotations=ann), ClassSettings())
    assert [(r.class_name, r.name) for r in regions] == [("Region", "R1"), ("Tumor", None)]
    assert regions_of(_record(), ClassSettings()) == []


def test_the_detection_key_is_found_after_wsdal_count_nests_it():
    key = {"model_sha256": "ab"}
    prov = {"settings": {"hotspot": {}}, "prediction": {"settings": {"detection": key}}}
    assert _find_detection_key(prov) == key
    assert _find_detection_key({"settings": {"detection": key}}) == key
    assert _find_detection_key({"settings": {}}) is None
    assert _find_detection_key(None) is None


def test_exchange_copy_is_skipped_when_it_is_the_output_file(tmp_path):
    target = tmp_path / "project" / "wsdal" / "results" / "3.geojson"
    source = SimpleNamespace(exchange_results_path=lambda record: target)
    assert exchange_copies(source, _record(key="3"), tmp_path / "OUT") == [target]
    assert exchange_copies(source, _record(key="3"), target.parent) == []
    folder = SimpleNamespace(exchange_results_path=lambda record: None)
    assert exchange_copies(folder, _record(), tmp_path) == []


def test_a_missing_slide_fails_with_the_sources_reason(tmp_path):
    record = _record(problems=["slide not found: /old/s.svs (use --relink OLD=NEW)",
                               "no annotations"])  # fmt: skip
    with pytest.raises(SlideError, match=r"s.svs: slide not found: /old/s.svs \(use --relink"):
        predict_image(record, None, Path(tmp_path), model_info=ModelInfo(),
                      settings=PredictSettings(), classes=ClassSettings(), copies=[],
                      source_info={})  # fmt: skip
