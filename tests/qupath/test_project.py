import json
from pathlib import Path

import pytest

from wsdal_wsi.errors import ConfigError, ProjectError
from wsdal_wsi.qupath.project import (
    annotations_export_path,
    class_id,
    find_qpproj,
    parse_relink,
    read_class_colors,
    read_qpproj,
    results_exchange_path,
    uri_to_path,
)

from .conftest import qpproj_image, wrap_image, write_qpproj


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("file:/data/slides/a.svs", "/data/slides/a.svs"),
        ("file:///data/slides/a.svs", "/data/slides/a.svs"),
        ("file:/data/my%20slides/a%C3%A9.svs", "/data/my slides/aé.svs"),
        ("file:/C:/Users/path/a.svs", "C:/Users/path/a.svs"),
        ("file:///C:/Users/path/a.svs", "C:/Users/path/a.svs"),
        ("file:////server/share/a.svs", "//server/share/a.svs"),
        ("file://server/share/a.svs", "//server/share/a.svs"),
        ("file://localhost/data/a.svs", "/data/a.svs"),
        ("slides/a.svs", "slides/a.svs"),
        ("C:\\data\\a.svs", "C:/data/a.svs"),
        ("https://example.org/a.svs", None),
        ("", None),
    ],
)
def test_uri_to_path(uri, expected):
    assert uri_to_path(uri) == expected


def test_parse_relink():
    assert parse_relink(["/old/data=/new/data/", "C:\\scans=/mnt/scans"]) == (
        ("/old/data", "/new/data"),
        ("C:/scans", "/mnt/scans"),
    )
    assert parse_relink({"/a": "/b"}) == (("/a", "/b"),)
    assert parse_relink(None) == ()
    with pytest.raises(ConfigError, match=r"OLD=NEW .* got '/old'"):
        parse_relink(["/old"])
    with pytest.raises(ConfigError, match="both sides non-empty"):
        parse_relink(["=/new"])


def test_exchange_paths(tmp_path):
    assert (
        annotations_export_path(tmp_path, "7") == tmp_path / "wsdal" / "annotations" / "7.geojson"
    )
    assert results_exchange_path(tmp_path, "7") == tmp_path / "wsdal" / "results" / "7.geojson"


def test_absolute_relative_moved_relinked_and_missing(tmp_path):
    # slides live beside the project: <root>/project and <root>/scans
    root = tmp_path / "new_place"
    scans = root / "scans"
    scans.mkdir(parents=True)
    for name in ["abs.svs", "rel.svs", "moved.svs", "my slide.svs", "wrapped.svs"]:
        (scans / name).write_bytes(b"x")
    elsewhere = tmp_path / "mounted" / "archive"
    elsewhere.mkdir(parents=True)
    (elsewhere / "relinked.svs").write_bytes(b"x")
    project = root / "project"
    images = [
        qpproj_image(1, "abs.svs", (scans / "abs.svs").as_uri(), mpp=0.25),
        qpproj_image(2, "rel.svs", "../scans/rel.svs"),
        # saved when the project was at /old_place/project: moved together with its slides
        qpproj_image(3, "moved.svs", "file:/old_place/scans/moved.svs"),
        qpproj_image(4, "relinked.svs", "file:/lab/archive/relinked.svs"),
        qpproj_image(5, "gone.svs", "file:/nowhere/gone.svs"),
        qpproj_image(6, "my slide.svs", (scans / "my slide.svs").as_uri()),
        qpproj_image(7, "remote", "https://server/image/7"),
        qpproj_image(8, "nouri", None),
    ]
    wrapped = qpproj_image(9, "wrapped.svs", (scans / "wrapped.svs").as_uri())
    images.append(wrap_image(wrapped, "rotated", rotation="ROTATE_180"))
    write_qpproj(project, images, uri="file:/old_place/project/project.qpproj")

    proj = read_qpproj(project, relink=[f"/lab/archive={elsewhere}"])
    assert proj.version == "0.5.1"
    assert proj.directory == project.resolve()
    by_id = {im.entry_id: im for im in proj.images}
    assert by_id["1"].slide_path == scans / "abs.svs"
    assert by_id["1"].slide_how == "as stored"
    assert by_id["1"].mpp == 0.25 and by_id["1"].width == 512
    assert by_id["2"].slide_path.resolve() == (scans / "rel.svs").resolve()
    assert by_id["3"].slide_path == scans / "moved.svs"
    assert by_id["3"].slide_how == "project moved (relative to the project)"
    assert by_id["4"].slide_path == elsewhere / "relinked.svs"
    assert by_id["4"].slide_how == "relinked (--relink)"
    assert by_id["5"].slide_path is None
    msg = by_id["5"].missing_message()
    assert "/nowhere/gone.svs" in msg and "--relink OLD=NEW" in msg
    assert by_id["6"].slide_path == scans / "my slide.svs"
    assert by_id["7"].slide_path is None
    assert "not a local file" in by_id["7"].missing_message()
    assert "records no slide" in by_id["8"].missing_message()
    # a rotated image: its slide is found, but QuPath's coordinates are not the file's
    assert by_id["9"].slide_path == scans / "wrapped.svs"
    assert "rotated (ROTATE_180)" in by_id["9"].server.problem
    assert all(by_id[k].server.problem is None for k in "12345678")
    # without the relink rule, image 4 is missing
    assert read_qpproj(project).images[3].slide_path is None


