"""Hostile paths: spaces, non-ASCII names, shell characters, folders named like slides."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from wsdal_wsi.cli import app

runner = CliRunner()
NAME = "scan 1 (é, 日本) #2 $HOME"  # spaces, accents, CJK, shell characters


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{args[0]}: {result.output[-500:]}"
    return result


def _refused(args: list[str], *fragments: str):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, f"{args[0]}: {result.output[-500:]}"
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if "Error" in ln]
    for fragment in fragments:
        assert fragment in line, line
    return result


def test_every_command_takes_unusual_names(train_data, tiny_model, tmp_path):
    root = tmp_path / "dossier partagé ü"
    slides = root / "lames à voir"
    (slides / "truth").mkdir(parents=True)
    src = sorted(train_data.glob("*.tiff"))[0]
    shutil.copy(src, slides / f"{NAME}.tiff")
    shutil.copy(src.with_suffix(".geojson"), slides / f"{NAME}.geojson")
    shutil.copy(train_data / "truth" / f"{src.stem}.geojson", slides / "truth" / f"{NAME}.geojson")
    model = root / "modèle 1.pt"
    shutil.copy(tiny_model, model)
    out = root / "résultats $(rm -rf ~)"

    doc = json.loads(_ok(["inspect", str(slides), "--json"]).stdout)
    (image,) = doc["images"]
    assert image["key"] == NAME and image["usable"]
    _ok(["info", str(slides / f"{NAME}.tiff")])
    _ok(["predict", str(slides), "--model", str(model), "--out", str(out),
         "--device", "cpu", "--tile-size", "512"])  # fmt: skip
    for suffix in (".geojson", ".summary.json", ".report.png", ".tissue.png"):
        assert (out / f"{NAME}{suffix}").is_file(), suffix
    assert NAME in (out / "counts.csv").read_text(encoding="utf-8-sig")
    _ok(["count", str(out), "--area-mm2", "0.1"])
    scores = json.loads(_ok(["evaluate", str(out), str(slides / "truth"), "--json"]).stdout)
    assert [i["image"] for i in scores["images"]] == [NAME]


def test_folders_named_like_slides(train_data, tmp_path):
    """A folder called ``x.svs`` (or just ``.svs``) is never taken for a slide."""
    slides = tmp_path / "slides"
    slides.mkdir()
    src = sorted(train_data.glob("*.tiff"))[0]
    shutil.copy(src, slides / "real.tiff")
    shutil.copy(src.with_suffix(".geojson"), slides / "real.geojson")
    (slides / "fake.svs").mkdir()
    (slides / ".svs").mkdir()
    (slides / "fake.geojson").write_text("{}")
    doc = json.loads(_ok(["inspect", str(slides), "--json"]).stdout)
    assert [i["name"] for i in doc["images"]] == ["real.tiff"]
    # given by itself, such a folder is a folder without slides, and info says it is no slide
    _refused(["inspect", str(slides / "fake.svs")], "no slides found")
    _refused(["inspect", str(slides / ".svs")], "no slides found")
    _refused(["info", str(slides / "fake.svs")], "fake.svs")
    # and a file with a slide's name that is no slide: one line, exit 2
    (slides / "notes.svs").write_text("meeting notes")
    _refused(["info", str(slides / "notes.svs")], "notes.svs")
    _refused(["inspect", str(slides / "notes.svs")], "notes.svs")
