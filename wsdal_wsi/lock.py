"""File locks on a prediction output folder, so that processes writing into one OUT cooperate.

Several processes may write into one output folder at the same time: the shards of a
batch (``wsdal predict ... --shard K/N``, e.g. a Slurm job array). Per-slide files
never collide (each slide belongs to one shard, every file is written atomically);
the files of the whole batch do. Two locks, both ``fcntl.flock`` on files in OUT
(advisory, released by the kernel when the process ends, however it ends):

- ``OUT/.wsdal.lock``, held for a **short** read-modify-write of a batch-level
  file (``batch.json``, ``counts.csv``, ``counts.xlsx``, ``index.html``):
  :func:`locked`.
- ``OUT/.wsdal-batch.lock``, held for a **whole batch**: :func:`claim_batch`.
  A plain run holds it exclusively; the shards of one batch share it. A batch
  with another identity (source, model, settings that change the results) is
  refused while it is held, and so is a plain run while shards run. The lock
  file holds the identity of the batch that took it (JSON), so the refusal can
  say what is running.

The file system of OUT must support ``flock`` (local disks; NFSv4; Lustre mounted
with ``-o flock``; GPFS); where it does not, the error says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wsdal_wsi.errors import ConfigError, InputError

__all__ = ["BATCH_LOCK", "SHORT_LOCK", "BatchClaim", "claim_batch", "locked"]

#: Held briefly around every update of a batch-level file.
SHORT_LOCK = ".wsdal.lock"
#: Held for the duration of a batch (shared by the shards of one batch).
BATCH_LOCK = ".wsdal-batch.lock"


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise InputError(f"{path}: cannot create the lock file ({exc.strerror or exc})") from exc


def _flock(fd: int, op: int, path: Path) -> None:
    try:
        fcntl.flock(fd, op)
    except BlockingIOError:
        raise
    except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system without locks
        raise InputError(
            f"{path}: the file system of the output folder does not support file locks "
            f"({exc.strerror or exc}); use a local disk, NFSv4, or Lustre mounted with -o flock"
        ) from exc


@contextlib.contextmanager
def locked(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``OUT/.wsdal.lock`` exclusively (waiting for it) for the ``with`` block."""
    path = Path(out_dir) / SHORT_LOCK
    fd = _open(path)
    try:
        _flock(fd, fcntl.LOCK_EX, path)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class BatchClaim:
    """A held ``OUT/.wsdal-batch.lock`` (see :func:`claim_batch`); ``release()`` frees it."""

    def __init__(self, fd: int, path: Path, *, shared: bool) -> None:
        self._fd: int | None = fd
        self.path = path
        self.shared = shared

    def release(self) -> None:
        """Let go of the claim (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BatchClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    try:
        doc = json.loads(data.decode("utf-8")) if data else {}
    except (UnicodeDecodeError, ValueError):
        doc = {}
    return doc if isinstance(doc, dict) else {}


def _write_holder(fd: int, doc: dict[str, Any]) -> None:
    data = json.dumps(doc, sort_keys=True).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def claim_batch(
    out_dir: str | os.PathLike[str], identity: dict[str, Any], *, shared: bool
) -> BatchClaim:
    """Claim OUT for a batch: exclusively (a plain run) or shared with the same batch (a shard).

    Parameters
    ----------
    out_dir : path-like
        The output folder (created if needed).
    identity : dict
        JSON-able: what makes two runs the same batch (source, model hash, the
        settings that change results). Shards share the claim only with an equal
        identity.
    shared : bool
        True for a shard of a batch, False for a plain run.

    Returns
    -------
    BatchClaim
        Held until released or the process ends.

    Raises
    ------
    ConfigError
        Another batch holds OUT: a plain run, or shards of another batch (or any
        batch while this is a plain run). The message says which.
    """
    out = Path(out_dir)
    path = out / BATCH_LOCK
    with locked(out):  # claims are made one at a time, so the identity check is race-free
        fd = _open(path)
        try:
            _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
        except BlockingIOError:
            holder = _holder(fd)
            same = holder.get("identity") == identity and holder.get("shared") and shared
            try:
                if not same:
                    raise BlockingIOError
                _flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, path)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError(_busy_message(out, holder, shared=shared)) from None
            return BatchClaim(fd, path, shared=True)
        except BaseException:
            os.close(fd)
            raise
        _write_holder(fd, {"identity": identity, "shared": shared, "pid": os.getpid()})
        if shared:
            _flock(fd, fcntl.LOCK_SH, path)  # downgrade: the batch's other shards may join
        return BatchClaim(fd, path, shared=shared)


def _busy_message(out: Path, holder: dict[str, Any], *, shared: bool) -> str:
    what = "shards of a batch" if holder.get("shared") else "another wsdal predict"
    ident = holder.get("identity") or {}
    detail = ", ".join(f"{k}={ident[k]}" for k in ("source", "model_sha256") if k in ident)
    if shared and holder.get("shared"):
        why = "with another source, model or settings than this shard"
    elif shared:
        why = "as a plain run (not sharded)"
    else:
        why = "now"
    return (
        f"{out}: {what} is writing into this folder {why}"
        + (f" ({detail})" if detail else "")
        + "; wait for it to finish, or choose another --out folder"
    )
