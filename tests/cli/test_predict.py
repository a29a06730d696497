"""``wsdal predict`` through the CLI: a slide folder, a QuPath project without QuPath, failures."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.predict import builders
from wsdal_wsi.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builders.make_dataset(tmp_path_factory.mktemp("cli_predict") / "data")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return builders.make_tiny_model(tmp_path_factory.mktemp("cli_model") / "model.pt")


@pytest.fixture
def slides(data, tmp_path) -> Path:
    folder = tmp_path / "slides"
    folder.mkdir()
    for s in data.slides:
        shutil.copy(s.slide_path, folder)
        shutil.copy(s.annotation_path, folder)
    return folder


def _predict(*args: str):
    return runner.invoke(app, ["predict", *args, "--device", "cpu", "--tile-size", "512"])


def test_predict_a_slide_folder_then_evaluate(slides, model, data, tmp_path):
    out = tmp_path / "OUT"
    result = _predict(str(slides), "--model", str(model), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "WS-DAL prediction" in result.stdout and result.stdout.count(" done ") == 2
    names = ("index.html", "counts.xlsx", "counts.csv", "batch.json", "synth_000.geojson",
             "synth_000.report.png", "synth_001.summary.json")  # fmt: skip
    for name in names:
        assert (out / name).is_file(), name
    assert str(out / "index.html") in result.stdout.replace("\n", "")
    # F1 against the synthetic truth (an untrained model: only that it is computed)
    ev = runner.invoke(app, ["evaluate", str(out), str(data.out_dir / "truth"), "--json"])
    assert ev.exit_code == 0, ev.output
    scores = json.loads(ev.stdout)
    assert scores["tp"] + scores["fn"] == sum(s.n_mitoses for s in data.slides)
    assert 0.0 <= (scores["f1"] or 0.0) <= 1.0
    # a re-run skips both slides
    again = _predict(str(slides), "--model", str(model), "--out", str(out))
    assert again.exit_code == 0 and again.stdout.count(" skipped ") == 2


def test_predict_a_qupath_project_without_qupath(data, model, tmp_path):
    project = tmp_path / "project"
    qpproj = builders.make_project(
        project, [s.slide_path for s in data.slides], [s.annotation_path for s in data.slides]
    )
    out = tmp_path / "OUT"
    result = _predict(str(qpproj), "--model", str(model), "--out", str(out))
    assert result.exit_code == 0, result.output
    for key in ("1", "2"):
        assert (out / f"{key}.geojson").is_file() and (out / f"{key}.summary.json").is_file()
        assert (project / "wsdal" / "results" / f"{key}.geojson").is_file()
    assert "import_results.groovy" in result.stdout
    assert (out / "counts.xlsx").is_file() and (out / "index.html").is_file()


def test_a_corrupt_slide_fails_alone_and_the_exit_code_says_so(slides, model, data, tmp_path):
    builders.corrupt_copy(data.slides[0].slide_path, slides / "broken.tiff")
    out = tmp_path / "OUT"
    result = _predict(str(slides), "--model", str(model), "--out", str(out))
    assert result.exit_code == 1, result.output
    assert result.stdout.count(" done ") == 2
    assert "Failed: broken.tiff:" in result.stdout and "truncated" in result.stdout
    assert "1 of 3 slide(s) failed" in result.stderr
    state = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert [im["status"] for im in state["images"]] == ["failed", "done", "done"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model", "{tmp}/nope.pt"], "nope.pt: model file not found"),
        (["--model", "{model}", "--threshold", "2"], r"--threshold must be a probability"),
        (["--model", "{model}", "--window", "hexagon"], "window must be one of"),
        (["--model", "{model}", "--write-qupath"], "--write-qupath needs a QuPath project"),
        (["--model", "{model}", "--gpus-per-slide", "1"], "apply to --ray only"),
        (["--model", "{model}", "--ray", "local", "--gpus-per-slide", "2"], "between 0 and 1"),
        (["--model", "{model}", "--shard", "3/3"], r"--shard 3/3: K/N needs"),
        (["--model", "{model}", "--shard", "half"], "expected K/N"),
    ],
)
def test_bad_input_exits_2_with_one_line(slides, model, tmp_path, args, match):
    args = [a.format(tmp=tmp_path, model=model) for a in args]
    result = _predict(str(slides), *args, "--out", str(tmp_path / "OUT"))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    assert re.search(match, result.stderr), result.stderr


def test_a_missing_source_exits_2(model, tmp_path):
    result = _predict(str(tmp_path / "nowhere"), "--model", str(model), "--out", str(tmp_path))
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


def test_write_qupath_without_qupath_says_what_to_do(data, model, tmp_path, monkeypatch):
    from wsdal_wsi.qupath import paquo_adapter

    monkeypatch.setattr(paquo_adapter, "qupath_available", lambda: False)
    qpproj = builders.make_project(
        tmp_path / "project", [data.slides[0].slide_path], [data.slides[0].annotation_path]
    )
    out = tmp_path / "OUT"
    result = _predict(str(qpproj), "--model", str(model), "--out", str(out), "--write-qupath")
    assert result.exit_code == 1
    assert "no QuPath installation found" in result.stderr
    assert "import_results.groovy" in result.stderr
    assert not (out / "1.geojson").exists()  # refused before any work


def test_no_cascade_is_recorded_and_predicts_again(slides, model, tmp_path):
    out = tmp_path / "out"
    assert _predict(str(slides), "--model", str(model), "--out", str(out)).exit_code == 0
    again = _predict(str(slides), "--model", str(model), "--out", str(out), "--no-cascade")
    assert again.exit_code == 0, again.output
    state = json.loads((out / "batch.json").read_text())
    assert state["settings"]["cascade"] is False
    summary = json.loads(next(out.glob("*.summary.json")).read_text())
    assert summary["provenance"]["settings"]["detection"]["cascade"] is False
    assert summary["provenance"]["settings"]["predict"]["cascade"] is False


def _one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    (line,) = [ln for ln in result.stderr.splitlines() if "Error" in ln]
    assert line.startswith("Error: "), line
    for fragment in fragments:
        assert fragment in line, line


def test_out_into_the_slide_folder_exits_2_naming_the_sidecar(slides, model):
    """Finding 1: the pathologist's sidecars were replaced (exit 0, no warning)."""
    before = {p.name: p.read_bytes() for p in slides.iterdir()}
    result = _predict(str(slides), "--model", str(model), "--out", str(slides))
    _one_error_line(result, "synth_000.geojson", "over the input")
    assert {p.name: p.read_bytes() for p in slides.iterdir()} == before


