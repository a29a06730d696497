"""Tests of the label audit: aggregation per annotation and the QuPath review objects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsdal_wsi.qupath import read_objects
from wsdal_wsi.train.audit import REVIEW_CLASS, flag_annotations, write_audit
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
    f = flag_annotations(_table(outcome, p=p), store)
    assert len(f) == 6
    kinds = dict(zip(zip(f.image_key, f.kind, strict=True), f.flagged, strict=True))
    assert kinds[("a", "positive_click")] and not kinds[("b", "positive_click")]
    assert kinds[("a", "negative_click")] and not kinds[("b", "negative_click")]
    assert not kinds[("a", "candidate")] and kinds[("b", "candidate")]
    i = int(np.flatnonzero((f.image_key == "a") & (f.kind == "positive_click"))[0])
    assert f.xy_level0[i].tolist() == [10.0, 5.0]  # the click, not a jittered copy
    assert f.noisy_fraction[i] == pytest.approx(2 / 3) and f.p_mitosis[i] == pytest.approx(0.3)
    never = [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]  # never learned counts like noisy
    f2 = flag_annotations(_table(["clean"] * 10, never=never), store)
    assert f2.flagged.tolist().count(True) == 1


def test_write_audit_geojson(tmp_path, store):
    outcome = ["noisy", "noisy", "noisy", "noisy", "clean"] + ["clean"] * 5
    stats = write_audit(tmp_path / "audit", _table(outcome, p=[0.05] * 3 + [0.9] * 7), store)
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
    assert sorted(m["WS-DAL probability"] for m in meas) == [0.05, 0.9]
    assert raw["wsdal"]["slide"] == "a.tiff"
    assert json.loads((tmp_path / "audit" / "b.geojson").read_text())["features"] == []
    assert (tmp_path / "audit" / "review.csv").read_text().count("\n") == 3
