"""``wsdal train`` end to end on synthetic slides (tiny preset), resume, and bad input."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

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


def _noise_truth(dataset, key):
    noise = json.loads((dataset.out_dir / "truth" / f"{key}.noise.json").read_text())
    xy = np.array([[c["x"], c["y"]] for c in noise["clicks"]])
    wrong = np.array([c["kind"] in ("false", "mislabelled") for c in noise["clicks"]])
    return xy, wrong


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

    # DMU: some injected false clicks are flagged, above their base rate
    from wsdal_wsi.train.audit import flag_annotations
    from wsdal_wsi.train.dmu import read_dmu_table
    from wsdal_wsi.train.store import PatchStore

    store = PatchStore(run / "store")
    flags = flag_annotations(read_dmu_table(run / "dmu"), store)
    clicks = flags.kind == "positive_click"
    wrong = np.zeros(len(flags), bool)
    for key in set(flags.image_key[clicks]):
        xy, bad = _noise_truth(synth_dataset, key)
        for i in np.flatnonzero(clicks & (flags.image_key == key)):
            wrong[i] = bad[np.argmin(np.linalg.norm(xy - flags.xy_level0[i], axis=1))]
    flagged = flags.flagged & clicks
    assert wrong.sum() > 0 and (flagged & wrong).sum() >= 2
    assert (flagged & wrong).sum() / flagged.sum() > wrong[clicks].mean()
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