def test_windows_project_moved_to_linux_with_its_slides(tmp_path):
    project = tmp_path / "proj"
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.svs").write_bytes(b"x")
    write_qpproj(
        project,
        [qpproj_image(1, "a.svs", "file:/D:/study/scans/a.svs")],
        uri="file:/D:/study/proj/project.qpproj",
    )
    im = read_qpproj(project / "project.qpproj").images[0]
    assert im.slide_path == tmp_path / "scans" / "a.svs"
    # or relinked explicitly
    im2 = read_qpproj(project, relink=[f"D:/study/scans={tmp_path / 'scans'}"]).images[0]
    assert im2.slide_how == "relinked (--relink)"


def test_find_qpproj(tmp_path):
    assert find_qpproj(tmp_path) is None
    write_qpproj(tmp_path, [])
    assert find_qpproj(tmp_path) == tmp_path / "project.qpproj"
    assert find_qpproj(tmp_path / "project.qpproj") == tmp_path / "project.qpproj"


def test_project_errors(tmp_path):
    with pytest.raises(ProjectError, match="no QuPath project here"):
        read_qpproj(tmp_path)
    bad = tmp_path / "project.qpproj"
    bad.write_text('{"images": [')
    with pytest.raises(ProjectError, match="not valid JSON"):
        read_qpproj(bad)
    bad.write_text('{"images": 5}')
    with pytest.raises(ProjectError, match="no 'images' list"):
        read_qpproj(bad)
    bad.write_text(json.dumps({"images": [{"imageName": "a"}]}))
    with pytest.raises(ProjectError, match="image 0 has no entryID"):
        read_qpproj(bad)
    bad.write_text(json.dumps({"images": [qpproj_image(1, "a", None), qpproj_image(1, "b", None)]}))
    with pytest.raises(ProjectError, match="entryID 1 appears twice"):
        read_qpproj(bad)


def test_calibration_in_pixels_is_no_resolution(tmp_path):
    image = qpproj_image(1, "a", None)
    image["serverBuilder"]["metadata"]["pixelCalibration"] = {
        "pixelWidth": {"value": 1.0, "unit": "px"},
        "pixelHeight": {"value": 1.0, "unit": "px"},
    }
    write_qpproj(tmp_path, [image])
    assert read_qpproj(tmp_path).images[0].mpp is None


def test_empty_project(tmp_path):
    write_qpproj(tmp_path / "p", [])
    assert read_qpproj(tmp_path / "p").images == ()
    assert isinstance(read_qpproj(tmp_path / "p").qpproj, Path)


def test_class_list_as_qupath_writes_it(tmp_path, caplog):
    assert read_class_colors(tmp_path) == {}
    (tmp_path / "classifiers").mkdir()
    classes = tmp_path / "classifiers" / "classes.json"
    classes.write_text(
        json.dumps(
            {
                "pathClasses": [
                    {"name": "Tumor", "color": -3670016},
                    {"name": "Tumor: Mitosis", "color": -65536},
                    {"name": "Stroma:Mitosis", "color": -16711936},
                    {"name": "no colour"},
                ]
            }
        )
    )
    assert read_class_colors(tmp_path) == {
        "Tumor": (200, 0, 0),
        "Tumor: Mitosis": (255, 0, 0),
        "Stroma: Mitosis": (0, 255, 0),
    }
    assert class_id(" Tumor :Mitosis") == "Tumor: Mitosis"
    classes.write_text("{")
    assert read_class_colors(tmp_path) == {}
    assert "cannot read the class list" in caplog.text
