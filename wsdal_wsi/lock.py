"""Locks on an output folder: one set of settings at a time, one writer per slide.

Two ``wsdal predict`` runs into one ``--out`` folder with other settings would
both compute everything and the last writer would silently win: the counts one
of them printed would not be what is on disk. :class:`FolderLock` prevents that
and lets several processes with the *same* settings share a folder (a second
run started by mistake, or the shards of a sharded run) without corrupting it:

- **the folder** (``OUT/.wsdal-lock/folder``): held *shared* by every run
  writing the folder, which records the settings of the runs that hold it. A run
  whose settings differ from the holders' is refused
  (:class:`~wsdal_wsi.errors.OutputError`, naming what differs and who holds it);
  a run with the same settings joins them. The first holder (nobody else in the
  folder) knows it is alone (:attr:`FolderLock.alone`), so it may clear what a
  killed run left (temporary files);
- **a slide** (``OUT/.wsdal-lock/slide-<key>``): held *exclusively* while a
  slide's files are written (:meth:`FolderLock.slide`); another run reaching the
  same slide either moves on (``wait=False``) or waits for it and then finds it
  finished;
- **batch-level writes** (``batch.json``, ``counts.csv`` ...): made inside
  :meth:`FolderLock.batch_writes`, exclusive among the holders, so files written
  together are never interleaved with another run's.

A sharded run (several processes, one folder) takes a :class:`FolderLock` with
the same settings in each process, a slide lock around each slide it writes, and
makes its batch-level writes inside :meth:`~FolderLock.batch_writes`.

The locks are ``fcntl.flock`` locks (Linux, macOS and other POSIX systems; on
Linux they work on NFS too, as POSIX record locks): the kernel releases them
when their process ends, however it ends (``kill -9`` included), so a lock is
never stale. Where ``fcntl`` is missing (Windows, which would need
``msvcrt.locking`` or ``LockFileEx``) nothing is locked and a warning says so
once: there, do not run two commands into one folder at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from wsdal_wsi.atomic import make_dirs, writing
from wsdal_wsi.errors import OutputError

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_DIR", "FolderLock", "batch_writes"]

log = logging.getLogger(__name__)

#: The hidden folder of an output folder that holds its lock files.
LOCK_DIR = ".wsdal-lock"

_warned_unlocked = False


def _flock(fh: IO[Any], op: int) -> bool:
    """``flock`` ``fh`` with ``op``; False when non-blocking and held by another."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fh.fileno(), op)
    except BlockingIOError:
        return False
    return True


def _differing(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields that differ between two JSON-able settings."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [prefix or "settings"] if old != new else []
    out: list[str] = []
    for k in sorted({*old, *new}):
        name = f"{prefix}.{k}" if prefix else str(k)
        out += _differing(old.get(k), new.get(k), name)
    return out


@contextlib.contextmanager
def batch_writes(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive among all processes using ``folder``, for a short while.

    What :meth:`FolderLock.batch_writes` takes; a command that only rewrites the
    batch files from the summaries (``wsdal report``) takes it without joining
    the folder. Not re-entrant: never nest it in one process.
    """
    if fcntl is None:
        yield
        return
    lock_dir = Path(folder) / LOCK_DIR
    make_dirs(lock_dir)
    path = lock_dir / "guard"
    with writing(path):
        fh = open(path, "a", encoding="utf-8")
    try:
        _flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


class FolderLock:
    """The lock of a run on an output folder (see the module docstring).

    Parameters
    ----------
    folder : path-like
        The output folder (created).
    settings : mapping
        JSON-able: what must be equal for two runs to share the folder (the
        model, threshold, counting settings, source, ...). Compared field by field.
    command : str
        What holds the lock, for the message a refused run prints
        (e.g. ``"wsdal predict"``).

    Use it as a context manager (:meth:`acquire` on entry, :meth:`release` on exit).
    """

    def __init__(
        self, folder: str | os.PathLike[str], *, settings: Mapping[str, Any], command: str
    ):
        self.folder = Path(folder)
        self.dir = self.folder / LOCK_DIR
        self.settings = json.loads(json.dumps(dict(settings)))
        self.command = command
        self.alone = False
        self._fh: IO[Any] | None = None

    # -- the folder ---------------------------------------------------------------------
    def acquire(self) -> FolderLock:
        """Take the folder: alone, or beside runs with the same settings.

        Raises
        ------
        OutputError
            Runs with other settings hold the folder (the message says which
            fields differ, and which process holds it); or the folder cannot be
            written.
        """
        global _warned_unlocked
        if fcntl is None:
            if not _warned_unlocked:
                log.warning(
                    "%s: output folders cannot be locked on this system (no fcntl); do not run "
                    "two commands into one folder at once",
                    self.folder,
                )
                _warned_unlocked = True
            self.alone = True
            return self
        make_dirs(self.dir)
        path = self.dir / "folder"
        with self._guard():
            with writing(path):
                fh = open(path, "a+", encoding="utf-8")
            try:
                self.alone = _flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self.alone:
                    with writing(path):
                        fh.seek(0)
                        fh.truncate()
                        fh.write(json.dumps(self._holder(), ensure_ascii=False))
                        fh.flush()
                else:
                    self._check_holders(fh)
                _flock(fh, fcntl.LOCK_SH)  # the guard keeps others out while it converts
            except BaseException:
                fh.close()
                raise
        self._fh = fh
        return self

    def _holder(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "settings": self.settings,
        }

    def _check_holders(self, fh: IO[Any]) -> None:
        fh.seek(0)
        try:
            holder = json.loads(fh.read() or "{}")
        except ValueError:
            holder = {}
        theirs = holder.get("settings") if isinstance(holder, dict) else None
        if theirs == self.settings:
            return
        diff = _differing(theirs, self.settings)
        who = (
            f"{holder.get('command', 'another run')} (process {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')})"
            if isinstance(holder, dict)
            else "another run"
        )
        raise OutputError(
            f"{self.folder}: {who} is writing this folder with other settings "
            f"(differs: {', '.join(diff) or 'unknown'}); wait for it to finish, or choose "
            "another output folder"
        )

    def release(self) -> None:
        """Leave the folder (the lock files stay; they are empty of meaning once released)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive among all processes using the folder, for a short while."""
        return batch_writes(self.folder)

    # -- writes of the whole batch ---------------------------------------------------------
    @contextlib.contextmanager
    def batch_writes(self) -> Iterator[None]:
        """Exclusive among the runs holding the folder: make batch-level writes inside it."""
        with self._guard():
            yield

    # -- one slide -------------------------------------------------------------------------
    @contextlib.contextmanager
    def slide(self, key: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold slide ``key`` exclusively while its files are written.

        Yields True when held; with ``wait=False``, False at once when another
        run holds it (the caller moves on and comes back later).
        """
        if fcntl is None:
            yield True
            return
        path = self.dir / f"slide-{key}"
        with writing(path):
            fh = open(path, "a", encoding="utf-8")
        try:
            op = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
            yield _flock(fh, op)
        finally:
            fh.close()
