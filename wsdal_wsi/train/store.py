"""The on-disk patch store: patches read once from the slides, reused by every epoch.

Layout of a store folder::

    STORE/patches.u8    raw uint8 array (N, 3, C, C): RGB patches of C x C pixels at the
                        target resolution, centred on the point (C = context_px >= the
                        network's patch, so augmentation can rotate without empty corners)
    STORE/index.csv     one row per patch: row, image_key, slide, x_level0, y_level0,
                        label, source, split, click_id, in_area, centre_x_level0,
                        centre_y_level0
    STORE/images.csv    one row per image: key, slide, mpp, split, counts, has_regions
    STORE/store.json    settings, shapes and provenance; written last ("complete": true)

Columns of ``index.csv``:

``label``
    1 mitosis (a click of a positive class and its jittered copies), 0 non-mitosis
    (a negative-class click, or a candidate clear of every positive and ignored
    point), -1 unknown (a candidate near a positive or ignored point: not usable
    as a negative).
``source``
    ``click``, ``jitter``, ``negative_click`` or ``candidate``.
``split``
    ``train`` or ``val`` (by slide).
``click_id``
    For clicks and their jittered copies, the id of the click (unique in the
    store); -1 for candidates.
``in_area``
    1 if the point lies inside the image's annotated area (its exhaustively
    annotated regions, or its tissue when it has none), else 0. Candidates are
    only taken inside it; clicks outside it still train.
``x_level0``, ``y_level0``
    The point: the annotated point for a click (what the label audit and the
    validation matching use), the candidate or the jittered point otherwise.
``trusted``
    1 for a label the pathologist gave in answer to the tool (a confirmed or corrected
    detection, an answered question; see :func:`wsdal_wsi.qupath.model.correction_of`)
    and the jittered copies of such a click: training never removes it as noise.
    0 otherwise, and in stores written before the column existed.
``centre_x_level0``, ``centre_y_level0``
    Where the patch is centred: the point itself, except for a click snapped to
    the candidate nucleus under it (see :mod:`wsdal_wsi.train.extract`). A store
    written before these columns existed reads with centre = point.

Patches are read with :class:`numpy.memmap`, so a store larger than memory
works, and the page cache keeps a store that fits hot.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.atomic import atomic_open, make_dirs, write_json_atomic, writing
from wsdal_wsi.errors import TrainingError

__all__ = [
    "INDEX_COLUMNS",
    "SOURCES",
    "PatchStore",
    "StoreWriter",
]

STORE_FORMAT = "wsdal-wsi-patch-store"
STORE_VERSION = 1
INDEX_COLUMNS = (
    "row",
    "image_key",
    "slide",
    "x_level0",
    "y_level0",
    "label",
    "source",
    "split",
    "click_id",
    "in_area",
    "centre_x_level0",
    "centre_y_level0",
    "trusted",
)
#: The columns of stores written before the patch centre was recorded.
#: Index headers read: today's, before ``trusted``, and before the patch centres.
_READABLE_INDEX_COLUMNS = (INDEX_COLUMNS, INDEX_COLUMNS[:-1], INDEX_COLUMNS[:-3])
IMAGE_COLUMNS = (
    "key",
    "slide",
    "mpp",
    "split",
    "has_regions",
    "n_positive",
    "n_negative_clicks",
    "n_candidates",
    "n_candidates_found",
    "n_snapped",
    "area_mm2",
    "n_trusted",
)
SOURCES = ("click", "jitter", "negative_click", "candidate")
#: The index while it is written (renamed to index.csv by StoreWriter.finish).
_INDEX_PART = "index.csv.part"
SPLITS = ("train", "val")


class StoreWriter:
    """Write a patch store sequentially (one image after another).

    Parameters
    ----------
    root : Path
        Store folder (created; an incomplete store there is replaced).
    context_px : int
        Side of the stored patches (pixels at ``target_mpp``).
    patch_px : int
        Side of the network's patch (``<= context_px``).
    target_mpp : float
        Resolution of the stored pixels (µm/px).
    """

    def __init__(
        self, root: str | Path, *, context_px: int, patch_px: int, target_mpp: float
    ) -> None:
        if patch_px > context_px:
            raise TrainingError(f"patch_px {patch_px} is larger than context_px {context_px}")
        self.root = make_dirs(root)
        for name in ("store.json", "index.csv", "images.csv"):
            (self.root / name).unlink(missing_ok=True)
        self.context_px = int(context_px)
        self.patch_px = int(patch_px)
        self.target_mpp = float(target_mpp)
        # patches and index rows go to disk as they come: memory stays flat in their number
        with writing(self.root):
            self._fh = open(self.root / "patches.u8", "wb")
            self._index_fh = open(self.root / _INDEX_PART, "w", encoding="utf-8", newline="")
        self._index = csv.writer(self._index_fh)
        self._index.writerow(INDEX_COLUMNS)
        self._n_rows = 0
        self._counts: dict[str, int] = {}
        self._images: list[dict[str, Any]] = []
        self._next_click_id = 0

    @property
    def n_rows(self) -> int:
        """Patches written so far."""
        return self._n_rows

    @property
    def images(self) -> list[dict[str, Any]]:
        """The image records added so far."""
        return list(self._images)

    def new_click_id(self) -> int:
        """A fresh click id (unique in this store)."""
        self._next_click_id += 1
        return self._next_click_id - 1

    def append(self, patches: np.ndarray, records: Sequence[Mapping[str, Any]]) -> None:
        """Append patches and their index records (both written to disk at once).

        Parameters
        ----------
        patches : ndarray
            ``(n, 3, C, C)`` uint8 (or ``(n, C, C, 3)``, transposed here).
        records : sequence of mapping
            ``n`` dicts with ``image_key, slide, x_level0, y_level0, label, source,
            split`` and optionally ``click_id`` (default -1), ``in_area``
            (default True) and ``centre_x_level0, centre_y_level0`` (default the
            point).

        Raises
        ------
        OutputError
            The store's disk is full (or otherwise cannot be written).
        """
        c = self.context_px
        arr = np.asarray(patches)
        if arr.ndim == 4 and arr.shape[1:] == (c, c, 3):
            arr = arr.transpose(0, 3, 1, 2)
        if arr.dtype != np.uint8 or arr.shape[1:] != (3, c, c):
            raise TrainingError(
                f"store expects uint8 (n, 3, {c}, {c}) patches, got {arr.dtype} {arr.shape}"
            )
        if len(records) != arr.shape[0]:
            raise TrainingError(f"{arr.shape[0]} patches but {len(records)} index records")
        rows = []
        for r in records:
            if r["source"] not in SOURCES or r["split"] not in SPLITS:
                raise TrainingError(f"bad store record {dict(r)}")
            rows.append(
                (
                    self._n_rows + len(rows),
                    str(r["image_key"]),
                    str(r["slide"]),
                    float(r["x_level0"]),
                    float(r["y_level0"]),
                    int(r["label"]),
                    r["source"],
                    r["split"],
                    int(r.get("click_id", -1)),
                    int(bool(r.get("in_area", True))),
                    float(r.get("centre_x_level0", r["x_level0"])),
                    float(r.get("centre_y_level0", r["y_level0"])),
                    int(bool(r.get("trusted", False))),
                )
            )
        with writing(self.root):
            self._fh.write(np.ascontiguousarray(arr).tobytes())
            for row in rows:
                self._index.writerow([f"{v:.2f}" if isinstance(v, float) else v for v in row])
        for row in rows:
            key = f"{row[7]}/{row[6]}"
            self._counts[key] = self._counts.get(key, 0) + 1
        self._n_rows += len(rows)

    def add_image(self, info: Mapping[str, Any]) -> None:
        """Record one image (see ``IMAGE_COLUMNS``; missing fields are empty)."""
        self._images.append({k: info.get(k, "") for k in IMAGE_COLUMNS})

    def finish(self, *, settings: Mapping[str, Any], provenance: Mapping[str, Any]) -> PatchStore:
        """Write the index tables and ``store.json`` (last) and open the store."""
        with writing(self.root):
            for fh in (self._fh, self._index_fh):
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            os.replace(self.root / _INDEX_PART, self.root / "index.csv")
        with atomic_open(self.root / "images.csv") as fh:
            w = csv.DictWriter(fh, fieldnames=IMAGE_COLUMNS)
            w.writeheader()
            w.writerows(self._images)
        meta = {
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "complete": True,
            "n_rows": self._n_rows,
            "context_px": self.context_px,
            "patch_px": self.patch_px,
            "target_mpp": self.target_mpp,
            "counts": dict(sorted(self._counts.items())),
            "settings": dict(settings),
            "provenance": dict(provenance),
        }
        write_json_atomic(self.root / "store.json", meta)
        return PatchStore(self.root)


@dataclass(frozen=True)
class _Index:
    image_key: np.ndarray  # (N,) str
    slide: np.ndarray  # (N,) str
    xy_level0: np.ndarray  # (N, 2) float64
    label: np.ndarray  # (N,) int8
    source: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    click_id: np.ndarray  # (N,) int64
    in_area: np.ndarray  # (N,) bool
    centre_level0: np.ndarray  # (N, 2) float64
    trusted: np.ndarray  # (N,) bool


class PatchStore:
    """A complete patch store, opened read-only.

    Attributes
    ----------
    root : Path
    meta : dict
        ``store.json``.
    patches : np.memmap
        ``(N, 3, C, C)`` uint8.
    image_key, slide, source, split : ndarray of str, ``(N,)``
    xy_level0 : ndarray, ``(N, 2)`` float64
        The points in level-0 pixels of their slide (a click: the annotated point).
    centre_level0 : ndarray, ``(N, 2)`` float64
        The patch centres (level-0 pixels); differ from ``xy_level0`` only for
        snapped clicks.
    label : ndarray, ``(N,)`` int8
        1 / 0 / -1 (see the module docstring).
    click_id : ndarray, ``(N,)`` int64
    in_area : ndarray, ``(N,)`` bool
    images : list of dict
        ``images.csv`` rows (``mpp`` as float).

    Raises
    ------
    TrainingError
        If the folder is not a complete store (extraction was interrupted) or its
        files disagree.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "store.json"
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrainingError(
                f"{self.root}: not a complete patch store (no store.json)"
            ) from None
        except (OSError, ValueError) as exc:
            raise TrainingError(f"{meta_path}: unreadable ({exc})") from exc
        if self.meta.get("format") != STORE_FORMAT or not self.meta.get("complete"):
            raise TrainingError(f"{self.root}: not a complete patch store")
        self.context_px = int(self.meta["context_px"])
        self.patch_px = int(self.meta["patch_px"])
        self.target_mpp = float(self.meta["target_mpp"])
        n = int(self.meta["n_rows"])
        c = self.context_px
        data_path = self.root / "patches.u8"
        expected = n * 3 * c * c
        size = data_path.stat().st_size if data_path.exists() else -1
        if size != expected:
            raise TrainingError(f"{data_path}: {size} bytes, expected {expected} for {n} patches")
        self.patches = (
            np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, 3, c, c))
            if n
            else np.zeros((0, 3, c, c), np.uint8)
        )
        self._index = self._read_index(n)
        with open(self.root / "images.csv", encoding="utf-8", newline="") as fh:
            self.images = [dict(r) for r in csv.DictReader(fh)]
        for im in self.images:
            im["mpp"] = float(im["mpp"])
            im["area_mm2"] = float(im["area_mm2"]) if str(im.get("area_mm2", "")).strip() else 0.0
            for k in (
                "n_positive",
                "n_negative_clicks",
                "n_candidates",
                "n_candidates_found",
                "n_snapped",
            ):
                im[k] = int(im[k]) if str(im.get(k, "")).strip() else 0
            im["has_regions"] = im["has_regions"] in ("True", "1", "true")

    def _read_index(self, n: int) -> _Index:
        path = self.root / "index.csv"
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = tuple(next(reader, None) or ())
            if header not in _READABLE_INDEX_COLUMNS:
                raise TrainingError(f"{path}: unexpected columns {list(header)}")
            rows = list(reader)
        if len(rows) != n:
            raise TrainingError(f"{path}: {len(rows)} rows, store.json says {n}")
        if n == 0:
            e = np.zeros(0, dtype=object)
            return _Index(
                e,
                e,
                np.zeros((0, 2)),
                np.zeros(0, np.int8),
                e,
                e,
                np.zeros(0, np.int64),
                np.zeros(0, bool),
                np.zeros((0, 2)),
                np.zeros(0, bool),
            )
        cols = dict(zip(header, zip(*rows, strict=True), strict=True))
        xy = np.stack([np.array(cols["x_level0"], float), np.array(cols["y_level0"], float)], 1)
        centre = (
            np.stack(
                [
                    np.array(cols["centre_x_level0"], float),
                    np.array(cols["centre_y_level0"], float),
                ],
                axis=1,
            )
            if "centre_x_level0" in cols
            else xy
        )
        return _Index(
            image_key=np.array(cols["image_key"], dtype=object),
            slide=np.array(cols["slide"], dtype=object),
            xy_level0=xy,
            label=np.array(cols["label"], dtype=np.int8),
            source=np.array(cols["source"], dtype=object),
            split=np.array(cols["split"], dtype=object),
            click_id=np.array(cols["click_id"], dtype=np.int64),
            in_area=np.array(cols["in_area"], dtype=np.int64).astype(bool),
            centre_level0=centre,
            trusted=(
                np.array(cols["trusted"], dtype=np.int64).astype(bool)
                if "trusted" in cols
                else np.zeros(len(xy), bool)
            ),
        )

    def __len__(self) -> int:
        return int(self.meta["n_rows"])

    image_key = property(lambda self: self._index.image_key)
    slide = property(lambda self: self._index.slide)
    xy_level0 = property(lambda self: self._index.xy_level0)
    label = property(lambda self: self._index.label)
    source = property(lambda self: self._index.source)
    split = property(lambda self: self._index.split)
    click_id = property(lambda self: self._index.click_id)
    in_area = property(lambda self: self._index.in_area)
    centre_level0 = property(lambda self: self._index.centre_level0)
    trusted = property(lambda self: self._index.trusted)

    def select(
        self,
        *,
        split: str | None = None,
        source: str | Sequence[str] | None = None,
        label: int | Sequence[int] | None = None,
        image_key: str | None = None,
    ) -> np.ndarray:
        """Row numbers matching all the given filters, ascending ``(M,) int64``."""
        mask = np.ones(len(self), dtype=bool)
        if split is not None:
            mask &= self.split == split
        if source is not None:
            mask &= np.isin(self.source, [source] if isinstance(source, str) else list(source))
        if label is not None:
            mask &= np.isin(self.label, [label] if isinstance(label, int) else list(label))
        if image_key is not None:
            mask &= self.image_key == image_key
        return np.flatnonzero(mask).astype(np.int64)

    def image(self, key: str) -> dict[str, Any]:
        """The ``images.csv`` row of image ``key``."""
        for im in self.images:
            if im["key"] == key:
                return im
        raise KeyError(key)

    @staticmethod
    def is_complete(root: str | Path) -> bool:
        """True if ``root`` holds a complete store (``store.json`` says so)."""
        try:
            meta = json.loads((Path(root) / "store.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(meta.get("complete")) and meta.get("format") == STORE_FORMAT
