"""The model artifact: one file with the weights and everything inference needs.

A model file is a ``torch.save`` of a plain dict that :func:`torch.load` reads
with ``weights_only=True`` (no arbitrary pickle, so a model file from a stranger
cannot run code)::

    {"format": "wsdal-wsi-model", "format_version": 1,
     "spec": "<JSON text of ModelSpec>",
     "state_dict": {name: tensor, ...},
     "cascade": {"spec": "<JSON text of CascadeSpec>", "state_dict": {...}}}   (optional)

The spec carries the architecture name and its constructor arguments, the patch
size and target resolution, the normalisation, the decision threshold, the class
names, the candidate-detection settings and merge radius used in training, and a
provenance block (data, preset, stage statistics, versions). Inference reads all
of it from the file: :meth:`LoadedModel.predict_proba` takes raw ``uint8``
patches and does its own normalisation.

The optional ``"cascade"`` entry is the first stage of a two-stage classifier
(:mod:`wsdal_wsi.model.cascade`). It needs no new format version: a reader that
does not know it ignores it and scores every candidate with the final network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wsdal_wsi.atomic import atomic_path
from wsdal_wsi.errors import ConfigError, ModelFileError
from wsdal_wsi.model.calibration import Calibration
from wsdal_wsi.model.cascade import Cascade, CascadeSpec
from wsdal_wsi.model.device import autocast, prepare_inference
from wsdal_wsi.model.nets import build_network
from wsdal_wsi.model.torch_files import read_torch_file
from wsdal_wsi.stain.estimate import StainEstimate
from wsdal_wsi.units import check_probability

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LoadedModel",
    "ModelSpec",
    "load_model",
    "load_model_bytes",
    "read_spec",
    "save_model",
]

#: The header every wsdal-wsi model file carries.
FORMAT_NAME = "wsdal-wsi-model"
#: The newest format version this code reads and the one it writes.
FORMAT_VERSION = 1
#: The largest patch a model file may ask for (px at its resolution).
MAX_PATCH_PX = 1024


@dataclass(frozen=True)
class ModelSpec:
    """What a model is and how to feed it.

    Attributes
    ----------
    arch : str
        Registry name of the network (:data:`wsdal_wsi.model.nets.ARCHITECTURES`).
    patch_size_px : int
        Side of the square patch the network takes, in pixels at ``target_mpp``.
    target_mpp : float
        Resolution (µm/px) the patches are read at.
    mean, std : tuple of 3 floats
        Per-channel normalisation of RGB values scaled to [0, 1]:
        ``x = (rgb / 255 - mean) / std``.
    threshold : float
        Decision threshold on p(mitosis), chosen on validation slides (F1-maximising).
    class_names : tuple of str
        Names of the network's output classes, in order (``("Non-mitosis", "Mitosis")``).
    candidate_params : dict
        Candidate-detection settings used in training (JSON-able, µm units); inference
        builds its :class:`wsdal_wsi.detect.candidates.CandidateParams` from it.
    merge_radius_um : float
        Detections closer than this (µm) are one mitotic figure.
    provenance : dict
        Data, preset, stage statistics, versions (JSON-able).
    arch_kwargs : dict
        Constructor arguments of ``arch`` (e.g. ``{"width": 64}``).
    calibration : dict
        Platt scaling of p(mitosis) fitted on the validation slides
        (:class:`wsdal_wsi.model.calibration.Calibration`; empty: the identity).
    annotation_classes : dict
        The training run's class roles (``ClassSettings.to_dict()``): prediction
        counts the same region classes unless told otherwise. Empty in models made
        before it was recorded.
    stain_reference : dict
        The training slides' median stains
        (:meth:`wsdal_wsi.stain.StainEstimate.to_dict`): prediction maps every slide
        onto them before detecting candidates. Empty: the model was trained on
        slides as scanned (``stain_normalise`` off, or made before it existed), and
        predicts on slides as scanned.
    """

    arch: str
    patch_size_px: int
    target_mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    threshold: float
    class_names: tuple[str, ...]
    candidate_params: dict[str, Any]
    merge_radius_um: float
    provenance: dict[str, Any]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    annotation_classes: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    stain_reference: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # bounds a model file from a stranger must keep too: a patch of 10^9 px, a
        # resolution of 10^6 µm/px or a merge radius of a metre would exhaust memory
        if not 8 <= int(self.patch_size_px) <= MAX_PATCH_PX:
            raise ConfigError(
                f"patch_size_px must be in [8, {MAX_PATCH_PX}], got {self.patch_size_px}"
            )
        if not (math.isfinite(self.target_mpp) and 0 < self.target_mpp <= 16):
            raise ConfigError(f"target_mpp must be in (0, 16] µm/px, got {self.target_mpp}")
        if not (math.isfinite(self.merge_radius_um) and 0 <= self.merge_radius_um <= 100):
            raise ConfigError(f"merge_radius_um must be in [0, 100], got {self.merge_radius_um}")
        for name in ("arch_kwargs", "candidate_params", "provenance", "stain_reference"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a JSON object, got {getattr(self, name)!r:.60}")
        norm = (*self.mean, *self.std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(
                f"mean/std must be 3 values with std > 0, got {self.mean} / {self.std}"
            )
        if not all(math.isfinite(v) for v in norm):
            raise ConfigError(f"mean/std must be finite, got {self.mean} / {self.std}")
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if len(self.class_names) < 2:
            raise ConfigError(f"class_names needs at least 2 names, got {self.class_names}")
        self.stain_estimate()  # raises if malformed

    def stain_estimate(self) -> StainEstimate | None:
        """The reference stains prediction maps slides onto (None: slides as scanned).

        Raises
        ------
        ConfigError
            A malformed ``stain_reference``.
        """
        return StainEstimate.from_dict(self.stain_reference) if self.stain_reference else None

    def to_json(self) -> str:
        """The spec as JSON text (raises ConfigError for non-JSON-able metadata)."""
        try:
            return json.dumps(asdict(self), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model metadata is not JSON-serialisable ({exc})") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Build a spec from its dict form (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for name in ("mean", "std", "class_names"):
            if name in kw:
                kw[name] = tuple(kw[name])
        return cls(**kw)

    def decision_threshold(self, override: float | None = None) -> float:
        """The probability threshold a detection must reach: ``override``, else the model's own.

        Raises
        ------
        ConfigError
            ``override`` is not a probability in [0, 1].
        """
        return self.threshold if override is None else check_probability(override)

    def calibration_map(self) -> Calibration:
        """The calibration of the model's probabilities (the identity if none was fitted)."""
        return Calibration.from_dict(self.calibration)

    def with_threshold(self, threshold: float) -> ModelSpec:
        """A copy with another decision threshold."""
        return ModelSpec(**{**asdict(self), "threshold": float(threshold)})


