"""batch.json: what it records, and never overwriting someone else's file."""

from __future__ import annotations

import json

import pytest

from wsdal_wsi.errors import InputError
from wsdal_wsi.predict.state import SCHEMA, BatchState, ImageState, check_batch_file


def test_save_writes_the_schema_status_and_counts(tmp_path):
    state = BatchState(
        path=tmp_path / "batch.json",
        header={"source": {"kind": "slide-folder"}},
        images=[ImageState("a", "a.svs", status="done"), ImageState("b", "b.svs"),
                ImageState("c", "c.svs", status="failed", reason="c.svs: truncated")],
    )  # fmt: skip
    state.save()
    doc = json.loads((tmp_path / "batch.json").read_text(encoding="utf-8"))
    assert doc["schema"] == SCHEMA and doc["status"] == "running"
    assert doc["counts"]["done"] == 1 and doc["counts"]["pending"] == 1
    assert doc["counts"]["failed"] == 1
    assert doc["images"][2]["reason"] == "c.svs: truncated"
    assert doc["source"] == {"kind": "slide-folder"} and doc["updated"].endswith("Z")
    assert state.images[0].ok and not state.images[2].ok
    assert check_batch_file(tmp_path) == tmp_path / "batch.json"  # ours: may be rewritten


@pytest.mark.parametrize("content", ['{"images": []}', "not json", "[1, 2]"])
def test_a_file_that_is_not_ours_is_refused(tmp_path, content):
    (tmp_path / "batch.json").write_text(content)
    with pytest.raises(InputError, match=r"batch\.json exists and is not a wsdal-wsi batch file"):
        check_batch_file(tmp_path)


def test_no_file_yet(tmp_path):
    assert check_batch_file(tmp_path / "new") == tmp_path / "new" / "batch.json"
