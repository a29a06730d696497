"""Tests of run orchestration: stages in order, resume, refusing mismatched runs, ablations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import ConfigError, TrainingError
from wsdal_wsi.model.file import load_model
from wsdal_wsi.train.run import RunSettings, train_ablation, train_from_store

from .conftest import blob_preset


def _auc(model_path, store):
    from sklearn.metrics import roc_auc_score

    m = load_model(model_path)
    rows = store.select(split="val", label=[0, 1])
    p = m.predict_proba(torch.from_numpy(np.array(store.patches[rows][:, :, 4:36, 4:36])))
    return roc_auc_score(store.label[rows], p.numpy())


def test_wsdal_run_stops_resumes_and_writes_the_model(tmp_path, blob_store):
    store, _ = blob_store(n_pos=20, n_neg=30, n_images=3, n_val_images=1, flip_pos=2)
    run = tmp_path / "run"
    settings = RunSettings(method="wsdal", preset=blob_preset(), seed=0)
    part = train_from_store(store, run, settings, device="cpu", stop_after="dmu")
    assert part["model"] is None and part["stopped_after"] == "dmu"
    assert (run / "dmu" / "table.csv").is_file() and (run / "audit" / "done.json").is_file()
    assert not (run / "dle").exists()
    ns_done = (run / "ns" / "done.json").read_text()
    dmu_mtime = (run / "dmu" / "done.json").stat().st_mtime_ns

    with pytest.raises(ConfigError, match="already holds a training run"):
        train_from_store(store, run, settings, device="cpu")
    other = RunSettings(method="wsdal", preset=blob_preset(), seed=1)
    with pytest.raises(ConfigError, match="differs: seed"):
        train_from_store(store, run, other, device="cpu", resume=True)
    changed = RunSettings(
        method="wsdal", preset=blob_preset().replace(**{"ns.epochs": 7, "dle.draws": 3})
    )
    with pytest.raises(ConfigError, match=r"differs: preset\.ns\.epochs, preset\.dle\.draws\)"):
        train_from_store(store, run, changed, device="cpu", resume=True)

    summary = train_from_store(store, run, settings, device="cpu", resume=True)
    assert (run / "ns" / "done.json").read_text() == ns_done  # not redone
    assert (run / "dmu" / "done.json").stat().st_mtime_ns == dmu_mtime
    for stage in ("ns", "dmu", "dle", "csdgl"):
        assert (run / stage / "done.json").is_file()
    assert set(summary["stages"]) == {"ns", "dmu", "audit", "dle", "csdgl", "cascade"}
    assert (run / "cascade" / "done.json").is_file()  # distilled, or why not
    assert summary["skipped_images"] == []
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "wsdal" and cfg["preset"]["width"] == 4
    assert 0 <= summary["threshold"] <= 1 and summary["val_f1"] is not None
    spec = load_model(run / "model.pt").spec
    assert spec.patch_size_px == 32 and spec.threshold == pytest.approx(summary["threshold"])
    assert spec.provenance["stages"]["dmu"]["n"] == summary["stages"]["dmu"]["n"]
    assert spec.provenance["method"] == "wsdal" and "torch" in spec.provenance["versions"]
    assert _auc(run / "model.pt", store) > 0.8

    abl = train_ablation(run, "ns_dmu", device="cpu")
    assert (run / "ablation-ns_dmu" / "model.pt").is_file()
    assert abl["stages"]["ns_dmu"]["n"] <= summary["stages"]["dmu"]["n"]
    with pytest.raises(ConfigError, match="ablation must be one of"):
        train_ablation(run, "everything")


def test_baseline_run(tmp_path, blob_store):
    store, _ = blob_store(n_pos=12, n_neg=24, n_images=3, n_val_images=1)
    settings = RunSettings(method="baseline", preset=blob_preset(), seed=0)
    summary = train_from_store(store, tmp_path / "b", settings, device="cpu")
    assert set(summary["stages"]) == {"baseline", "cascade"}
    assert not (tmp_path / "b" / "ns").exists()
    assert summary["heldout"]["auc"] > 0.8
    with pytest.raises(TrainingError, match="not a WS-DAL run folder"):
        train_ablation(tmp_path / "b", "ns")
    with pytest.raises(ConfigError, match="--method must be one of"):
        train_from_store(store, tmp_path / "c", RunSettings(method="magic", preset=blob_preset()))


def _jitter_store(root, *, context_px, n_jitter=2, jitter_px=16.0):
    from wsdal_wsi.train.store import StoreWriter

    w = StoreWriter(root, context_px=context_px, patch_px=80, target_mpp=0.25)
    return w.finish(
        settings={"extract": {"n_jitter": n_jitter, "jitter_px": jitter_px}}, provenance={}
    )


def test_negatives_are_jittered_as_the_store_jittered_its_positives(tmp_path, caplog):
    from wsdal_wsi.train.context import stage_context
    from wsdal_wsi.train.presets import get_preset

    demo = RunSettings(method="wsdal", preset=get_preset("demo"))
    store = _jitter_store(tmp_path / "a", context_px=112)
    ctx = stage_context(store, torch.device("cpu"), demo, None, None, None)
    assert ctx.negative_jitter_px == 16.0 and ctx.negative_jitter_prob == pytest.approx(2 / 3)
    assert ctx.shifts(torch.tensor([0, 1]), torch.Generator().manual_seed(0)).shape == (2, 2)
    off = RunSettings(
        method="wsdal", preset=get_preset("demo").replace(**{"extract.jitter_negatives": False})
    )
    ctx = stage_context(store, torch.device("cpu"), off, None, None, None)
    assert ctx.negative_jitter_px == 0 and ctx.shifts(torch.tensor([0]), None) is None
    no_copies = _jitter_store(tmp_path / "b", context_px=112, n_jitter=0)
    assert (
        stage_context(no_copies, torch.device("cpu"), demo, None, None, None).negative_jitter_px
        == 0
    )
    narrow = _jitter_store(tmp_path / "c", context_px=96)
    with caplog.at_level("WARNING"):
        stage_context(narrow, torch.device("cpu"), demo, None, None, None)
    assert "beyond the stored context" in caplog.text


def test_images_the_extraction_skipped_are_in_summary_json(tmp_path, blob_store):
    """Also seen in issue 11: a slide skipped for an unreadable sidecar was only a warning."""
    store, _ = blob_store(n_pos=10, n_neg=10, n_images=2, n_val_images=1)
    skipped = [{"key": "bad", "reason": "annotations unreadable: bad.geojson: not valid JSON"}]
    store.meta["settings"]["skipped"] = skipped
    settings = RunSettings(method="wsdal", preset=blob_preset(), seed=0)
    run = tmp_path / "run"
    summary = train_from_store(store, run, settings, device="cpu", stop_after="ns")
    assert summary["skipped_images"] == skipped
    assert json.loads((run / "summary.json").read_text())["skipped_images"] == skipped