def save_model(
    path: str | Path,
    module: nn.Module,
    spec: ModelSpec,
    *,
    cascade: tuple[nn.Module, CascadeSpec] | None = None,
) -> Path:
    """Write ``module``'s weights and ``spec`` (and the cascade's) to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        Target file (conventionally ``*.pt``); parent folders are created.
    module : nn.Module
        The network; it must be ``build_network(spec.arch, **spec.arch_kwargs)``-shaped.
    spec : ModelSpec
        Its description.
    cascade : (nn.Module, CascadeSpec), optional
        The cascade's first stage and its description.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_json(),
        "state_dict": _cpu_state(module),
    }
    if cascade is not None:
        payload["cascade"] = {"spec": cascade[1].to_json(), "state_dict": _cpu_state(cascade[0])}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


@dataclass
class LoadedModel:
    """A model ready for inference on ``device`` (eval mode).

    Attributes
    ----------
    spec : ModelSpec
    module : nn.Module
    device : torch.device
    path : Path
    cascade : Cascade or None
        The first stage of the cascade, when the file has one.
    """

    spec: ModelSpec
    module: nn.Module
    device: torch.device
    path: Path
    cascade: Cascade | None = None

    def __post_init__(self) -> None:
        mean = torch.tensor(self.spec.mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(self.spec.std, dtype=torch.float32, device=self.device)
        # x = (rgb / 255 - mean) / std = rgb * scale - shift
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
        self._shift = (mean / std).view(1, 3, 1, 1)

    def _float(self, patches: Tensor) -> Tensor:
        """``uint8 (N, 3, P, P)`` → float32 0-255 on the model's device, channels-last."""
        x = patches.to(self.device, non_blocking=True)
        return x.to(torch.float32, memory_format=torch.channels_last)

    def _scale_shift(self, x: Tensor) -> Tensor:
        return torch.addcmul(-self._shift, x, self._scale)

    def normalise(self, patches: Tensor) -> Tensor:
        """``uint8 (N, 3, P, P)`` on any device → normalised float32 (channels-last)."""
        return self._scale_shift(self._float(patches))

    def first_threshold(self, threshold: float) -> float | None:
        """The first stage's logit cut for detections at ``threshold`` (None: no cascade)."""
        return None if self.cascade is None else self.cascade.spec.first_threshold(threshold)

    @torch.inference_mode()
    def first_stage_logits(self, patches: Tensor) -> Tensor:
        """``(N,)`` float32 first-stage logits of ``(N, 3, P, P)`` uint8 patches.

        Raises
        ------
        ValueError
            The model has no cascade, or the patches are not uint8 ``(N, 3, P, P)``.
        """
        if self.cascade is None:
            raise ValueError(f"{self.path}: the model has no cascade")
        self._check(patches)
        if patches.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float32, device=self.device)
        with autocast(self.device):
            return self.cascade.logits(self._float(patches), self._scale_shift)

    def _check(self, patches: Tensor) -> None:
        p = self.spec.patch_size_px
        if (
            patches.dtype != torch.uint8
            or patches.ndim != 4
            or tuple(patches.shape[1:]) != (3, p, p)
        ):
            raise ValueError(
                f"the model takes uint8 (N, 3, {p}, {p}) patches, "
                f"got {patches.dtype} {tuple(patches.shape)}"
            )

    @torch.inference_mode()
    def predict_proba(self, patches: Tensor, *, batch_size: int | None = None) -> Tensor:
        """Probability of mitosis for each patch.

        Parameters
        ----------
        patches : Tensor
            ``(N, 3, P, P)`` uint8 RGB, ``P == spec.patch_size_px``, on any device.
        batch_size : int, optional
            Score in chunks of this many patches (default: all at once).

        Returns
        -------
        Tensor
            ``(N,)`` float32 p(mitosis) in [0, 1], on the model's device.
        """
        self._check(patches)
        n = patches.shape[0]
        if n == 0:
            return torch.zeros(0, dtype=torch.float32, device=self.device)
        step = n if batch_size is None else max(1, int(batch_size))
        out = []
        for start in range(0, n, step):
            x = self.normalise(patches[start : start + step])
            with autocast(self.device):
                logits = self.module(x)
            out.append(torch.softmax(logits.float(), dim=1)[:, 1])
        return torch.cat(out)


