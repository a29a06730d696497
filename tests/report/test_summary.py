import json

import pytest

from wsdal_wsi.errors import InputError
from wsdal_wsi.report import SlideSummary, read_summary, slide_files, write_summary
from wsdal_wsi.report.summary import SCHEMA, SlideInfo


def test_summary_holds_everything_and_round_trips(out_dir):
    path = slide_files(out_dir, "alpha").summary
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == SCHEMA and data["status"] == "ok"
    for key in ("tool", "version", "created"):
        assert key in data["provenance"]
    assert data["slide"] == {
        "name": "alpha slide µ²",
        "key": "alpha",
        "path": "/slides/alpha.svs",
        "mpp": 0.5,
        "mpp_source": "slide properties",
        "dimensions": [6400, 4800],
    }
    assert data["model"]["sha256"] == "ab" * 32 and data["model"]["threshold"] == 0.6
    assert data["settings"]["threshold"] == 0.6
    assert data["settings"]["hotspot"]["window"] == "circle"
    assert data["settings"]["hotspot"]["area_mm2"] == 0.2
    assert data["settings"]["hotspot"]["min_tissue_fraction"] == 0.5
    assert data["detections"]["geojson"] == "alpha.geojson"
    assert data["detections"]["count"] > 0
    assert data["tissue"]["mask"] == "alpha.tissue.png" and data["tissue"]["downsample"] == 32.0
    assert data["tissue"]["area_mm2"] > 0
    assert [r["name"] for r in data["regions"]] == ["Tumour 1", "Rest"]
    assert data["regions"][0]["geometry"]["type"] == "Polygon"
    hs = data["hotspot"]
    assert hs["geometry"]["type"] == "Polygon"
    assert hs["score"]["score"] in (1, 2, 3) and hs["field_diameter_mm"] == 0.55
    assert hs["per_mm2"] == pytest.approx(hs["count"] / hs["area_mm2"])
    assert data["assets"]["report"] == "alpha.report.png"
    assert data["timings"]["model_s"] == 1.5
    summary = read_summary(path)
    assert SlideSummary.from_json(summary.to_json()) == summary


def test_failed_summary_round_trips(out_dir, tmp_path):
    s = read_summary(slide_files(out_dir, "gamma").summary)
    assert not s.ok and "truncated" in s.reason and s.hotspot is None
    p = tmp_path / "x.summary.json"
    write_summary(p, SlideSummary.failed(SlideInfo("x", "x"), "boom"))
    again = read_summary(p)
    assert (again.status, again.reason, again.key) == ("failed", "boom", "x")


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "summary file not found"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema": "other"}', "not a wsdal-wsi slide summary"),
        (json.dumps({"schema": SCHEMA, "schema_version": 99, "slide": {}}), "newer"),
        (json.dumps({"schema": SCHEMA, "schema_version": 1}), "'slide'"),
    ],
)
def test_bad_summaries_name_the_file(tmp_path, content, message):
    p = tmp_path / "bad.summary.json"
    if content is not None:
        p.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_summary(p)
    assert str(p) in str(info.value)
