"""The output-folder lock: other settings refused, same settings shared, one writer per slide."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap

import pytest

from wsdal_wsi import lock as lock_module
from wsdal_wsi.errors import OutputError
from wsdal_wsi.lock import LOCK_DIR, FolderLock

A = {"model": "aaa", "threshold": 0.5, "hotspot": {"area_mm2": 2.0}}
B = {"model": "aaa", "threshold": 0.7, "hotspot": {"area_mm2": 2.0}}


def test_other_settings_are_refused_naming_what_differs(tmp_path):
    with FolderLock(tmp_path, settings=A, command="wsdal predict") as first:
        assert first.alone
        with pytest.raises(OutputError) as info:
            FolderLock(tmp_path, settings=B, command="wsdal predict").acquire()
        msg = str(info.value)
        assert "other settings" in msg and "differs: threshold" in msg
        assert "wsdal predict (process" in msg and str(tmp_path) in msg
    # once the first run left, the other settings are welcome (and alone)
    with FolderLock(tmp_path, settings=B, command="wsdal predict") as later:
        assert later.alone


def test_same_settings_share_the_folder(tmp_path):
    with (
        FolderLock(tmp_path, settings=A, command="x") as one,
        FolderLock(tmp_path, settings=dict(A), command="y") as two,
    ):
        assert one.alone and not two.alone
        with pytest.raises(OutputError):  # a third with other settings: still refused
            FolderLock(tmp_path, settings=B, command="z").acquire()
    assert (tmp_path / LOCK_DIR / "folder").is_file()


def test_a_slide_has_one_writer(tmp_path):
    with (
        FolderLock(tmp_path, settings=A, command="x") as one,
        FolderLock(tmp_path, settings=A, command="y") as two,
    ):
        with one.slide("s1") as held:
            assert held
            with two.slide("s1", wait=False) as other:
                assert other is False
            with two.slide("s2", wait=False) as free:
                assert free is True
        with two.slide("s1", wait=False) as now:
            assert now is True


def test_batch_writes_are_exclusive(tmp_path):
    import fcntl

    with FolderLock(tmp_path, settings=A, command="x") as one, one.batch_writes():
        with open(tmp_path / LOCK_DIR / "guard", "a") as fh:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys, time
        from wsdal_wsi.lock import FolderLock
        lock = FolderLock({str(tmp_path)!r}, settings={A!r}, command="killed").acquire()
        with lock.slide("s1"):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match="killed"):
            FolderLock(tmp_path, settings=B, command="x").acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with (
        FolderLock(tmp_path, settings=B, command="x") as lock,
        lock.slide("s1", wait=False) as held,
    ):
        assert lock.alone and held


def test_without_fcntl_nothing_is_locked_and_a_warning_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(lock_module, "fcntl", None)
    monkeypatch.setattr(lock_module, "_warned_unlocked", False)
    with caplog.at_level(logging.WARNING, logger="wsdal_wsi.lock"):
        with FolderLock(tmp_path, settings=A, command="x") as one:
            FolderLock(tmp_path, settings=B, command="y").acquire()
            with one.slide("s1") as held:
                assert held
    assert "cannot be locked on this system" in caplog.text


def test_an_unwritable_folder_is_an_output_error(tmp_path):
    some_file = tmp_path / "some_file"
    some_file.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        FolderLock(some_file / "out", settings=A, command="x").acquire()
