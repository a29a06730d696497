"""Reading torch files without ever running code, and saying plainly why one is refused.

Every torch file the tool reads (model files, ``--pretrained`` weights) goes
through :func:`read_torch_file`: ``torch.load(weights_only=True)``, which builds
only tensors and plain data and refuses any other Python object, so a file from a
stranger cannot run code. When it refuses, PyTorch suggests loading again with
``weights_only=False``: that would switch the protection off, so its message is
never passed on. The user reads instead that the file is not what it should be,
or was tampered with, in one line.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from wsdal_wsi.errors import ModelFileError

__all__ = ["read_torch_file"]

#: How the weights-only unpickler names a Python object it refuses (torch 2.2 to 2.9).
_CODE = re.compile(r"unsupported global|global .* (was not an allowed|is blocked)", re.IGNORECASE)


def read_torch_file(path: str | Path, *, what: str, data: bytes | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, failures as one-line errors.

    Parameters
    ----------
    path : path-like
    what : str
        What the file should be, for the messages (``"wsdal model file"``,
        ``"ResNet-18 weights file"``).
    data : bytes, optional
        The file's bytes, already read (e.g. shipped to a Ray worker): loaded
        from memory, ``path`` only names them in the messages.

    Raises
    ------
    ModelFileError
        Missing, not a file, not a torch file, truncated, or holding Python
        objects other than tensors and plain data (code: never loaded).
    """
    p = Path(path)
    if data is None and not p.exists():
        raise ModelFileError(f"{p}: {what} not found")
    if data is None and not p.is_file():
        raise ModelFileError(f"{p}: not a file (expected a {what})")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise to a user
            warnings.simplefilter("ignore")
            return torch.load(
                p if data is None else io.BytesIO(data), map_location="cpu", weights_only=True
            )
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read the {what} ({exc.strerror or exc})") from exc
    except (
        Exception
    ) as exc:  # UnpicklingError, RuntimeError, EOFError, KeyError...: torch's variety
        if _CODE.search(str(exc)):
            reason = (
                "it holds Python objects other than weights, which could run code and are "
                "never loaded: it is not a file wsdal-wsi wrote, or it was tampered with"
            )
        else:
            reason = f"not a {what}, or it is truncated or damaged ({type(exc).__name__})"
        raise ModelFileError(f"{p}: {reason}") from None
