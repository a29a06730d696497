"""The user's files (slides, sidecars, QuPath project, annotation exports, truth) are
byte-identical after every command, the refused ones included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wsdal_wsi.cli import app

from .conftest import builders, copy_slides, fingerprints

runner = CliRunner()


@pytest.fixture(scope="module")
def user(train_data, tmp_path_factory) -> dict[str, Path]:
    """A slide folder, a QuPath project over the same slides, its truth, a COCO database."""
    root = tmp_path_factory.mktemp("user")
    slides = copy_slides(train_data, root / "slides")
    tiffs = sorted(slides.glob("*.tiff"))
    qpproj = builders.make_project(
        root / "project", tiffs, [t.with_suffix(".geojson") for t in tiffs]
    )
    truth = root / "truth"
    truth.mkdir()
    for t in tiffs:
        (truth / f"{t.stem}.geojson").write_bytes(
            (train_data / "truth" / f"{t.stem}.geojson").read_bytes()
        )
    coco = root / "db.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": tiffs[0].name, "width": 1536, "height": 1536}],
                "categories": [{"id": 1, "name": "mitotic figure"}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [90, 90, 110, 110]}
                ],
            }
        )
    )
    return {"slides": slides, "project": qpproj.parent, "truth": truth, "coco": coco, "root": root}


def _state(user: dict[str, Path]) -> dict[str, dict[str, str]]:
    return {
        "slides": fingerprints(user["slides"]),
        # the project's own files; wsdal/results is where our results go for QuPath
        "project": fingerprints(user["project"], skip=("wsdal/results",)),
        "truth": fingerprints(user["truth"]),
        "coco": fingerprints(user["coco"].parent, skip=("slides", "project", "truth", "out")),
    }


@pytest.mark.slow
def test_user_files_are_byte_identical_after_every_command(user, tiny_model):
    slides, project, truth = user["slides"], user["project"], user["truth"]
    out = user["root"] / "out"
    before = _state(user)
    assert before["slides"] and before["project"] and before["truth"]
    predict = ("predict", "--model", str(tiny_model), "--device", "cpu", "--tile-size", "512")
    first_slide = str(sorted(slides.glob("*.tiff"))[0])
    commands = [
        (["info", first_slide], 0),
        (["inspect", str(slides)], 0),
        (["inspect", str(project), "--backend", "export"], 0),
        (["train", str(slides), "--out", str(out / "run"), "--preset", "tiny",
          "--device", "cpu", "--stop-after", "ns"], 0),
        ([predict[0], str(slides), *predict[1:], "--out", str(out / "p1")], 0),
        ([predict[0], str(project), *predict[1:], "--out", str(out / "p2")], 0),
        (["count", str(out / "p1"), "--area-mm2", "0.1"], 0),
        (["evaluate", str(out / "p1"), str(truth)], 0),
        (["import-coco", str(user["coco"]), "--images", str(slides),
          "--out", str(out / "coco"), "--bbox-format", "xyxy"], 0),
        # refused: results into the slide folder, into the project's annotation exports
        ([predict[0], str(slides), *predict[1:], "--out", str(slides)], 2),
        ([predict[0], str(project), *predict[1:], "--out",
          str(project / "wsdal" / "annotations")], 2),
        ([predict[0], first_slide, *predict[1:], "--out", str(slides)], 2),
    ]  # fmt: skip
    for args, code in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == code, f"{args[0]}: {result.output[-500:]}"
        assert "Traceback" not in result.output
        assert _state(user) == before, f"wsdal {' '.join(args[:2])} changed a user's file"
    assert (project / "wsdal" / "results" / "1.geojson").is_file()  # results did reach QuPath
