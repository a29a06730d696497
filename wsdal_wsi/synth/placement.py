"""Placing the special objects of a slide: mitoses, apoptotic bodies, pyknotic nuclei, lymphocytes.

Mitoses lie in tumour nests, denser in hotspots; apoptotic bodies in tumour
(mildly following the hotspots); pyknotic nuclei in tumour and stroma;
lymphocytes in clusters of 3-30, mostly in stroma. Every object keeps a
minimum distance from the others (by kind), and a share of each kind is
"hard" (ambiguous mitoses, borderline look-alikes). Counts are Poisson around
the requested density times the tissue area.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from wsdal_wsi.synth.fields import CoarseFields, TextureBank, interp_points
from wsdal_wsi.synth.layout import tissue_value, tumour_value
from wsdal_wsi.synth.objects import (
    KIND_APOPTOTIC,
    KIND_LYMPHOCYTE,
    KIND_MITOSIS,
    KIND_PYKNOTIC,
    Objects,
    slide_rng,
)
from wsdal_wsi.synth.params import SynthParams
from wsdal_wsi.units import um_to_px

__all__ = ["place_objects"]

logger = logging.getLogger(__name__)

_PHASE_P_NORMAL = np.array([0.20, 0.33, 0.12, 0.15, 0.20])
_PHASE_P_HARD = np.array([0.3, 0.3, 0.4])

#: Exclusion radius (µm) of each kind: two objects stay r_a + r_b apart.
_EXCL_UM = np.array([7.0, 6.0, 5.0, 3.3])


class _Placer:
    """Sequential placement with a minimum distance between objects (spatial hash)."""

    def __init__(self, cell_px: float) -> None:
        self.cell = cell_px
        self.grid: dict[tuple[int, int], list[int]] = {}
        self.xy: list[tuple[float, float]] = []
        self.r: list[float] = []

    def try_add(self, x: float, y: float, r: float) -> bool:
        ci, cj = int(y // self.cell), int(x // self.cell)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                for k in self.grid.get((ci + di, cj + dj), ()):
                    ox, oy = self.xy[k]
                    if (ox - x) ** 2 + (oy - y) ** 2 < (self.r[k] + r) ** 2:
                        return False
        self.grid.setdefault((ci, cj), []).append(len(self.xy))
        self.xy.append((x, y))
        self.r.append(r)
        return True


def _sample_points(rng, n, accept, placer, r_px, bounds, *, max_rounds=60) -> np.ndarray:
    """Up to ``n`` points with acceptance probability ``accept(xy)``, spaced by ``placer``."""
    x0, y0, x1, y1 = bounds
    out: list[tuple[float, float]] = []
    for _ in range(max_rounds):
        if len(out) >= n:
            break
        m = max(256, 4 * (n - len(out)))
        xy = np.column_stack([rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)])
        keep = rng.uniform(0, 1, m) < accept(xy)
        for x, y in xy[keep]:
            if placer.try_add(float(x), float(y), r_px):
                out.append((float(x), float(y)))
                if len(out) >= n:
                    break
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _objects(xy, kind, variant, hard, rng, *, cluster=None) -> Objects:
    n = len(xy)
    dark = np.clip(rng.normal(1.0, 0.12, n), 0.7, 1.35).astype(np.float32)
    return Objects(
        xy=np.asarray(xy, dtype=np.float64).reshape(-1, 2),
        kind=np.full(n, kind, dtype=np.int8),
        variant=np.asarray(variant, dtype=np.int8),
        hard=np.asarray(hard, dtype=bool),
        angle=rng.uniform(0, np.pi, n).astype(np.float32),
        size=np.clip(rng.normal(1.0, 0.1, n), 0.75, 1.3).astype(np.float32),
        dark=dark,
        cluster=np.full(n, -1, dtype=np.int32) if cluster is None else cluster.astype(np.int32),
    )


def place_objects(
    params: SynthParams,
    seed: int,
    fields: CoarseFields,
    slow: CoarseFields,
    bank: TextureBank,
    tissue_mm2: float,
) -> Objects:
    """Place every special object of a slide (mitoses first, then look-alikes).

    Parameters
    ----------
    params : SynthParams
        Densities, mix, hard fraction, size.
    seed : int
        The slide's seed (stream ``"objects"``).
    fields, slow : CoarseFields
        The slide's border-defining and slow fields.
    bank : TextureBank
        The slide's textures (border roughness).
    tissue_mm2 : float
        Tissue area: expected counts are density x this.
    """
    rng = slide_rng(seed, "objects")
    mpp = params.mpp
    w, h = params.width_px, params.height_px
    margin = um_to_px(12.0, mpp)
    bounds = (margin, margin, w - margin, h - margin)
    placer = _Placer(um_to_px(16.0, mpp))
    excl = [um_to_px(r, mpp) for r in _EXCL_UM]
    hot_max = float(np.asarray(slow.field("hotspot")).max())
    share = np.asarray(params.lookalike_mix) / sum(params.lookalike_mix)
    # Counts are Poisson around density x tissue area, so slides differ like real ones.
    n_mit = int(rng.poisson(params.mitoses_per_mm2 * tissue_mm2))
    n_look = params.lookalikes_per_mm2 * tissue_mm2
    n_apo, n_pyk, n_lym = (int(n) for n in rng.poisson(n_look * share))
    hard_p = params.hard_fraction

    def in_tumour(xy: np.ndarray) -> np.ndarray:
        ok = (tissue_value(fields, bank, xy, mpp) > 6.0) & (
            tumour_value(fields, bank, xy, mpp) > 3.0
        )
        return ok.astype(np.float64)

    def in_stroma(xy: np.ndarray) -> np.ndarray:
        ok = (tissue_value(fields, bank, xy, mpp) > 6.0) & (
            tumour_value(fields, bank, xy, mpp) < -2.0
        )
        return ok.astype(np.float64)

    def mitosis_accept(xy: np.ndarray) -> np.ndarray:
        return in_tumour(xy) * interp_points(slow, "hotspot", xy) / hot_max

    parts = []
    xy = _sample_points(rng, n_mit, mitosis_accept, placer, excl[0], bounds)
    hard = rng.uniform(0, 1, len(xy)) < hard_p
    var = np.where(
        hard, 5 + rng.choice(3, len(xy), p=_PHASE_P_HARD), rng.choice(5, len(xy), p=_PHASE_P_NORMAL)
    )
    parts.append(_objects(xy, KIND_MITOSIS, var, hard, rng))

    def apo_accept(xy: np.ndarray) -> np.ndarray:
        return in_tumour(xy) * np.sqrt(interp_points(slow, "hotspot", xy) / hot_max)

    xy = _sample_points(rng, n_apo, apo_accept, placer, excl[1], bounds)
    hard = rng.uniform(0, 1, len(xy)) < hard_p
    var = np.where(hard, 2, rng.choice(2, len(xy), p=[0.55, 0.45]))
    parts.append(_objects(xy, KIND_APOPTOTIC, var, hard, rng))

    def pyk_accept(xy: np.ndarray) -> np.ndarray:
        return np.maximum(in_tumour(xy), 0.4 * in_stroma(xy))

    xy = _sample_points(rng, n_pyk, pyk_accept, placer, excl[2], bounds)
    hard = rng.uniform(0, 1, len(xy)) < hard_p
    var = np.where(hard, 1 + rng.choice(2, len(xy)), 0)
    parts.append(_objects(xy, KIND_PYKNOTIC, var, hard, rng))

    parts.append(
        _place_lymphocytes(
            rng, n_lym, fields, bank, placer, excl[3], bounds, params, in_stroma, in_tumour
        )
    )
    objects = Objects.concat(parts)
    short = {"mitoses": n_mit - int((objects.kind == 0).sum())}
    if short["mitoses"] > 0:
        logger.warning(
            "only %d of %d mitoses fit in the tumour area", n_mit - short["mitoses"], n_mit
        )
    return objects


def _place_lymphocytes(rng, n, fields, bank, placer, r_px, bounds, params, in_stroma, in_tumour):
    mpp = params.mpp
    xy_all: list[np.ndarray] = []
    cluster_ids: list[np.ndarray] = []
    total, cid, tries = 0, 0, 0
    while total < n and tries < 50 + 10 * n:
        tries += 1
        centre = _sample_points(
            rng,
            1,
            lambda xy: np.maximum(in_stroma(xy), 0.25 * in_tumour(xy)),
            _Placer(1e9),
            0.0,
            bounds,
            max_rounds=5,
        )
        if len(centre) == 0:
            continue
        size = int(np.clip(3 + rng.poisson(7), 3, 30))
        size = min(size, n - total)
        radius = um_to_px(4.5 * math.sqrt(size) + 3.0, mpp)
        cx, cy = centre[0]
        members: list[tuple[float, float]] = []
        for _ in range(12 * size):
            if len(members) >= size:
                break
            ang, rad = rng.uniform(0, 2 * np.pi), radius * math.sqrt(rng.uniform(0, 1))
            x, y = cx + rad * math.cos(ang), cy + rad * math.sin(ang)
            if not (bounds[0] <= x < bounds[2] and bounds[1] <= y < bounds[3]):
                continue
            if tissue_value(fields, bank, np.array([[x, y]]), mpp)[0] <= 3.0:
                continue
            if placer.try_add(x, y, r_px):
                members.append((x, y))
        if members:
            xy_all.append(np.asarray(members))
            cluster_ids.append(np.full(len(members), cid))
            cid += 1
            total += len(members)
    xy = np.concatenate(xy_all) if xy_all else np.zeros((0, 2))
    clusters = np.concatenate(cluster_ids) if cluster_ids else np.zeros(0, dtype=np.int32)
    hard = rng.uniform(0, 1, len(xy)) < params.hard_fraction * 0.5
    return _objects(xy, KIND_LYMPHOCYTE, hard.astype(np.int8), hard, rng, cluster=clusters)
