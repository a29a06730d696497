"""The settings of a training run and its ``config.json``: resolved once, written once,
checked on resume.

:func:`resolve_run_settings` is the one place where the options of ``wsdal train``
become a run's settings: on ``--resume`` an option not given comes from the run's
``config.json``; otherwise it takes the default :class:`RunSettings` declares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import write_json_atomic
from wsdal_wsi.errors import ConfigError, TrainingError
from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath.model import ClassSettings
from wsdal_wsi.train.presets import DEFAULT_PRESET, Preset, get_preset
from wsdal_wsi.units import check_mpp

__all__ = [
    "METHODS",
    "STAGES",
    "RunSettings",
    "check_run_config",
    "differing_keys",
    "load_json",
    "read_run_config",
    "resolve_run_settings",
]

#: Training methods: WS-DAL's four stages, or plain cross-entropy on the same patches.
METHODS = ("wsdal", "baseline")
#: WS-DAL's stages, in order.
STAGES = ("ns", "dmu", "dle", "csdgl")


@dataclass(frozen=True)
class RunSettings:
    """Everything that defines a run (``RUN/config.json``).

    Attributes
    ----------
    method : {"wsdal", "baseline"}
    preset : Preset
    seed : int
    val_fraction : float
        Fraction of the images (slides) held out for validation.
    source : str or None
        The annotation source (None for a run on a ready-made store).
    mpp : float or None
        Resolution given for slides without one (µm/px).
    pretrained : str or None
        ResNet-18 weights the trunks start from (None: random init).
    init_model : str or None
        An earlier wsdal model file (``--init RUN/model.pt``): every stage's trunk
        starts from its trunk (fine-tuning after a review round) instead of
        ``pretrained``/ImageNet/random weights.
    classes : ClassSettings
        What each annotation class means (which clicks are mitoses, look-alikes,
        regions, left out); stored in the model file for prediction.
    """

    method: str = METHODS[0]
    preset: Preset = field(default_factory=lambda: get_preset(DEFAULT_PRESET))
    seed: int = 0
    val_fraction: float = 0.2
    source: str | None = None
    mpp: float | None = None
    pretrained: str | None = None
    classes: ClassSettings = field(default_factory=ClassSettings)
    init_model: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.mpp is not None:
            object.__setattr__(self, "mpp", check_mpp(self.mpp, what="--mpp"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "preset": self.preset.to_dict(),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "source": self.source,
            "mpp": self.mpp,
            "pretrained": self.pretrained,
            "classes": self.classes.to_dict(),
            "init_model": self.init_model,
        }


def read_run_config(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``config.json`` of a run folder, or None when there is none."""
    return load_json(Path(out_dir) / "config.json")


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ (``preset.extract.snap_um``)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [prefix or "settings"] if old != new else []
    out: list[str] = []
    for k in [*new, *(k for k in old if k not in new)]:
        name = f"{prefix}.{k}" if prefix else str(k)
        if k not in old:
            out.append(f"{name} (new)")
        elif k not in new:
            out.append(f"{name} (gone)")
        else:
            out += differing_keys(old[k], new[k], name)
    return out


def check_run_config(out_dir: Path, settings: RunSettings, *, resume: bool) -> None:
    """Refuse a run folder that holds another run; write ``config.json`` for a new one.

    Raises
    ------
    ConfigError
        ``out_dir`` holds a run and ``resume`` is False, or it holds a run with
        other settings (each differing field named), or it is not empty.
    """
    path = out_dir / "config.json"
    new = json.loads(json.dumps(settings.to_dict()))
    if path.is_file():
        if not resume:
            raise ConfigError(
                f"{out_dir} already holds a training run; pass --resume to continue it "
                "or choose another --out folder"
            )
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TrainingError(f"{path}: unreadable ({exc})") from exc
        # a setting an older run's config.json does not record had its default then
        defaults = json.loads(json.dumps(RunSettings(preset=settings.preset).to_dict()))
        old_settings = {k: old.get(k, defaults[k]) for k in new}
        if isinstance(old_settings.get("preset"), dict):  # a preset field added since: its default
            old_settings["preset"] = json.loads(
                json.dumps(Preset.from_dict(old_settings["preset"]).to_dict())
            )
        if old_settings != new:
            diff = differing_keys(old_settings, new)
            raise ConfigError(
                f"{out_dir}: --resume with other settings than the run was started with "
                f"(differs: {', '.join(diff)}); use the original options or a new --out folder"
            )
        return
    if out_dir.exists() and any(p.name != "store" for p in out_dir.iterdir()) and not resume:
        raise ConfigError(f"{out_dir} is not empty; choose an empty or new --out folder")
    write_json_atomic(path, {**new, "created_by": provenance()})


def load_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def resolve_run_settings(
    out_dir: str | Path,
    *,
    resume: bool,
    preset: str | None = None,
    method: str | None = None,
    seed: int | None = None,
    val_fraction: float | None = None,
    stain_jitter: float | None = None,
    stain_normalise: bool | None = None,
    mpp: float | None = None,
    pretrained: str | Path | None = None,
    init_model: str | Path | None = None,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    region: Sequence[str] = (),
    ignored: Sequence[str] = (),
    unclassified_as: str | None = None,
) -> RunSettings:
    """The settings a ``wsdal train`` command means.

    An option given (not None; for the class roles, a non-empty list) wins.
    Otherwise, with ``resume`` and a ``config.json`` in ``out_dir``, the run's own
    value; otherwise the default of :class:`RunSettings`. ``stain_jitter`` and
    ``stain_normalise`` replace the preset's (:attr:`Preset.stain_jitter`,
    :attr:`ExtractSettings.stain_normalise`).

    Raises
    ------
    ConfigError
        An unknown preset or method, or a value out of range.
    """
    old = read_run_config(out_dir) if resume else None
    given: dict[str, Any] = {
        "method": method,
        "seed": seed,
        "val_fraction": val_fraction,
        "mpp": mpp,
        "pretrained": None if pretrained is None else str(pretrained),
        "init_model": None if init_model is None else str(init_model),
    }
    kw: dict[str, Any] = {}
    for name, value in given.items():
        if value is not None:
            kw[name] = value
        elif old is not None and old.get(name) is not None:
            kw[name] = old[name]
    if preset is not None:
        kw["preset"] = get_preset(preset)
    elif old is not None and isinstance(old.get("preset"), dict):
        kw["preset"] = Preset.from_dict(old["preset"])
    if stain_jitter is not None:
        base = kw.get("preset", RunSettings().preset)
        kw["preset"] = base.replace(stain_jitter=float(stain_jitter))
    if stain_normalise is not None:
        base = kw.get("preset", RunSettings().preset)
        kw["preset"] = base.replace(**{"extract.stain_normalise": bool(stain_normalise)})
    old_classes = old.get("classes") if old is not None else None
    kw["classes"] = ClassSettings.from_options(
        positive=positive,
        negative=negative,
        region=region,
        ignored=ignored,
        unclassified_as=unclassified_as,
        base=ClassSettings.from_dict(old_classes) if isinstance(old_classes, dict) else None,
    )
    return RunSettings(**kw)
