"""Tests of the label audit: aggregation per annotation and the QuPath review objects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsdal_wsi.qupath import read_objects
from wsdal_wsi.train.audit import (
    AUDIT_RANK_MEASUREMENT,
    REVIEW_CLASS,
    flag_annotations,
    write_audit,
)
from wsdal_wsi.train.presets import AuditSettings
from wsdal_wsi.train.store import StoreWriter


@pytest.fixture
def store(tmp_path):
    w = StoreWriter(tmp_path / "s", context_px=8, patch_px=4, target_mpp=0.25)
    recs = []
    for key, x0 in (("a", 0.0), ("b", 1000.0)):
        base = {"image_key": key, "slide": f"{key}.tiff", "split": "train", "y_level0": 5.0}
        cid = w.new_click_id()
        recs += [  # one click with two jittered copies
            {**base, "x_level0": x0 + 10, "label": 1, "source": "click", "click_id": cid},
            {**base, "x_level0": x0 + 12, "label": 1, "source": "jitter", "click_id": cid},
            {**base, "x_level0": x0 + 8, "label": 1, "source": "jitter", "click_id": cid},
            {
                **base,
                "x_level0": x0 + 300,
                "label": 0,
                "source": "negative_click",
                "click_id": w.new_click_id(),
            },
            {**base, "x_level0": x0 + 600, "label": 0, "source": "candidate"},
        ]
    w.append(np.zeros((len(recs), 3, 8, 8), np.uint8), recs)
    for key in ("a", "b"):
        w.add_image({"key": key, "slide": f"{key}.tiff", "mpp": 0.25, "split": "train"})
    return w.finish(settings={}, provenance={})


def _table(outcome, never=None, p=None):
    n = len(outcome)
    return {
        "row": np.arange(n),
        "label": np.array([1, 1, 1, 0, 0] * 2),
        "outcome": np.array(outcome, dtype=object),
        "never_learned": np.zeros(n, np.int64) if never is None else np.array(never),
        "p_mitosis": np.full(n, 0.5) if p is None else np.array(p, float),
    }


def test_flags_aggregate_clicks_over_their_copies(store):
    # image a: 2 of 3 patches of the click noisy -> flagged; image b: 1 of 3 -> not
    outcome = [
        "noisy",
        "noisy",
        "clean",
        "noisy",
        "clean",
        "clean",
        "noisy",
        "clean",
        "clean",
        "noisy",
    ]
    p = [0.1, 0.2, 0.6, 0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.95]
    f = flag_annotations(_table(outcome, p=p), store, settings=DMU_ONLY)
    assert len(f) == 6
    kinds = dict(zip(zip(f.image_key, f.kind, strict=True), f.flagged, strict=True))
    assert kinds[("a", "positive_click")] and not kinds[("b", "positive_click")]
    assert kinds[("a", "negative_click")] and not kinds[("b", "negative_click")]
    assert not kinds[("a", "candidate")] and kinds[("b", "candidate")]
    i = int(np.flatnonzero((f.image_key == "a") & (f.kind == "positive_click"))[0])
    assert f.xy_level0[i].tolist() == [10.0, 5.0]  # the click, not a jittered copy
    assert f.noisy_fraction[i] == pytest.approx(2 / 3) and f.p_mitosis[i] == pytest.approx(0.3)
    never = [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]  # never learned counts like noisy
    f2 = flag_annotations(_table(["clean"] * 10, never=never), store, settings=DMU_ONLY)
    assert f2.flagged.tolist().count(True) == 1


#: DMU's verdict alone, without the network's agreement.
DMU_ONLY = AuditSettings(click_max_p=1.0, candidate_min_p=0.0)


def test_the_network_must_agree_before_an_annotation_is_blamed(store):
    outcome = ["noisy"] * 10
    # a: click p 0.3 (mean of its copies), negative click 0.9, candidate 0.1
    # b: click p 0.05, negative click 0.5, candidate 0.95
    p = [0.1, 0.2, 0.6, 0.9, 0.1, 0.05, 0.05, 0.05, 0.5, 0.95]
    f = flag_annotations(_table(outcome, p=p), store)
    flagged = {(k, kind) for k, kind, on in zip(f.image_key, f.kind, f.flagged, strict=True) if on}
    assert flagged == {("a", "negative_click"), ("b", "positive_click"), ("b", "candidate")}
    i = int(np.flatnonzero((f.image_key == "b") & (f.kind == "positive_click"))[0])
    assert f.sureness[i] == pytest.approx(0.95)  # 1 - p for a click of a mitosis
    j = int(np.flatnonzero((f.image_key == "b") & (f.kind == "candidate"))[0])
    assert f.sureness[j] == pytest.approx(0.95)  # p for the others
    looser = flag_annotations(_table(outcome, p=p), store, settings=AuditSettings(click_max_p=0.5))
    assert looser.flagged.sum() == 4  # a's click (p 0.3) too
    with pytest.raises(Exception, match="click_max_p"):
        AuditSettings(click_max_p=1.5)


def test_write_audit_geojson(tmp_path, store):
    outcome = ["noisy", "noisy", "noisy", "noisy", "clean"] + ["clean"] * 5
    stats = write_audit(tmp_path / "audit", _table(outcome, p=[0.05] * 3 + [0.92] * 7), store)
    assert stats["n_flagged"] == 2 and stats["per_image"] == {"a": 2, "b": 0}
    assert stats["by_reason"]["click with no mitosis under it"] == 1
    objs = read_objects(tmp_path / "audit" / "a.geojson")
    assert {o.class_name for o in objs} == {REVIEW_CLASS}
    names = sorted(o.name for o in objs)
    assert names == [
        "WS-DAL review: click with no mitosis under it",
        "WS-DAL review: likely mitosis near a negative-class click",
    ]
    raw = json.loads((tmp_path / "audit" / "a.geojson").read_text())
    meas = [f["properties"]["measurements"] for f in raw["features"]]
    # surest first: the click (1 - 0.05) before the negative-class click (0.92)
    assert [m["WS-DAL probability"] for m in meas] == [0.05, 0.92]
    assert [m[AUDIT_RANK_MEASUREMENT] for m in meas] == [1, 2]
    assert raw["wsdal"]["slide"] == "a.tiff"
    assert json.loads((tmp_path / "audit" / "b.geojson").read_text())["features"] == []
    review = (tmp_path / "audit" / "review.csv").read_text().splitlines()
    assert len(review) == 3 and review[0].startswith("rank,")
    assert review[1].startswith("1,a,") and "click with no mitosis" in review[1]


def test_the_lookalike_classifier_judges_the_clicks_it_scores(store):
    """A click the look-alike classifier scores is shown at p(look-alike) >= the
    setting whatever DMU says, ranked by it; a click it did not score (NaN) keeps
    DMU's rule."""
    outcome = ["clean"] * 10  # DMU blames nothing
    look = np.full(10, np.nan)
    look[0:3] = 0.7  # image a's click: its three patches
    f = flag_annotations(
        _table(outcome), store, settings=AuditSettings(lookalike_min_p=0.45), click_lookalike=look
    )
    a = int(np.flatnonzero((f.image_key == "a") & (f.kind == "positive_click"))[0])
    b = int(np.flatnonzero((f.image_key == "b") & (f.kind == "positive_click"))[0])
    assert f.flagged[a] and f.lookalike[a] == pytest.approx(0.7) == f.sureness[a]
    assert not f.flagged[b] and np.isnan(f.lookalike[b])  # DMU's rule: clean, not shown
    strict = flag_annotations(
        _table(outcome), store, settings=AuditSettings(lookalike_min_p=0.8), click_lookalike=look
    )
    assert not strict.flagged[a]


