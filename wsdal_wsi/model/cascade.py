"""The cascade's first stage in a model file: its network and its threshold table.

A model file may carry, beside the final network, a small first-stage network
(:class:`~wsdal_wsi.model.nets.CascadeNet`, distilled from the final model by
:mod:`wsdal_wsi.train.cascade`) under the payload key ``"cascade"``::

    {"spec": "<JSON text of CascadeSpec>", "state_dict": {name: tensor, ...}}

Inference scores every candidate with the first stage and only those at or above
the first-stage threshold with the final network (:class:`Cascade`). The threshold
depends on the probability threshold the detections must reach
(:meth:`CascadeSpec.first_threshold`): the table holds one per final threshold,
each chosen on the validation slides to keep at least ``keep_fraction`` of the
final model's detections there.

Files without the key (format version 1, and models trained before the cascade)
load as before and score every candidate with the final network; wsdal-wsi
versions older than the cascade read files with the key and ignore it (they score
every candidate: slower, and not fewer detections: the cut keeps 99.5 % of them on
the validation slides, and stopped 2.6 % of WS-DAL's on the 15 reporting runs of
2026-12-05; first stages distilled from the training slides' look only, before that
day's change, stopped more on slides that looked otherwise, e.g. 24 of 188 on the
``wsdal demo`` test slides).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from wsdal_wsi.errors import ConfigError

__all__ = ["Cascade", "CascadeSpec"]


@dataclass(frozen=True)
class CascadeSpec:
    """What the first stage is and where it lets candidates through.

    Attributes
    ----------
    arch : str
        Registry name of the network (``"cascade_cnn"``).
    arch_kwargs : dict
        Its constructor arguments.
    table : tuple of dict
        Ascending by ``final_threshold``; each row: ``final_threshold`` (p), its
        ``first_threshold`` (first-stage logit), and the validation figures
        ``detections``, ``kept`` and ``skipped_fraction``.
    keep_fraction : float
        Fraction of the final model's validation detections each row keeps (at least).
    provenance : dict
        Training statistics (JSON-able).
    """

    arch: str
    arch_kwargs: dict[str, Any]
    table: tuple[dict[str, Any], ...]
    keep_fraction: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = tuple(dict(r) for r in self.table)
        finals = [float(r.get("final_threshold", math.nan)) for r in rows]
        cuts = [float(r.get("first_threshold", math.nan)) for r in rows]
        if not rows or not all(math.isfinite(v) for v in finals + cuts):
            raise ConfigError("cascade table must have rows with finite thresholds")
        if finals != sorted(finals):
            raise ConfigError("cascade table must be sorted by final_threshold")
        object.__setattr__(self, "table", rows)

    def first_threshold(self, threshold: float) -> float | None:
        """The first-stage logit cut for detections at probability ``threshold``.

        The row of the largest ``final_threshold`` at or below ``threshold`` (its
        cut keeps the detections of any higher threshold too); ``None`` below the
        table: the cascade does not apply and every candidate gets the final model.
        """
        rows = [r for r in self.table if r["final_threshold"] <= threshold + 1e-12]
        return float(rows[-1]["first_threshold"]) if rows else None

    def row_for(self, threshold: float) -> dict[str, Any] | None:
        """The table row :meth:`first_threshold` uses (None below the table)."""
        rows = [r for r in self.table if r["final_threshold"] <= threshold + 1e-12]
        return rows[-1] if rows else None

    def to_json(self) -> str:
        try:
            return json.dumps(asdict(self), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cascade metadata is not JSON-serialisable ({exc})") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CascadeSpec:
        known = {"arch", "arch_kwargs", "table", "keep_fraction", "provenance"}
        kw = {k: v for k, v in data.items() if k in known}
        kw["table"] = tuple(kw.get("table", ()))
        return cls(**kw)


@dataclass
class Cascade:
    """A loaded first stage, ready for inference.

    Attributes
    ----------
    spec : CascadeSpec
    module : nn.Module
        The first-stage network (eval mode, batch norms folded, on the model's device).
    """

    spec: CascadeSpec
    module: nn.Module

    @torch.inference_mode()
    def logits(self, rgb: Tensor, normalise: Callable[[Tensor], Tensor]) -> Tensor:
        """``(N,)`` float32 first-stage logits of ``(N, 3, P, P)`` float RGB (0-255).

        The patches are pooled first, then normalised (``normalise``: the model's
        per-channel scale and shift), which is the same input at a quarter of the work.
        """
        return self.module.logit_pooled(normalise(self.module.pool(rgb))).float()
