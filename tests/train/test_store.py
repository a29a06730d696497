"""Tests of the patch store: round trip, selection, refusing incomplete stores."""

from __future__ import annotations

import numpy as np
import pytest

from wsdal_wsi.errors import TrainingError
from wsdal_wsi.train.store import PatchStore, StoreWriter


def _rec(**kw):
    base = {
        "image_key": "a",
        "slide": "a.tiff",
        "x_level0": 1.5,
        "y_level0": 2.25,
        "label": 1,
        "source": "click",
        "split": "train",
    }
    base.update(kw)
    return base


def test_round_trip(tmp_path):
    w = StoreWriter(tmp_path / "s", context_px=8, patch_px=4, target_mpp=0.25)
    cid = w.new_click_id()
    p1 = np.arange(2 * 3 * 8 * 8, dtype=np.uint8).reshape(2, 3, 8, 8)
    w.append(p1, [_rec(click_id=cid), _rec(source="jitter", click_id=cid, x_level0=3.0)])
    p2 = np.full((3, 8, 8, 3), 7, np.uint8)  # channels-last is accepted
    w.append(
        p2,
        [
            _rec(image_key="b", source="candidate", label=lab, split="val", in_area=lab >= 0)
            for lab in (0, -1, 0)
        ],
    )
    w.add_image({"key": "a", "slide": "a.tiff", "mpp": 0.5, "split": "train", "has_regions": True})
    w.add_image({"key": "b", "slide": "b.tiff", "mpp": 0.25, "split": "val", "has_regions": False})
    store = w.finish(settings={"x": 1}, provenance={"y": 2})

    again = PatchStore(tmp_path / "s")
    assert len(again) == 5 and again.context_px == 8 and again.patch_px == 4
    np.testing.assert_array_equal(again.patches[:2], p1)
    assert (again.patches[2:] == 7).all()
    np.testing.assert_array_equal(again.label, [1, 1, 0, -1, 0])
    np.testing.assert_array_equal(again.click_id, [0, 0, -1, -1, -1])
    np.testing.assert_array_equal(again.in_area, [True, True, True, False, True])
    assert again.xy_level0[0].tolist() == [1.5, 2.25]
    assert again.select(split="val", label=0).tolist() == [2, 4]
    assert again.select(source=("click", "jitter")).tolist() == [0, 1]
    assert again.select(image_key="b", label=[0, -1]).tolist() == [2, 3, 4]
    assert again.image("a")["mpp"] == 0.5 and again.image("a")["has_regions"] is True
    assert store.meta["counts"] == {"train/click": 1, "train/jitter": 1, "val/candidate": 3}
    assert PatchStore.is_complete(tmp_path / "s")


def test_bad_records_and_shapes(tmp_path):
    w = StoreWriter(tmp_path / "s", context_px=8, patch_px=4, target_mpp=0.25)
    with pytest.raises(TrainingError, match=r"uint8 \(n, 3, 8, 8\)"):
        w.append(np.zeros((1, 3, 6, 6), np.uint8), [_rec()])
    with pytest.raises(TrainingError, match="1 patches but 2"):
        w.append(np.zeros((1, 3, 8, 8), np.uint8), [_rec(), _rec()])
    with pytest.raises(TrainingError, match="bad store record"):
        w.append(np.zeros((1, 3, 8, 8), np.uint8), [_rec(source="guess")])
    with pytest.raises(TrainingError, match="larger than context_px"):
        StoreWriter(tmp_path / "t", context_px=8, patch_px=16, target_mpp=0.25)


def test_incomplete_and_damaged_stores(tmp_path):
    w = StoreWriter(tmp_path / "s", context_px=8, patch_px=4, target_mpp=0.25)
    w.append(np.zeros((2, 3, 8, 8), np.uint8), [_rec(), _rec()])
    with pytest.raises(TrainingError, match="not a complete patch store"):
        PatchStore(tmp_path / "s")  # interrupted before finish()
    assert not PatchStore.is_complete(tmp_path / "s")
    w.finish(settings={}, provenance={})
    with open(tmp_path / "s" / "patches.u8", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(TrainingError, match="expected 384"):
        PatchStore(tmp_path / "s")


def test_patch_centres_and_stores_written_before_them(tmp_path):
    w = StoreWriter(tmp_path / "s", context_px=4, patch_px=4, target_mpp=0.25)
    recs = [
        _rec(click_id=w.new_click_id(), centre_x_level0=3.0, centre_y_level0=4.0),
        _rec(source="candidate", label=0, x_level0=9.0),
    ]
    w.append(np.zeros((2, 3, 4, 4), np.uint8), recs)
    w.add_image({"key": "a", "slide": "a.tiff", "mpp": 0.25, "split": "train", "n_snapped": 1})
    store = w.finish(settings={}, provenance={})
    np.testing.assert_array_equal(store.xy_level0, [[1.5, 2.25], [9.0, 2.25]])
    np.testing.assert_array_equal(store.centre_level0, [[3.0, 4.0], [9.0, 2.25]])
    assert store.images[0]["n_snapped"] == 1
    assert store.trusted.tolist() == [False, False]
    # an index without the trusted column: nothing trusted
    index = tmp_path / "s" / "index.csv"
    full = index.read_text().splitlines()
    lines = [",".join(line.split(",")[:-1]) for line in full]
    index.write_text("\n".join(lines) + "\n")
    assert PatchStore(tmp_path / "s").trusted.tolist() == [False, False]
    # an index without the centre columns (an older store): centre = point
    lines = [",".join(line.split(",")[:-3]) for line in full]
    index.write_text("\n".join(lines) + "\n")
    old = PatchStore(tmp_path / "s")
    np.testing.assert_array_equal(old.centre_level0, old.xy_level0)
    lines[0] += ",extra"
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainingError, match="unexpected columns"):
        PatchStore(tmp_path / "s")
