"""``wsdal train`` end to end on synthetic slides (tiny preset), resume, and bad input."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.predict import builders
from wsdal_wsi.cli import app
from wsdal_wsi.cli.train import format_summary
from wsdal_wsi.model.file import load_model

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_train_end_to_end_with_resume(synth_dataset, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        str(synth_dataset.out_dir),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--val-fraction",
        "0.25",
    ]
    first = runner.invoke(app, [*args, "--stop-after", "ns"])
    assert first.exit_code == 0, first.output
    assert "Stopped after ns" in first.stdout
    ns_done = (run / "ns" / "done.json").read_text()
    assert not (run / "dmu").exists()

    again = runner.invoke(app, args)  # without --resume: refused, nothing touched
    assert again.exit_code == 2 and "pass --resume" in again.stderr

    result = runner.invoke(
        app, ["train", str(synth_dataset.out_dir), "--out", str(run), "--device", "cpu", "--resume"]
    )  # options from config.json
    assert result.exit_code == 0, result.output
    assert (run / "ns" / "done.json").read_text() == ns_done  # NS was not redone
    for line in ("NS ", "DMU ", "Label audit", "DLE ", "CSDGL ", "Threshold", "Model "):
        assert line in result.stdout

    # the store: 4 slides split by slide, 1 for validation
    images = (run / "store" / "images.csv").read_text().splitlines()[1:]
    assert len(images) == 4 and sum(",val," in line for line in images) == 1
    for stage in ("ns", "dmu", "audit", "dle", "csdgl"):
        assert json.loads((run / stage / "done.json").read_text())["stage"] == stage
    ns = json.loads(ns_done)
    assert ns["n_positive_patches"] > 0 and ns["n_train_set"] > ns["n_positive_patches"]

    # The label audit lists exactly what DMU's table flags, one GeoJSON per training slide.
    # (Whether DMU finds the injected false clicks is asserted where the noise is
    # controlled, tests/train/test_dmu.py, and measured in benchmarks/accuracy.py: a
    # 5-epoch tiny run on 3 slides fits its false clicks and says nothing either way.)
    from wsdal_wsi.train.audit import flag_annotations
    from wsdal_wsi.train.dmu import read_dmu_table
    from wsdal_wsi.train.store import PatchStore

    store = PatchStore(run / "store")
    look_path = run / "audit" / "click_lookalike.npy"  # the clicks judged by the classifier
    look = np.load(look_path) if look_path.is_file() else None
    flags = flag_annotations(read_dmu_table(run / "dmu"), store, click_lookalike=look)
    review = (run / "audit" / "review.csv").read_text().splitlines()
    assert len(review) - 1 == flags.flagged.sum()
    judged = np.isfinite(flags.lookalike)  # by the look-alike classifier, else by DMU
    assert (flags.noisy_fraction[flags.flagged & ~judged] >= 0.5).all()
    assert (flags.lookalike[flags.flagged & judged] >= 0.45).all()
    clicks = flags.kind == "positive_click"
    assert clicks.sum() > 0 and set(flags.kind) <= {"positive_click", "negative_click", "candidate"}
    audit = json.loads((run / "audit" / "done.json").read_text())
    n_points = 0
    for path in (run / "audit").glob("*.geojson"):
        features = json.loads(path.read_text())["features"]
        assert len(features) == audit["per_image"][path.stem]
        n_points += len(features)
    assert n_points == audit["n_flagged"] == flags.flagged.sum()
    assert len(list((run / "audit").glob("*.geojson"))) == 3  # one per training slide

    # DLE removed the noisy samples; CSDGL trained on the rest
    dle = json.loads((run / "dle" / "done.json").read_text())
    assert 0 < dle["n_kept"] < dle["n_in"] and dle["dropped_noisy"] > 0

    # the model file loads, scores, and beats chance on the held-out slide's patches
    from sklearn.metrics import roc_auc_score

    model = load_model(run / "model.pt", device="cpu")
    summary = json.loads((run / "summary.json").read_text())
    assert model.spec.threshold == pytest.approx(summary["threshold"])
    assert model.spec.patch_size_px == 80 and model.spec.target_mpp == 0.25
    rows = store.select(split="val", source=("click", "candidate"), label=[0, 1])
    crop = np.array(store.patches[rows][:, :, 8:88, 8:88])
    p = model.predict_proba(torch.from_numpy(crop)).numpy()
    assert roc_auc_score(store.label[rows], p) > 0.6
    assert summary["heldout"]["auc"] > 0.6


def test_train_bad_input(tmp_path):
    r = runner.invoke(
        app, ["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--preset", "tiny"]
    )
    assert r.exit_code == 2 and "no such file or folder" in r.stderr
    r = runner.invoke(
        app, ["train", str(tmp_path), "--out", str(tmp_path / "o"), "--preset", "huge"]
    )
    assert r.exit_code == 2 and "unknown preset 'huge'" in r.stderr
    r = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "o"), "--mpp", "-1"])
    assert r.exit_code == 2 and "--mpp" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(
        app,
        ["train", str(empty), "--out", str(tmp_path / "o2"), "--preset", "tiny", "--device", "cpu"],
    )
    assert r.exit_code != 0 and "Error:" in r.stderr and "Traceback" not in r.output


def test_the_closing_table_lists_the_skipped_images():
    summary = {
        "method": "wsdal",
        "preset": "tiny",
        "skipped_images": [
            {"key": "bad", "reason": "annotations unreadable: bad.geojson: not valid JSON"},
            {"key": "gone", "reason": "slide missing"},
        ],
        "stages": {},
        "model": None,
        "stopped_after": "ns",
    }
    text = format_summary(summary)
    assert "Skipped (2)  bad: annotations unreadable: bad.geojson: not valid JSON" in text
    assert "             gone: slide missing" in text


def test_the_closing_table_says_what_dle_did_with_its_unvalidated_samples():
    dle = {
        "n_in": 500,
        "n_kept": 460,
        "dropped_noisy": 40,
        "classes": {
            "label0": {"unvalidated": 12, "unvalidated_dropped": 0},
            "label1": {"unvalidated": 5, "unvalidated_dropped": 0},
        },
    }
    summary = {"method": "wsdal", "preset": "tiny", "stages": {"dle": dle}, "model": None}
    text = format_summary(summary)
    assert (
        "kept 460 of 500 samples (40 noisy dropped; 17 hard samples not validated, 0 of them"
        in text
    )
    # a run that predates the counts (no "unvalidated") prints what it knows, not a made-up 0
    dle["classes"] = {"label0": {"validated": True, "unvalidated_dropped": 9}}
    text = format_summary(summary)
    assert "kept 460 of 500 samples (40 noisy dropped)" in text and "not validated" not in text


def test_ctrl_c_prints_the_command_that_resumes(tmp_path, monkeypatch):
    """Finding 5: 'Re-run the same command to resume', which then refused ('pass --resume')."""
    from wsdal_wsi.train import run as run_mod
    from wsdal_wsi.train.settings import check_run_config

    calls = []

    def interrupted(source, out, settings, *, resume, **kwargs):
        check_run_config(out, settings, resume=resume)  # the run folder holds a run now
        calls.append(resume)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return {"method": settings.method, "preset": settings.preset.name, "stages": {},
                "model": None, "stopped_after": "ns"}  # fmt: skip

    monkeypatch.setattr(run_mod, "train_run", interrupted)
    source = tmp_path / "my slides"
    source.mkdir()
    run = tmp_path / "run 1"
    first = runner.invoke(
        app, ["train", str(source), "--out", str(run), "--preset", "tiny", "--seed", "3"]
    )
    assert first.exit_code == 130
    (line,) = [ln for ln in first.stderr.splitlines() if ln.startswith("Interrupted")]
    command = line.removeprefix("Interrupted. Resume with: ")
    args = shlex.split(command)
    assert args[:2] == ["wsdal", "train"] and args[-1] == "--resume"
    assert args[2] == str(source) and "--preset" in args and "3" in args
    again = runner.invoke(app, args[1:])  # exactly the printed command
    assert again.exit_code == 0, again.output
    assert calls == [False, True]
    plain = runner.invoke(app, ["train", str(source), "--out", str(run), "--preset", "tiny"])
    assert plain.exit_code == 2 and "pass --resume" in plain.stderr  # (why the hint matters)


def test_a_pretrained_file_that_would_run_code_is_refused_before_any_work(tmp_path):
    """Finding 4: a 10-line error after the extraction, inviting weights_only=False."""
    marker = tmp_path / "PWNED"

    class RunsCode:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": RunsCode()}, evil)
    source = tmp_path / "src"
    source.mkdir()
    r = runner.invoke(
        app,
        ["train", str(source), "--out", str(tmp_path / "run"), "--preset", "tiny",
         "--pretrained", str(evil)],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    (line,) = [ln for ln in r.stderr.splitlines() if "Error" in ln]
    assert line.startswith(f"Error: {evil}: ") and "tampered" in line
    assert "weights_only" not in r.output and not marker.exists()
    assert not (tmp_path / "run").exists()


def _lab_copy(dataset, folder, names):
    """The dataset's slides (linked) with their clicks under the lab's class names."""
    folder.mkdir()
    for s in dataset.slides:
        (folder / s.slide_path.name).symlink_to(s.slide_path)
        doc = json.loads(s.annotation_path.read_text())
        for feat in doc["features"]:
            cls = feat["properties"].get("classification")
            if isinstance(cls, dict) and cls.get("name") in names:
                cls["name"] = names[cls["name"]]
        (folder / s.annotation_path.name).write_text(json.dumps(doc))
    return folder


@pytest.mark.slow
def test_train_with_the_labs_own_class_names(synth_dataset, tmp_path):
    lab = _lab_copy(synth_dataset, tmp_path / "lab",
                    {"Mitosis": "Mitotic figure", "Mitosis-like": "Look-alike"})  # fmt: skip
    base = ["train", str(lab), "--preset", "tiny", "--device", "cpu", "--stop-after", "ns"]
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "none")])
    assert refused.exit_code != 0  # no click of a positive class
    assert "Mitosis" in refused.output
    run = tmp_path / "run"
    args = [*base, "--out", str(run), "--positive", "Mitotic figure", "--negative", "Look-alike"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    from wsdal_wsi.train.store import PatchStore

    store = PatchStore(run / "store")
    assert len(store.select(source=("click",), label=[1])) > 0  # the lab's mitoses
    assert len(store.select(source=("negative_click",), label=[0])) > 0  # and its look-alikes
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["classes"]["positive"] == ["Mitotic figure"]
    assert cfg["classes"]["negative"] == ["Look-alike"]
    # --resume keeps the run's classes without repeating the options
    again = runner.invoke(app, ["train", str(lab), "--out", str(run), "--resume",
                                "--stop-after", "ns", "--device", "cpu"])  # fmt: skip
    assert again.exit_code == 0, again.output


@pytest.mark.slow
def test_train_a_moved_project_with_relink(synth_dataset, tmp_path):
    import shutil

    old = tmp_path / "old_scans"
    old.mkdir()
    for s in synth_dataset.slides:
        shutil.copy(s.slide_path, old)
    project = tmp_path / "project"
    builders.make_project(
        project,
        [old / s.slide_path.name for s in synth_dataset.slides],
        [s.annotation_path for s in synth_dataset.slides],
    )
    new = tmp_path / "new_scans"
    old.rename(new)  # the slides moved; the project still names the old folder
    base = ["train", str(project), "--preset", "tiny", "--device", "cpu", "--stop-after", "ns"]
    lost = runner.invoke(app, [*base, "--out", str(tmp_path / "lost")])
    assert lost.exit_code != 0 and "slide" in lost.output
    run = tmp_path / "run"
    result = runner.invoke(app, [*base, "--out", str(run), "--relink", f"{old}={new}"])
    assert result.exit_code == 0, result.output
    images = (run / "store" / "images.csv").read_text()
    assert str(new) in images


@pytest.mark.slow
def test_the_pathologists_answers_are_trusted_labels_and_init_fine_tunes(synth_dataset, tmp_path):
    folder = _lab_copy(synth_dataset, tmp_path / "reviewed", {})
    first = synth_dataset.slides[0]
    truth = json.loads((synth_dataset.out_dir / "truth" / f"{first.name}.geojson").read_text())
    mitosis = next(f for f in truth["features"]
                   if f["properties"]["classification"]["name"] == "Mitosis")  # fmt: skip
    x, y = mitosis["geometry"]["coordinates"][:2]
    sidecar = folder / first.annotation_path.name
    doc = json.loads(sidecar.read_text())
    doc["features"] += [  # as QuPath exports them after the review
        {"type": "Feature", "id": "6f1c2a2e-1111-4a4a-8b8b-000000000001",
         "geometry": {"type": "Point", "coordinates": [x, y]},
         "properties": {"objectType": "detection", "name": "WS-DAL", "isLocked": True,
                        "classification": {"name": "Mitosis", "color": [220, 20, 60]}}},
        {"type": "Feature", "id": "6f1c2a2e-1111-4a4a-8b8b-000000000002",
         "geometry": {"type": "Point", "coordinates": [x + 600.0, y]},
         "properties": {"objectType": "annotation", "name": "WS-DAL check 1: detected, p 0.55",
                        "classification": {"name": "Non-mitosis", "color": [0, 0, 255]}}},
    ]  # fmt: skip
    sidecar.write_text(json.dumps(doc))
    seen = runner.invoke(app, ["inspect", str(folder), "--json"])
    report = json.loads(seen.stdout)
    assert report["summary"]["corrections"] == {"confirmed": 1, "answered_negative": 1}
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(folder), "--out", str(run), "--preset", "tiny",
                                 "--device", "cpu", "--stop-after", "ns"])  # fmt: skip
    assert result.exit_code == 0, result.output
    from wsdal_wsi.train.store import PatchStore

    store = PatchStore(run / "store")
    trusted = np.flatnonzero(store.trusted)
    assert {str(s) for s in store.source[trusted]} == {"click", "jitter", "negative_click"}
    assert set(store.label[trusted][store.source[trusted] == "negative_click"]) == {0}
    # --init with another width than the preset's is refused before any work
    (tmp_path / "other").mkdir()
    wrong = runner.invoke(app, ["train", str(folder), "--out", str(tmp_path / "other" / "r"),
                                "--preset", "demo", "--init", str(_tiny_model(tmp_path)),
                                "--device", "cpu"])  # fmt: skip
    assert wrong.exit_code == 2 and "channels wide" in wrong.stderr


def _tiny_model(tmp_path):
    return builders.make_tiny_model(tmp_path / "tiny.pt")