def _read_payload(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """The file's dict (``data``: the file's bytes, already read; ``path`` names it)."""
    payload = read_torch_file(path, what="model file", data=data)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelFileError(
            f"{path}: a torch file but not a wsdal-wsi model (no {FORMAT_NAME!r} header)"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: bad model format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} is newer than this wsdal-wsi reads "
            f"(up to {FORMAT_VERSION}); upgrade wsdal-wsi"
        )
    return payload


def read_spec(path: str | Path) -> ModelSpec:
    """Read only the spec of a model file (no network is built).

    Raises
    ------
    ModelFileError
        If the file is missing, not a wsdal-wsi model, corrupted or too new.
    """
    path = Path(path)
    return _spec_of(path, _read_payload(path))


def _spec_of(path: Path, payload: dict[str, Any]) -> ModelSpec:
    try:
        return ModelSpec.from_dict(json.loads(payload["spec"]))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelFileError(f"{path}: model metadata is missing or malformed ({exc})") from exc


def _check_shapes(path: Path, spec: ModelSpec, state: Mapping[str, Tensor]) -> None:
    """Refuse weights that do not fit the architecture before any memory is allocated.

    The network is built on PyTorch's "meta" device (shapes only), so absurd
    constructor arguments in a file (a width of a million channels) cost nothing.
    """
    try:
        with torch.device("meta"):
            skeleton = build_network(spec.arch, **spec.arch_kwargs)
    except (ConfigError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: bad architecture in the model file ({exc})") from exc
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        wrong = sorted(k for k in want.keys() & have.keys() if want[k] != have[k])
        raise ModelFileError(
            f"{path}: weights do not fit architecture {spec.arch!r} "
            f"({len(want.keys() - have.keys())} missing, {len(have.keys() - want.keys())} "
            f"unexpected, {len(wrong)} of another shape{': ' + wrong[0] if wrong else ''})"
        )


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model file safely and prepare it for inference on ``device``.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_model`.
    device : str or torch.device
        Where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Raises
    ------
    ModelFileError
        The file is missing, not a torch file, truncated, a torch file that is not a
        wsdal-wsi model, from a newer format version, or its weights do not fit its
        architecture. The message names the file and the reason.
    """
    path = Path(path)
    return _model_of(path, _read_payload(path), device)


def load_model_bytes(
    data: bytes, *, path: str | Path, device: str | torch.device = "cpu"
) -> LoadedModel:
    """:func:`load_model` from the bytes of a model file (e.g. shipped to a Ray worker).

    Parameters
    ----------
    data : bytes
        The file's content.
    path : str or Path
        The file it came from (named in errors, kept as ``LoadedModel.path``).
    device : str or torch.device

    Raises
    ------
    ModelFileError
        As :func:`load_model`.
    """
    path = Path(path)
    return _model_of(path, _read_payload(path, bytes(data)), device)


def _model_of(path: Path, payload: dict[str, Any], device: str | torch.device) -> LoadedModel:
    """Build, check and place the network of a read model file."""
    spec = _spec_of(path, payload)
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: model weights are missing or malformed")
    _check_shapes(path, spec, state)
    try:
        module = build_network(spec.arch, **spec.arch_kwargs)
    except ConfigError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFileError(
            f"{path}: weights do not fit architecture {spec.arch!r} ({first})"
        ) from exc
    dev = torch.device(device)
    prepare_inference(module, dev)
    cascade = _load_cascade(path, payload.get("cascade"), dev)
    return LoadedModel(spec=spec, module=module, device=dev, path=path, cascade=cascade)


def _load_cascade(path: Path, entry: Any, device: torch.device) -> Cascade | None:
    """The cascade's first stage of a payload (None when the file has none)."""
    if entry is None:
        return None
    try:
        spec = CascadeSpec.from_dict(json.loads(entry["spec"]))
        state = entry["state_dict"]
        module = build_network(spec.arch, **spec.arch_kwargs)
        module.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: the cascade entry is malformed ({first})") from exc
    prepare_inference(module, device)
    return Cascade(spec=spec, module=module)