def test_out_into_a_projects_annotation_exports_exits_2(data, model, tmp_path):
    project = tmp_path / "project"
    qpproj = builders.make_project(
        project, [s.slide_path for s in data.slides], [s.annotation_path for s in data.slides]
    )
    exports = project / "wsdal" / "annotations"
    before = {p.name: p.read_bytes() for p in exports.iterdir()}
    result = _predict(str(qpproj), "--model", str(model), "--out", str(exports))
    _one_error_line(result, "1.geojson", "over the input")
    assert {p.name: p.read_bytes() for p in exports.iterdir()} == before


def test_out_under_a_plain_file_exits_2(slides, model, tmp_path):
    """Finding 7: NotADirectoryError traceback."""
    some_file = tmp_path / "some_file"
    some_file.write_text("x")
    result = _predict(str(slides), "--model", str(model), "--out", str(some_file / "out"))
    _one_error_line(result, "some_file is a file, not a folder")


def test_a_read_only_out_exits_2(slides, model, tmp_path, monkeypatch):
    """Finding 6: ``OSError: [Errno 30]`` traceback from atomic.py (a read-only mount)."""
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    result = _predict(str(slides), "--model", str(model), "--out", str(tmp_path / "OUT"))
    _one_error_line(result, "batch.json: cannot write: read-only file system")


