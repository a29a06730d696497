"""What training and inference share: the networks, the model file, the device.

- :mod:`~wsdal_wsi.model.nets`: the ResNet-18 trunk and the three heads of WS-DAL,
  built by registry name (:func:`build_network`);
- :mod:`~wsdal_wsi.model.file`: the model artifact (weights + everything inference needs),
  saved and loaded safely (``torch.load(weights_only=True)``);
- :mod:`~wsdal_wsi.model.device`: ``--device`` resolution, bf16 autocast and channels-last
  on CUDA.

``wsdal_wsi.train`` and ``wsdal_wsi.predict`` both depend on this package; it depends
on neither.
"""

from wsdal_wsi.model.device import autocast, prepare_model, resolve_device
from wsdal_wsi.model.file import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LoadedModel,
    ModelSpec,
    load_model,
    load_model_bytes,
    read_spec,
    save_model,
)
from wsdal_wsi.model.nets import ARCHITECTURES, build_network

__all__ = [
    "ARCHITECTURES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LoadedModel",
    "ModelSpec",
    "autocast",
    "build_network",
    "load_model",
    "load_model_bytes",
    "prepare_model",
    "read_spec",
    "resolve_device",
    "save_model",
]
