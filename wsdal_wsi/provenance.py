"""Provenance: which tool, version, settings and inputs made an output file.

Every output file of wsdal-wsi carries a provenance block (a JSON object) so a
result found later can be traced to the slide, the model and the settings that
made it.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from typing import Any

from wsdal_wsi import __version__

__all__ = ["provenance", "utc_now_iso"]


def utc_now_iso() -> str:
    """Return the current UTC time as an ISO 8601 string with seconds (``...Z``)."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


def provenance(**fields: Any) -> dict[str, Any]:
    """Return a provenance block: tool, version, time, platform, plus ``fields``.

    Parameters
    ----------
    **fields
        What made the output: ``slide=``, ``model=``, ``settings=``, ... Values
        must be JSON-serialisable.

    Returns
    -------
    dict
        ``{"tool": "wsdal-wsi", "version": ..., "created": ..., "python": ...,
        "platform": ..., **fields}``.
    """
    block: dict[str, Any] = {
        "tool": "wsdal-wsi",
        "version": __version__,
        "created": utc_now_iso(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join(["wsdal", *sys.argv[1:]]) if sys.argv else None,
    }
    block.update(fields)
    return block
