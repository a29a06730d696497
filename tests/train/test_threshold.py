"""Tests of the threshold choice on validation slides and the held-out patch check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.train import threshold as thr
from wsdal_wsi.train.common import StageContext
from wsdal_wsi.train.store import StoreWriter

CANDIDATES = ((5.0, -1), (104.0, -1), (400.0, 0), (500.0, 0), (600.0, 0))


def _store(tmp_path, *, val=True, candidates=CANDIDATES):
    w = StoreWriter(tmp_path / "s", context_px=8, patch_px=8, target_mpp=0.25)
    split = "val" if val else "train"
    base = {"image_key": "v", "slide": "v.tiff", "split": split, "y_level0": 0.0}
    recs = [
        {**base, "x_level0": x, "label": 1, "source": "click", "in_area": x < 900}
        for x in (0.0, 100.0, 200.0, 1000.0)
    ]  # the last click lies outside the area
    # candidates: two on mitoses (within 30 px = 7.5 µm at 0.25 µm/px), three elsewhere
    recs += [{**base, "x_level0": x, "label": lab, "source": "candidate"} for x, lab in candidates]
    w.append(np.zeros((len(recs), 3, 8, 8), np.uint8), recs)
    w.add_image({"key": "v", "slide": "v.tiff", "mpp": 0.25, "split": split})
    return w.finish(settings={}, provenance={})


def test_threshold_maximises_f1_on_validation_candidates(tmp_path, monkeypatch):
    store = _store(tmp_path)
    ctx = StageContext(store=store, device=torch.device("cpu"))
    scores = np.array([0.9, 0.6, 0.7, 0.3, 0.2], np.float32)  # candidate rows 4..8
    monkeypatch.setattr(thr, "score_rows", lambda *a, **k: scores)
    out = thr.choose_threshold(None, ctx)
    # truth: the 3 clicks inside the area. >= 0.6: TP 2, FP 1, FN 1 -> F1 = 4/6
    assert out["threshold"] == pytest.approx(0.6) and out["f1"] == pytest.approx(4 / 6)
    assert out["n_truth"] == 3 and out["n_candidates"] == 5 and out["n_images"] == 1


def test_without_validation_slides_the_threshold_is_half(tmp_path):
    ctx = StageContext(store=_store(tmp_path, val=False), device=torch.device("cpu"))
    out = thr.choose_threshold(None, ctx)
    assert out["threshold"] == 0.5 and out["f1"] is None and "no validation slide" in out["method"]
    assert thr.heldout_metrics(None, ctx)["n"] == 0


def test_threshold_merges_candidates_as_inference_does(tmp_path, monkeypatch):
    # the third candidate (score 0.7) lies 4 px (1 µm) from the strongest one: a double
    cands = ((5.0, -1), (104.0, -1), (9.0, -1), (500.0, 0), (600.0, 0))
    store = _store(tmp_path, candidates=cands)
    ctx = StageContext(store=store, device=torch.device("cpu"))
    scores = np.array([0.9, 0.6, 0.7, 0.3, 0.2], np.float32)
    monkeypatch.setattr(thr, "score_rows", lambda *a, **k: scores)
    plain = thr.choose_threshold(None, ctx)
    merged = thr.choose_threshold(None, ctx, merge_radius_um=5.0)
    # unmerged, the double is a false positive above 0.6: TP 2, FP 1, FN 1 -> 4/6
    assert plain["f1"] == pytest.approx(4 / 6)
    # merged into the 0.9 detection, it costs nothing: TP 2, FP 0, FN 1 -> 0.8
    assert merged["threshold"] == pytest.approx(0.6) and merged["f1"] == pytest.approx(0.8)
    assert "merged within 5.0 µm" in merged["method"]


def _line(n_truth, scores_on_truth, scores_off_truth):
    """One image: ``n_truth`` mitoses 100 px apart on a line, detections on the first ones
    (their scores) and far from any (the others); matched within 30 px."""
    truth = np.stack([np.arange(n_truth) * 100.0, np.zeros(n_truth)], axis=1)
    on = truth[: len(scores_on_truth)]
    off = np.stack(
        [np.arange(len(scores_off_truth)) * 100.0, np.full(len(scores_off_truth), 1e4)], 1
    )
    xy = np.concatenate([on, off]).reshape(-1, 2)
    sc = np.concatenate([scores_on_truth, scores_off_truth]).astype(np.float64)
    return [(xy, sc, truth, 30.0)]


def test_one_se_rule_takes_the_highest_threshold_within_one_standard_error():
    # 100 mitoses: 85 found at 0.99 .. 0.91, 5 more at 0.5; false positives: 5 at 0.95,
    # 5 at 0.6. The best F1 is at 0.5: TP 90, FP 10, FN 10 -> 0.9; its SE sqrt(.9 .1 / 100).
    high = np.linspace(0.99, 0.91, 85)
    on = np.concatenate([high, np.full(5, 0.5)])
    images = _line(100, on, np.concatenate([np.full(5, 0.95), np.full(5, 0.6)]))
    best = thr.one_se_threshold(images, n_se=0.0)
    assert best["threshold"] == pytest.approx(0.5) and best["f1"] == pytest.approx(0.9)
    assert best["best_threshold"] == best["threshold"] and best["best_f1"] == best["f1"]
    one = thr.one_se_threshold(images, n_se=1.0)
    assert one["f1_se"] == pytest.approx(0.03) and one["best_f1"] == pytest.approx(0.9)
    # keeping the m highest (m <= 85, 5 FP): F1 = 2m / (m + 105) >= 0.87 from m = 81 on
    assert one["threshold"] == pytest.approx(high[80]) and one["f1"] == pytest.approx(162 / 186)
    # half an SE (F1 >= 0.885): from m = 84 on, a lower threshold
    half = thr.one_se_threshold(images, n_se=0.5)
    assert half["threshold"] == pytest.approx(high[83]) and half["f1"] == pytest.approx(168 / 189)


def test_one_se_rule_edge_cases():
    assert thr.one_se_threshold(_line(3, [], []), n_se=1.0)["threshold"] == 1.0  # no candidate
    for bad in (-0.5, float("nan")):
        with pytest.raises(ConfigError, match="threshold_se must be a number >= 0, got"):
            thr.one_se_threshold(_line(3, [0.9], []), n_se=bad)


def test_choose_threshold_records_the_best_and_the_chosen_threshold(tmp_path, monkeypatch):
    store = _store(tmp_path)
    ctx = StageContext(store=store, device=torch.device("cpu"))
    scores = np.array([0.9, 0.6, 0.7, 0.3, 0.2], np.float32)
    monkeypatch.setattr(thr, "score_rows", lambda *a, **k: scores)
    # 3 mitoses: >= 0.9: F1 2/4 = 0.5; >= 0.6: 4/6 (the best); SE sqrt(2/3 * 1/3 / 3) = 0.27
    out = thr.choose_threshold(None, ctx, n_se=1.0)
    assert out["best_threshold"] == pytest.approx(0.6) and out["best_f1"] == pytest.approx(4 / 6)
    assert out["threshold"] == pytest.approx(0.9) and out["f1"] == pytest.approx(0.5)
    assert "within 1 SE of the best F1" in out["method"]
