"""The output folder of a prediction batch: apart from the inputs, and who may share it.

:func:`check_outputs_apart` refuses an output folder where a file of the batch
would replace one of the user's inputs: ``--out`` set to the slide folder itself
(``<slide>.geojson`` is both the pathologist's sidecar and our results file), or
to a QuPath project's ``wsdal/annotations`` export folder. The user's files are
never written; the message names the file.

:func:`folder_settings` is what two runs must agree on to write one folder at
the same time (:class:`wsdal_wsi.lock.FolderLock`): the source, the model, the
threshold and every setting that changes an output file. The device, tile size,
batch size and reader threads are not in it: results do not depend on them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsdal_wsi.errors import OutputError
from wsdal_wsi.predict.settings import ENGINE_VERSION, PredictSettings
from wsdal_wsi.predict.state import BATCH_FILE
from wsdal_wsi.report import COUNTS_CSV, COUNTS_XLSX, INDEX_HTML, slide_files

__all__ = ["check_outputs_apart", "folder_settings"]

#: The batch-level files of an output folder.
BATCH_FILES = (BATCH_FILE, COUNTS_CSV, COUNTS_XLSX, INDEX_HTML)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def check_outputs_apart(
    source: Any, records: Sequence[Any], out_dir: str | os.PathLike[str]
) -> None:
    """Refuse ``out_dir`` when an output file of the batch would replace an input file.

    Parameters
    ----------
    source : wsdal_wsi.qupath.Source
        Its ``input_files(record)`` are the user's files (slides, sidecars,
        ``project.qpproj``, annotation exports).
    records : sequence of ImageRecord
        The batch's images.
    out_dir : path-like

    Raises
    ------
    OutputError
        An output would replace an input (the message names both).
    """
    out = Path(out_dir)
    inputs: dict[str, list[Path]] = {}
    for record in records:
        for p in source.input_files(record):
            inputs.setdefault(p.name, []).append(p)
    outputs = [out / name for name in BATCH_FILES]
    for record in records:
        files = slide_files(out, record.key)
        outputs += [files.geojson, files.summary, files.tissue]
        outputs += [files.thumbnail, files.gallery, files.report]
    for target in outputs:
        for mine in inputs.get(target.name, ()):
            if not _same_file(target, mine):
                continue
            raise OutputError(
                f"--out {out}: would write {target.name} over the input {mine}; wsdal never "
                "writes over the user's slides and annotations: choose an output folder apart "
                "from them (e.g. a new folder 'results')"
            )


def _resolved(path: Any) -> str | None:
    return str(Path(path).resolve()) if path else None


def folder_settings(
    source: Any,
    *,
    model_sha256: str | None,
    threshold: float,
    settings: PredictSettings,
) -> dict[str, Any]:
    """What two runs must agree on to write one output folder at once (JSON-able)."""
    info = source.describe()
    return {
        "command": "wsdal predict",
        # however each run or shard spelt it: relative, absolute, through a link
        "source": {"kind": info.get("kind"), "path": _resolved(info.get("path"))},
        "model_sha256": model_sha256,
        "threshold": round(float(threshold), 9),
        "engine_version": ENGINE_VERSION,
        "hotspot": settings.hotspot.to_dict(),
        "thumbnail_px": settings.thumbnail_px,
        "gallery_n": settings.gallery_n,
        "review_n": settings.review_n,
        "cascade": settings.cascade,
    }
