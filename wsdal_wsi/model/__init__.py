"""What training and inference share: the networks, the model file, the device, calibration.

- :mod:`~wsdal_wsi.model.nets`: the ResNet-18 trunk and the three heads of WS-DAL,
  built by registry name (:func:`build_network`);
- :mod:`~wsdal_wsi.model.file`: the model artifact (weights + everything inference needs),
  saved and loaded safely (``torch.load(weights_only=True)``);
- :mod:`~wsdal_wsi.model.device`: ``--device`` resolution, bf16 autocast and channels-last
  on CUDA;
- :mod:`~wsdal_wsi.model.calibration`: Platt scaling of p(mitosis) (numpy only).

``wsdal_wsi.train`` and ``wsdal_wsi.predict`` both depend on this package; it depends
on neither. The names below are loaded on first use (PEP 562), so that the torch-free
parts (``calibration``) can be used by ``counting``/``report`` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "autocast": "device",
    "prepare_model": "device",
    "resolve_device": "device",
    "FORMAT_NAME": "file",
    "FORMAT_VERSION": "file",
    "LoadedModel": "file",
    "ModelSpec": "file",
    "load_model": "file",
    "load_model_bytes": "file",
    "read_spec": "file",
    "save_model": "file",
    "ARCHITECTURES": "nets",
    "build_network": "nets",
    "Calibration": "calibration",
    "fit_calibration": "calibration",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
