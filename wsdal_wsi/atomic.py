"""Atomic file writing: a file is either the old one or the complete new one.

Every output file of wsdal-wsi is written to a temporary file in the same folder
and renamed over the target when complete, so an interrupted run never leaves a
truncated GeoJSON, CSV or model file behind. A process killed outright (``kill
-9``, a power cut) may leave its temporary file, ``.<name>.<random>.tmp``, beside
the target; :func:`remove_stale_temp_files` clears them when no other run can be
writing the folder.

The failures of writing that are the user's environment, not a bug (a read-only
file system, a path through a plain file, no permission, a full disk or quota),
become :class:`~wsdal_wsi.errors.OutputError` naming the path and the reason in
plain words (exit code 2); :func:`writing` does the same for code that writes
files by other means.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from wsdal_wsi.errors import OutputError

__all__ = [
    "atomic_open",
    "atomic_path",
    "make_dirs",
    "output_error",
    "remove_stale_temp_files",
    "write_json_atomic",
    "write_text_atomic",
    "writing",
]

#: The errno values of a write that fails because of where it writes, in plain words.
_REASONS = {
    errno.EROFS: "read-only file system: nothing can be written there",
    errno.ENOSPC: "no space left on the device",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EEXIST: "exists and is not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "file name too long for the file system",
    errno.EFBIG: "file too large for the file system",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _REASONS[errno.EDQUOT] = "disk quota exceeded"

#: The names :func:`atomic_path` gives its temporary files (tempfile's 8 random characters).
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_in_path(path: Path) -> Path | None:
    """The first part of ``path`` that exists and is not a folder (for ENOTDIR), if any."""
    for part in reversed(path.parents):
        if part.exists() and not part.is_dir():
            return part
    return None


def output_error(exc: OSError, path: str | os.PathLike[str]) -> OutputError | None:
    """The :class:`OutputError` an OS failure to write ``path`` means, or None if it is another.

    Parameters
    ----------
    exc : OSError
        What the write raised.
    path : path-like
        The file or folder that was being written (named in the message).
    """
    p = Path(path)
    if exc.errno == errno.ENOTDIR:
        culprit = _file_in_path(p)
        what = f"{culprit} is a file, not a folder" if culprit else "a part of the path is a file"
        return OutputError(f"{p}: cannot write: {what}")
    reason = _REASONS.get(exc.errno)  # type: ignore[arg-type]
    if reason is None:
        return None
    return OutputError(f"{p}: cannot write: {reason}")


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn the :class:`OSError` of writing ``path`` (read-only, full disk, ...) into
    :class:`~wsdal_wsi.errors.OutputError`; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        err = output_error(exc, path)
        if err is None:
            raise
        raise err from exc


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` and its parents (no error if it exists).

    Raises
    ------
    OutputError
        It cannot be created (read-only, under a plain file, no permission) or
        exists as a file.
    """
    p = Path(path)
    with writing(p):
        p.mkdir(parents=True, exist_ok=True)
    return p


def _is_ours(exc: OSError, *paths: Path) -> bool:
    """Whether ``exc`` came from writing one of ``paths`` (a bare write error names none)."""
    if exc.filename is None:
        return True
    names = {str(p) for p in paths}
    return str(exc.filename) in names or str(getattr(exc, "filename2", None)) in names


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    The caller writes the temporary file by any means (a library that takes a
    path, for instance). On an exception the temporary file is removed and
    ``path`` is left as it was. Parent folders are created.

    Raises
    ------
    OutputError
        The folder or the file cannot be written (read-only, under a plain file,
        no permission, full disk); ``path`` is left as it was.
    """
    target = Path(path)
    make_dirs(target.parent)
    with writing(target):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and _is_ours(exc, tmp, target, target.parent):
            err = output_error(exc, target)
            if err is not None:
                raise err from exc
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; rename it over ``path`` when closed.

    ``mode`` is ``"w"`` (text, UTF-8 by default) or ``"wb"``. The data is
    flushed and fsync-ed before the rename. Failures as :func:`atomic_path`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        kwargs = {"encoding": encoding, "newline": ""} if mode == "w" else {}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (UTF-8, no NaN literals allowed) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    write_text_atomic(path, text + "\n")


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (not recursive).

    Only names :func:`atomic_path` makes (``.<name>.<8 characters>.tmp``) are
    touched. Call it only when no other process can be writing ``folder`` (under
    an exclusive lock), or a file being written would vanish.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if _TEMP_NAME.match(p.name) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
