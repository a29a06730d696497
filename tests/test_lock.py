"""Locks on an output folder: short sections, and a batch claim shared by one batch's shards."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.lock import BATCH_LOCK, claim_batch, locked

A = {"source": "/data/slides", "model_sha256": "aa", "settings": {"threshold_used": 0.5}}
B = {**A, "model_sha256": "bb"}


def test_shards_of_one_batch_share_the_claim_and_refuse_another_batch(tmp_path):
    first = claim_batch(tmp_path, A, shared=True)
    second = claim_batch(tmp_path, A, shared=True)  # the same batch's next shard joins
    with pytest.raises(ConfigError, match=r"shards of a batch .* another source, model"):
        claim_batch(tmp_path, B, shared=True)
    with pytest.raises(ConfigError, match=r"shards of a batch is writing .* now"):
        claim_batch(tmp_path, A, shared=False)  # a plain run waits for the shards
    first.release()
    second.release()
    with claim_batch(tmp_path, B, shared=False):  # free again: any batch may take it
        with pytest.raises(ConfigError, match=r"another wsdal predict .* as a plain run"):
            claim_batch(tmp_path, B, shared=True)
        assert '"model_sha256": "bb"' in (tmp_path / BATCH_LOCK).read_text()


def test_a_plain_run_holds_out_exclusively(tmp_path):
    with claim_batch(tmp_path, A, shared=False):
        with pytest.raises(ConfigError, match="another wsdal predict is writing"):
            claim_batch(tmp_path, A, shared=False)
    claim_batch(tmp_path, A, shared=False).release()


def test_the_claim_ends_with_its_process(tmp_path):
    """A killed shard cannot leave OUT locked: the kernel releases flock locks."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from wsdal_wsi.lock import claim_batch
        claim_batch({str(tmp_path)!r}, {A!r}, shared=False)
        print("held", flush=True)
        sys.stdin.readline()
        os._exit(9)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError):
        claim_batch(tmp_path, A, shared=False)
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=30)
    claim_batch(tmp_path, A, shared=False).release()


def test_locked_sections_do_not_overlap(tmp_path):
    marker = tmp_path / "left"
    code = textwrap.dedent(
        f"""
        import pathlib, time
        from wsdal_wsi.lock import locked
        with locked({str(tmp_path)!r}):
            print("in", flush=True)
            time.sleep(0.5)
            pathlib.Path({str(marker)!r}).write_text("x")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "in"
    with locked(tmp_path):
        assert marker.is_file()  # we got in only after the other process's section ended
    proc.wait(timeout=30)
