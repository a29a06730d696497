"""``OUT/batch.json``: the state of a prediction batch (this module owns its schema).

Rewritten atomically when the batch starts and after every slide, so an
interrupted batch leaves an exact record of what was done, what failed and
why. Schema ``"wsdal-wsi/predict-batch"``, version 1::

    {"schema": "wsdal-wsi/predict-batch", "schema_version": 1,
     "status": "running" | "finished" | "interrupted",
     "provenance": {"tool", "version", "created", "command", ...},
     "source": {"kind", "path", "backend"},
     "model": {"path", "sha256", "threshold", "target_mpp"},
     "settings": {... PredictSettings.to_dict(), "threshold_used"},
     "started": "<ISO time>", "updated": "<ISO time>",
     "counts": {"done": n, "skipped": n, "recounted": n, "failed": n, "pending": n},
     "images": [{"key", "name", "slide", "status", "reason", "warnings",
                 "detections", "hotspot", "per_mm2", "score", "summary",
                 "started", "finished", "timings", "traceback"}]}

Image ``status``: ``pending`` (not reached yet), ``running`` (being predicted
when the batch stopped), ``done`` (predicted now), ``skipped`` (finished by an
earlier run with the same model and settings), ``recounted`` (earlier
detections, counted again with new hotspot settings), ``failed`` (``reason``
says why; ``traceback`` for unexpected errors).

The slide summaries, not this file, decide what a re-run skips: the batch
state is a record for people and tools.

Shards (``--shard K/N``) of one batch share the file: each owns the lines of its
own images, and :meth:`BatchState.save` merges them into the file under the folder's
lock (the other lines are taken from the file as the other shards left them). Its
``status`` is then ``finished`` only once no image of any shard is pending or running,
and ``shards`` records the shard count.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import write_json_atomic
from wsdal_wsi.errors import InputError
from wsdal_wsi.lock import FolderLock
from wsdal_wsi.provenance import utc_now_iso

__all__ = ["BATCH_FILE", "SCHEMA", "SCHEMA_VERSION", "BatchState", "ImageState", "check_batch_file"]

BATCH_FILE = "batch.json"
SCHEMA = "wsdal-wsi/predict-batch"
SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "skipped", "recounted", "failed")


@dataclass
class ImageState:
    """One image's line in ``batch.json`` (see the module docstring)."""

    key: str
    name: str
    slide: str | None = None
    status: str = "pending"
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    detections: int | None = None
    hotspot: int | None = None
    per_mm2: float | None = None
    score: int | None = None
    summary: str | None = None
    started: str | None = None
    finished: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image has results (done, skipped or recounted)."""
        return self.status in ("done", "skipped", "recounted")


@dataclass
class BatchState:
    """The whole ``batch.json``.

    Attributes
    ----------
    path : Path
        Where it is written.
    header : dict
        ``provenance``, ``source``, ``model``, ``settings``, ``started``.
    images : list of ImageState
    status : str
        ``"running"``, ``"finished"`` or ``"interrupted"``.
    owned : set of str, optional
        A shard's own image keys: :meth:`save` then merges them into the file
        (the other images' lines come from the file, as the other shards wrote
        them). None: this process owns every line.
    lock : FolderLock, optional
        The output folder's lock: :meth:`save` writes inside its
        :meth:`~wsdal_wsi.lock.FolderLock.batch_writes` (runs sharing the folder
        never interleave their writes of the file).
    """

    path: Path
    header: dict[str, Any]
    images: list[ImageState]
    status: str = "running"
    owned: set[str] | None = None
    lock: FolderLock | None = field(default=None, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        """Images per status."""
        out = {s: 0 for s in STATUSES}
        for im in self.images:
            out[im.status] = out.get(im.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form (see the module docstring)."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            **self.header,
            "updated": utc_now_iso(),
            "counts": self.counts(),
            "images": [asdict(im) for im in self.images],
        }

    def save(self) -> None:
        """Write the file atomically (a shard: merged with the file), under the folder's lock."""
        with self.lock.batch_writes() if self.lock is not None else contextlib.nullcontext():
            if self.owned is not None:
                self._merge_from_file()
            write_json_atomic(self.path, self.to_dict())

    def _merge_from_file(self) -> None:
        """Take the lines this shard does not own from the file; set the batch's status."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            doc = {}
        theirs = {}
        if isinstance(doc, dict) and doc.get("schema") == SCHEMA:
            fields = {f for f in ImageState.__dataclass_fields__}
            for line in doc.get("images") or []:
                if isinstance(line, dict) and line.get("key") not in (self.owned or ()):
                    theirs[line.get("key")] = ImageState(
                        **{k: v for k, v in line.items() if k in fields}
                    )
        self.images = [
            im if im.key in (self.owned or ()) else theirs.get(im.key, im) for im in self.images
        ]
        if self.status != "interrupted":
            busy = any(im.status in ("pending", "running") for im in self.images)
            self.status = "running" if busy else "finished"


def check_batch_file(out_dir: str | os.PathLike[str]) -> Path:
    """The ``batch.json`` path of ``out_dir``, refusing to overwrite a file that is not ours.

    Raises
    ------
    InputError
        ``OUT/batch.json`` exists and is not a wsdal-wsi batch file (for
        instance, a sidecar of a slide called ``batch``): it is left untouched.
    """
    path = Path(out_dir) / BATCH_FILE
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            doc = None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise InputError(
                f"{path} exists and is not a wsdal-wsi batch file; not overwriting it "
                "(it may be someone's data): choose another --out folder"
            )
    return path
