import errno
import json
import os
import tempfile

import pytest

from wsdal_wsi.atomic import (
    atomic_open,
    make_dirs,
    remove_stale_temp_files,
    write_json_atomic,
    write_text_atomic,
)
from wsdal_wsi.errors import InputError, OutputError


def test_write_json_atomic_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    write_json_atomic(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_nan_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()


def test_written_file_has_normal_permissions(tmp_path):
    target = tmp_path / "shared.json"
    write_json_atomic(target, {})
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


# --- the user's environment: read-only, under a file, no permission, full disk -----------------


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def test_read_only_location_is_an_output_error_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "mkstemp", _raise(errno.EROFS))
    with pytest.raises(OutputError, match=r"out\.json: cannot write: read-only file system"):
        write_json_atomic(tmp_path / "out.json", {})
    assert OutputError.exit_code == 2 and issubclass(OutputError, InputError)


def test_a_path_through_a_plain_file_names_the_file(tmp_path):
    some_file = tmp_path / "some_file"
    some_file.write_text("mine")
    with pytest.raises(OutputError, match=r"some_file is a file, not a folder"):
        write_json_atomic(some_file / "out" / "x.json", {})
    with pytest.raises(OutputError, match=r"exists and is not a folder"):
        make_dirs(some_file)
    assert some_file.read_text() == "mine"


def test_full_disk_while_writing_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "counts.csv"
    target.write_text("old")
    monkeypatch.setattr(os, "fsync", _raise(errno.ENOSPC))
    with pytest.raises(OutputError, match=r"counts\.csv: cannot write: no space left"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["counts.csv"]


def test_permission_denied_and_other_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", _raise(errno.EACCES))
    with pytest.raises(OutputError, match="permission denied"):
        write_text_atomic(tmp_path / "x.txt", "x")
    monkeypatch.setattr(os, "replace", _raise(errno.EIO))  # not the user's doing: unchanged
    with pytest.raises(OSError) as info:
        write_text_atomic(tmp_path / "x.txt", "x")
    assert not isinstance(info.value, OutputError)


def test_remove_stale_temp_files_only_touches_our_temporary_names(tmp_path):
    with atomic_open(tmp_path / "keep.json") as fh:
        fh.write("{}")
    fd, left = tempfile.mkstemp(prefix=".a.geojson.", suffix=".tmp", dir=tmp_path)
    os.close(fd)
    for name in (".hidden.tmp", "user.tmp", ".notes"):
        (tmp_path / name).write_text("user's")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [os.path.basename(left)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hidden.tmp",
        ".notes",
        "keep.json",
        "user.tmp",
    ]