def test_lookalike_probability_finds_clicks_that_look_like_the_negative_clicks():
    """Toy features: right clicks in one cluster, negative-class clicks and the wrong
    clicks in another. Out of fold, the wrong clicks get a high p(look-alike)."""
    from wsdal_wsi.train.audit_lookalike import lookalike_probability

    rng = np.random.default_rng(0)
    axis = np.eye(6)[0] * 3.0
    right = rng.normal(0.0, 1.0, (60, 6)) + axis
    wrong = rng.normal(0.0, 1.0, (12, 6)) - axis
    negatives = rng.normal(0.0, 1.0, (30, 6)) - axis
    x = np.concatenate([right, wrong, negatives])
    is_click = np.arange(len(x)) < 72
    p = lookalike_probability(x, is_click, c=0.03)
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    flagged = p[:72] >= 0.45
    assert flagged[60:72].mean() >= 0.75  # recall on the wrong clicks
    assert flagged.sum() and flagged[60:72].sum() / flagged.sum() >= 0.75  # precision
    again = lookalike_probability(x, is_click, c=0.03)
    np.testing.assert_array_equal(p, again)  # seeded folds


def test_click_lookalike_runs_dmus_network_and_needs_negative_clicks(tmp_path):
    """End to end on a small store: DMU's saved network, dihedral features, one score
    per click shared by its copies; too few negative-class clicks give None."""
    import torch

    from wsdal_wsi.model.nets import DualViewNet
    from wsdal_wsi.train.audit_lookalike import click_lookalike, dihedral_features
    from wsdal_wsi.train.common import StageContext, StageDir

    rng = np.random.default_rng(1)
    w = StoreWriter(tmp_path / "s", context_px=40, patch_px=32, target_mpp=0.25)
    recs, n_clicks, n_neg = [], 8, 10
    base = {"image_key": "a", "slide": "a.tiff", "split": "train", "y_level0": 5.0}
    for i in range(n_clicks):
        cid = w.new_click_id()
        recs += [
            {**base, "x_level0": 10.0 * i, "label": 1, "source": "click", "click_id": cid},
            {**base, "x_level0": 10.0 * i + 2, "label": 1, "source": "jitter", "click_id": cid},
        ]
    for i in range(n_neg):
        recs.append({**base, "x_level0": 500.0 + 10 * i, "label": 0,
                     "source": "negative_click", "click_id": w.new_click_id()})  # fmt: skip
    w.append(rng.integers(0, 256, (len(recs), 3, 40, 40), dtype=np.uint8), recs)
    w.add_image({"key": "a", "slide": "a.tiff", "mpp": 0.25, "split": "train"})
    store = w.finish(settings={}, provenance={})
    torch.manual_seed(0)
    net = DualViewNet(width=8)
    StageDir(tmp_path / "dmu").save_weights(net)
    ctx = StageContext(store=store, device=torch.device("cpu"), width=8)
    n = len(recs)
    table = {
        "row": np.arange(n),
        "label": np.array([r["label"] for r in recs]),
        "origin": np.array([r["source"] for r in recs], dtype=object),
    }
    feats = dihedral_features(net, ctx, np.arange(3))
    assert feats.shape == (3, 2 * 12 * 8) and np.isfinite(feats).all()
    settings = AuditSettings(lookalike_min_negatives=5)
    look = click_lookalike(ctx, tmp_path / "dmu", table, settings=settings)
    assert look is not None and look.shape == (n,)
    clicks = table["label"] == 1
    assert np.isfinite(look[clicks]).all() and np.isnan(look[~clicks]).all()
    assert (look[0 : 2 * n_clicks : 2] == look[1 : 2 * n_clicks : 2]).all()  # a click and its copy
    assert click_lookalike(ctx, tmp_path / "dmu", table,
                           settings=AuditSettings(lookalike_min_negatives=11)) is None  # fmt: skip
