import json
from types import SimpleNamespace

import numpy as np
import pytest
import shapely
from shapely.geometry import box, shape

from wsdal_wsi.counting import HotspotSettings, find_hotspot
from wsdal_wsi.errors import InputError
from wsdal_wsi.qupath import class_color, make_feature
from wsdal_wsi.qupath.geojson_read import read_objects
from wsdal_wsi.report import (
    HOTSPOT_CLASS,
    REGION_COUNT_CLASS,
    count_annotations,
    count_features,
    read_detections,
    read_summary,
    replace_count_features,
    slide_files,
)


def test_results_geojson_has_detections_hotspot_and_region_counts(out_dir):
    s = read_summary(slide_files(out_dir, "alpha").summary)
    objects = read_objects(slide_files(out_dir, "alpha").geojson)  # QuPath-format reader
    detections = [o for o in objects if o.object_type == "detection"]
    assert len(detections) == s.detections
    (hotspot,) = [o for o in objects if o.class_name == HOTSPOT_CLASS]
    assert hotspot.object_type == "annotation" and hotspot.tool_made and hotspot.is_ellipse
    assert hotspot.name.startswith("WS-DAL hotspot")
    m = hotspot.measurements
    assert m["WS-DAL mitoses"] == s.hotspot.count
    assert m["WS-DAL area mm^2"] == pytest.approx(0.2)
    assert m["WS-DAL mitoses per mm^2"] == pytest.approx(s.hotspot.per_mm2)
    assert m["WS-DAL mitotic score"] == s.hotspot.score.score
    assert hotspot.geometry.area == pytest.approx(0.2e6 / 0.25, rel=1e-3)  # mm² -> px² at 0.5
    regions = [o for o in objects if o.class_name == REGION_COUNT_CLASS]
    assert [o.name for o in regions] == ["WS-DAL count: Tumour 1", "WS-DAL count: Rest"]
    assert [o.measurements["WS-DAL mitoses"] for o in regions] == [r.mitoses for r in s.regions]
    assert all(o.is_locked for o in (hotspot, *regions))


def test_count_annotations_match_the_features(out_dir):
    s = read_summary(slide_files(out_dir, "alpha").summary)
    anns = count_annotations(s)
    feats = count_features(s)
    assert [a.name for a in anns] == [f["properties"]["name"] for f in feats]
    assert anns[0].class_name == HOTSPOT_CLASS
    assert anns[0].geometry.equals_exact(s.hotspot.geometry, 1e-6)


def test_read_detections_returns_points_and_probabilities(out_dir):
    pts, scores = read_detections(slide_files(out_dir, "beta").geojson)
    assert pts.shape == (len(scores), 2) and len(scores) > 50
    assert ((scores >= 0.6) & (scores <= 1.0)).all()


def test_replace_keeps_detections_and_user_objects(out_dir):
    path = slide_files(out_dir, "alpha").geojson
    doc = json.loads(path.read_text(encoding="utf-8"))
    user = make_feature(box(0, 0, 10, 10), class_name="Tumor", name="my tumour")
    no_colour = make_feature(box(0, 0, 5, 5), name="scripted")
    no_colour["properties"]["classification"] = {"names": ["Tumor", "Mitosis"]}
    doc["features"] += [user, no_colour]
    path.write_text(json.dumps(doc), encoding="utf-8")
    before_pts, before_scores = read_detections(path)
    new = [make_feature(box(1, 1, 5, 5), class_name=HOTSPOT_CLASS, name="WS-DAL hotspot: test")]
    replace_count_features(path, new, provenance={"tool": "test"})
    after = json.loads(path.read_text(encoding="utf-8"))
    names = [f["properties"].get("name") for f in after["features"]]
    assert "my tumour" in names and "WS-DAL hotspot: test" in names
    # QuPath refuses a whole file with a colourless classification: the kept object gets one
    scripted = after["features"][names.index("scripted")]["properties"]["classification"]
    assert scripted == {"names": ["Tumor", "Mitosis"], "color": list(class_color("Tumor: Mitosis"))}
    assert not any(n and n.startswith("WS-DAL count") for n in names)
    assert after["wsdal"]["counts"] == {"tool": "test"}
    assert after["wsdal"]["version"] == doc["wsdal"]["version"]  # predict's provenance kept
    pts, scores = read_detections(path)
    np.testing.assert_array_equal(pts, before_pts)
    np.testing.assert_array_equal(scores, before_scores)


def test_bad_results_files(tmp_path):
    with pytest.raises(InputError, match="results GeoJSON not found"):
        read_detections(tmp_path / "none.geojson")
    p = tmp_path / "bad.geojson"
    p.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.geojson: not valid JSON"):
        read_detections(p)
    p.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": []},
                        "properties": {"objectType": "detection", "name": "WS-DAL"},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="feature 0: bad detection"):
        read_detections(p)


def test_a_hotspot_at_the_image_edge_is_a_polygon_inside_the_image_holding_its_count():
    """Also seen in issue 11: QuPath showed 362 detections inside our '361 mitoses' hotspot,
    whose ellipse reached negative coordinates."""
    mpp, ds = 0.5, 16.0
    mask = np.zeros((40, 60), dtype=bool)
    mask[:, :20] = True
    rng = np.random.default_rng(5)
    pts = np.concatenate(
        [rng.uniform([0, 0], [320, 640], size=(50, 2)), [[330.0, 320.0], [335.0, 330.0]]]
    )  # two just beside the tissue mask, where prediction still looks
    hotspot = find_hotspot(
        pts,
        mpp=mpp,
        tissue=mask,
        tissue_downsample=ds,
        settings=HotspotSettings(area_mm2=0.05),
        slide_dimensions=(960, 640),
    )
    (feature,) = count_features(SimpleNamespace(hotspot=hotspot, hotspot_range=None, regions=[]))
    assert feature["geometry"]["type"] == "Polygon"
    assert "isEllipse" not in json.dumps(feature)  # a cut circle is no longer an ellipse
    poly = shape(feature["geometry"])
    xs, ys = np.array(poly.exterior.coords).T
    assert xs.min() >= 0 and ys.min() >= 0 and xs.max() <= 960 and ys.max() <= 640
    shown = int(shapely.intersects_xy(poly, pts[:, 0], pts[:, 1]).sum())  # what QuPath shows
    assert feature["properties"]["measurements"]["WS-DAL mitoses"] == shown == hotspot.count
