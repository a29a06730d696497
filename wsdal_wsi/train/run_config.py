"""The settings of a training run and its ``config.json``: written once, checked on resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import write_json_atomic
from wsdal_wsi.errors import ConfigError, TrainingError
from wsdal_wsi.provenance import provenance
from wsdal_wsi.train.presets import Preset

__all__ = ["RunSettings", "check_run_config", "differing_keys", "load_json", "read_run_config"]


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
    """

    method: str
    preset: Preset
    seed: int = 0
    val_fraction: float = 0.2
    source: str | None = None
    mpp: float | None = None
    pretrained: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "preset": self.preset.to_dict(),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "source": self.source,
            "mpp": self.mpp,
            "pretrained": self.pretrained,
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
        old_settings = {k: v for k, v in old.items() if k in new}
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