def test_a_single_bad_slide_as_source_exits_2(data, model, tmp_path):
    """A bad slide given by itself was a batch of one failed slide (exit 1)."""
    broken = builders.corrupt_copy(data.slides[0].slide_path, tmp_path / "broken.tiff")
    result = _predict(str(broken), "--model", str(model), "--out", str(tmp_path / "OUT"))
    _one_error_line(result, "broken.tiff", "truncated")
    assert not (tmp_path / "OUT").exists()


def _rename_classes(sidecar: Path, target: Path, names: dict[str, str]) -> None:
    """Copy a QuPath GeoJSON file with its classifications renamed (``names``: old -> new)."""
    doc = json.loads(sidecar.read_text())
    for feat in doc["features"] if isinstance(doc, dict) else doc:
        cls = feat["properties"].get("classification")
        if isinstance(cls, dict) and cls.get("name") in names:
            cls["name"] = names[cls["name"]]
    target.write_text(json.dumps(doc))


def test_predict_counts_with_the_class_roles_the_model_was_trained_with(data, tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    for s in data.slides:
        shutil.copy(s.slide_path, folder)
        _rename_classes(s.annotation_path, folder / s.annotation_path.name, {"Region": "Pen mark"})
    lab = {"positive": ["Mitotic figure"], "ignored": ["Pen mark"]}
    lab_model = builders.make_tiny_model(tmp_path / "lab.pt", annotation_classes=lab)
    default_model = builders.make_tiny_model(tmp_path / "default.pt")

    def regions(model_path, out, *extra):
        result = _predict(str(folder), "--model", str(model_path), "--out", str(out), *extra)
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "synth_000.summary.json").read_text())
        return [r["class_name"] for r in summary["regions"]], summary["provenance"]

    names, prov = regions(lab_model, tmp_path / "A")  # the model's roles: pen marks left out
    assert names == []
    assert prov["source"]["classes"]["ignored"] == ["Pen mark"]
    assert regions(default_model, tmp_path / "B")[0] == ["Pen mark"]  # an area like any other
    # an option given on the command line wins over the model's
    assert regions(default_model, tmp_path / "C", "--ignore", "Pen mark")[0] == []


def test_review_checks_count_range_and_borderline_reach_every_output(slides, model, tmp_path):
    out = tmp_path / "OUT"
    args = [str(slides), "--model", str(model), "--out", str(out), "--area-mm2", "0.005"]
    result = _predict(*args, "--review", "5")
    assert result.exit_code == 0, result.output
    assert "decisions await review" in result.stdout
    doc = json.loads((out / "synth_000.geojson").read_text())
    checks = [f for f in doc["features"] if f["properties"]["name"].startswith("WS-DAL check")]
    assert len(checks) == 5
    summary = json.loads((out / "synth_000.summary.json").read_text())
    assert summary["review"] == {"requested": 5, "checks": 5}
    assert (out / "synth_000.near.csv").is_file()
    rows = list(csv.DictReader((out / "counts.csv").read_text(encoding="utf-8-sig").splitlines()))
    slide_row = next(r for r in rows if r["Key"] == "synth_000" and r["Region"] == "(whole slide)")
    assert slide_row["To review"] == "5"
    rng = summary["hotspot"]["count_range"]
    lo, hi = (int(v) for v in slide_row["Count range"].split("-"))
    assert (lo, hi) == (rng["low"], rng["high"]) and lo <= hi
    assert slide_row["Borderline"] == ("yes" if rng["borderline"] else "no")
    hotspot = next(
        f for f in doc["features"] if f["properties"]["name"].startswith("WS-DAL hotspot")
    )
    assert hotspot["properties"]["measurements"]["WS-DAL count range high"] == hi
    # fewer checks asked for: recounted without the model, not skipped; the same first two
    again = _predict(*args, "--review", "2")
    assert again.exit_code == 0 and again.stdout.count(" recounted ") == 2
    doc = json.loads((out / "synth_000.geojson").read_text())
    now = [f["id"] for f in doc["features"]
           if f["properties"].get("name", "").startswith("WS-DAL check")]  # fmt: skip
    assert now == [c["id"] for c in checks[:2]]
