import json
from collections import Counter, defaultdict

import pytest

from wsdal_wsi.errors import AnnotationFormatError, ConfigError, InputError
from wsdal_wsi.qupath.annotations import read_annotations
from wsdal_wsi.qupath.coco import coco_annotations, detect_bbox_format, import_coco, load_coco
from wsdal_wsi.qupath.model import PointAnnotation

from .conftest import make_tiff
from .strict_checker import check_file


def _db(boxes, *, width=1000, height=1000, categories=None):
    return {
        "images": [{"id": 1, "file_name": "s1.tiff", "width": width, "height": height}],
        "categories": categories if categories is not None else [{"id": 1}, {"id": 2}],
        "annotations": [
            {"id": i, "image_id": 1, "category_id": cat, "bbox": box}
            for i, (cat, box) in enumerate(boxes)
        ],
    }


def test_midog_database_import(midog_json_path, tmp_path):
    """The real MIDOG++ database: every image gets a sidecar with the database's counts."""
    db = json.loads(midog_json_path.read_text())
    images_dir = tmp_path / "images"  # the images are not here: every slide is "missing"
    images_dir.mkdir()
    report = import_coco(midog_json_path, images_dir=images_dir, out_dir=tmp_path / "out")
    assert report.bbox_format == "xyxy"
    assert len(report.sidecars) == len(db["images"]) == 553
    assert sorted(report.missing_slides) == sorted(im["file_name"] for im in db["images"])
    assert report.skipped == {} and report.linked == 0

    names = {1: "Mitosis", 2: "Mitosis-like"}
    file_of = {im["id"]: im["file_name"] for im in db["images"]}
    expected: dict[str, Counter] = defaultdict(Counter)
    for ann in db["annotations"]:
        expected[file_of[ann["image_id"]]][names[ann["category_id"]]] += 1
    total = Counter()
    for im in db["images"]:
        name = im["file_name"]
        assert report.counts[name] == dict(expected[name])
        total.update(report.counts[name])
    assert total == {"Mitosis": 11937, "Mitosis-like": 14349}

    # the files say the same when read back, and are QuPath's form in every field
    first = db["images"][0]
    sidecar = tmp_path / "out" / (first["file_name"].rsplit(".", 1)[0] + ".geojson")
    check_file(sidecar)
    ann = read_annotations(sidecar)
    assert ann.points_per_class() == dict(expected[first["file_name"]])
    box = next(a["bbox"] for a in db["annotations"] if a["image_id"] == first["id"])
    assert PointAnnotation(
        (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, ann.points[0].class_name
    ) in (ann.points)
    prov = json.loads(sidecar.read_text())["wsdal"]
    assert prov["source"] == "coco-import" and prov["bbox_format"] == "xyxy"
    assert prov["coco_image"]["tumor_type"] == first["tumor_type"]


def test_bbox_format_detection():
    # [x1, y1, x2, y2]: x2 + ... passes the width when read as [x, y, w, h]
    assert detect_bbox_format(_db([(1, [900, 10, 950, 60])])) == "xyxy"
    # [x, y, w, h]: w < x rules out [x1, y1, x2, y2]
    assert detect_bbox_format(_db([(1, [900, 10, 50, 50])])) == "xywh"
    with pytest.raises(ConfigError, match="give --bbox-format xyxy"):
        detect_bbox_format(_db([(1, [10, 10, 60, 60])]))
    per_image, _ = coco_annotations(_db([(1, [10, 10, 60, 60])]), bbox_format="xywh")
    assert per_image[1].points == (PointAnnotation(40.0, 40.0, "Mitosis"),)
    with pytest.raises(ConfigError, match="bbox format must be"):
        coco_annotations(_db([]), bbox_format="yxyx")


def test_categories_and_orphans():
    db = _db(
        [(1, [900, 10, 950, 60]), (3, [100, 100, 150, 150]), (9, [0, 0, 50, 50])],
        categories=[{"id": 1, "name": "mitotic figure"}, {"id": 3, "name": "tumor cell"}],
    )
    db["annotations"].append({"id": 99, "image_id": 42, "category_id": 1, "bbox": [0, 0, 5, 5]})
    per_image, info = coco_annotations(db, category_classes={1: "Mitose"}, bbox_format="xyxy")
    assert [p.class_name for p in per_image[1].points] == ["Mitose", "tumor cell", "category 9"]
    assert info["orphans"] == 1
    assert any("category 3 ('tumor cell') has no class given" in n for n in info["notes"])
    assert any("category 9 is not in 'categories'" in n for n in info["notes"])


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "empty file"),
        ("{", "not valid JSON"),
        ("[]", "no 'images' list"),
        ('{"images": [{"id": 1}]}', r"images\[0\] needs 'id' and 'file_name'"),
        (
            '{"images": [], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2]}]}',
            r"annotations\[0\] needs 'image_id', 'category_id' and a 4-number 'bbox'",
        ),
    ],
)
def test_malformed_database(tmp_path, content, match):
    path = tmp_path / "db.json"
    path.write_text(content)
    with pytest.raises(AnnotationFormatError, match=match):
        load_coco(path)


def test_import_links_copies_and_reruns(tmp_path):
    images = tmp_path / "images"
    make_tiff(images / "s1.tiff")
    db = _db([(1, [900, 10, 950, 60]), (2, [100, 100, 150, 150])])
    db["images"].append({"id": 2, "file_name": "empty.tiff", "width": 10, "height": 10})
    db_path = tmp_path / "db.json"
    db_path.write_text(json.dumps(db))

    out = tmp_path / "out"
    r1 = import_coco(db_path, images_dir=images, out_dir=out)
    assert r1.linked == 1 and (out / "s1.tiff").is_symlink()
    assert r1.missing_slides == ["empty.tiff"]
    assert r1.counts == {"s1.tiff": {"Mitosis": 1, "Mitosis-like": 1}, "empty.tiff": {}}
    assert check_file(out / "empty.geojson") == []  # zero mitoses is information too
    r2 = import_coco(db_path, images_dir=images, out_dir=out)  # re-run: same result
    assert r2.linked == 1 and r2.skipped == {}
    assert read_annotations(out / "s1.geojson").points_per_class() == {
        "Mitosis": 1,
        "Mitosis-like": 1,
    }

    # a sidecar someone made by hand is never overwritten
    foreign = tmp_path / "out2"
    foreign.mkdir()
    (foreign / "s1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    r3 = import_coco(db_path, images_dir=images, out_dir=foreign, link="copy")
    assert "was not made by a COCO import" in r3.skipped["s1.tiff"]
    assert (foreign / "s1.geojson").read_text() == '{"type": "FeatureCollection", "features": []}'

    # the images folder itself as the output: no links
    r4 = import_coco(db_path, images_dir=images, out_dir=images)
    assert r4.linked == 0 and (images / "s1.geojson").is_file()

    with pytest.raises(InputError, match="the images folder does not exist"):
        import_coco(db_path, images_dir=tmp_path / "nope", out_dir=out)
    with pytest.raises(ConfigError, match="link must be"):
        import_coco(db_path, images_dir=images, out_dir=out, link="hard")
