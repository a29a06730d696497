"""The plan of one synthetic slide: layout fields, look, and the objects with known truth.

:func:`make_plan` draws, from the slide's seed alone:

- the coarse fields (tissue pieces with irregular borders and holes, tumour
  nests separated by stroma strands, mitotic hotspots, slow stain variation,
  fibre orientation; :mod:`wsdal_wsi.synth.fields`);
- the slide's look (stain vectors, strengths, blur, JPEG quality;
  :mod:`wsdal_wsi.synth.stain`);
- every **special object**, i.e. every figure of the ground truth: mitoses (in
  tumour nests, denser in hotspots) and look-alikes (apoptotic bodies in
  tumour, pyknotic nuclei in tumour and stroma, lymphocytes in clusters mostly
  in stroma), kept apart from each other.

Ordinary nuclei are not part of the plan: they are drawn per block when a chunk
is rendered (:mod:`wsdal_wsi.synth.nuclei`), so memory does not grow with the
slide. The plan is small (fields on an 8 µm grid, objects as arrays) and is
pickled once per worker.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from wsdal_wsi.synth.fields import (
    FIELD_NAMES,
    CoarseFields,
    TextureBank,
    interp_points,
    make_textures,
    smooth_noise,
)
from wsdal_wsi.synth.params import LOOKALIKE_CLASSES, MITOSIS_CLASS, SynthParams
from wsdal_wsi.synth.stain import SlideLook, sample_look
from wsdal_wsi.units import px2_to_mm2, um_to_px

__all__ = [
    "KIND_NAMES",
    "MITOSIS_PHASES",
    "TAG",
    "VARIANT_NAMES",
    "Objects",
    "SlidePlan",
    "inside_tissue",
    "make_plan",
    "slide_rng",
    "tumour_value",
]

logger = logging.getLogger(__name__)

#: Truth class of each object kind code.
KIND_NAMES = (MITOSIS_CLASS, *LOOKALIKE_CLASSES)
KIND_MITOSIS, KIND_APOPTOTIC, KIND_PYKNOTIC, KIND_LYMPHOCYTE = 0, 1, 2, 3

#: Mitotic phase names by variant code; codes >= 5 are the ambiguous ("hard") ones.
MITOSIS_PHASES = (
    "prophase",
    "metaphase (edge-on)",
    "metaphase (face-on)",
    "anaphase",
    "telophase",
    "atypical (multipolar)",
    "atypical (lagging chromosomes)",
    "early prophase (ambiguous)",
)
_PHASE_P_NORMAL = np.array([0.20, 0.33, 0.12, 0.15, 0.20])
_PHASE_P_HARD = np.array([0.3, 0.3, 0.4])

#: Variant names of the look-alikes, by kind; the last ones are the borderline ("hard") ones.
VARIANT_NAMES = {
    KIND_APOPTOTIC: ("single fragment", "several fragments", "paired fragments (borderline)"),
    KIND_PYKNOTIC: ("round", "elongated (borderline)", "irregular (borderline)"),
    KIND_LYMPHOCYTE: ("small", "activated (borderline)"),
}

#: Stream tags of the slide's random generators (keep stable: they define the slides).
TAG = {
    "fields": 1,
    "look": 2,
    "textures": 3,
    "objects": 4,
    "nuclei": 5,
    "figure": 6,
    "annotate": 7,
    "sprites": 8,
}

#: Exclusion radius (µm) of each kind: two objects stay r_a + r_b apart.
_EXCL_UM = np.array([7.0, 6.0, 5.0, 3.3])

#: Coarse grid spacing (µm) and fine-texture period (px).
GRID_UM = 8.0
TEXTURE_PERIOD_PX = 1024
#: Border roughness amplitude (µm) of tissue, holes and tumour nests.
EDGE_UM = (9.0, 5.0, 4.0)


def slide_rng(seed: int, tag: str, *extra: int) -> np.random.Generator:
    """The slide's random stream ``tag`` (optionally per block / object index)."""
    return np.random.default_rng([int(seed), TAG[tag], *[int(e) + (1 << 40) for e in extra]])


@dataclass
class Objects:
    """The special objects of a slide (the ground truth), as parallel arrays.

    Attributes
    ----------
    xy : numpy.ndarray
        ``(N, 2)`` float64 level-0 ``(x, y)`` centre (for pairs: midpoint).
    kind : numpy.ndarray
        ``(N,)`` int8 kind code (index into :data:`KIND_NAMES`).
    variant : numpy.ndarray
        ``(N,)`` int8 phase (mitoses) or variant code (look-alikes).
    hard : numpy.ndarray
        ``(N,)`` bool: an ambiguous mitosis or a borderline look-alike.
    angle : numpy.ndarray
        ``(N,)`` float32 orientation (rad).
    size : numpy.ndarray
        ``(N,)`` float32 size factor (about 0.8-1.2).
    dark : numpy.ndarray
        ``(N,)`` float32 darkness factor (same distribution for every kind).
    cluster : numpy.ndarray
        ``(N,)`` int32 lymphocyte cluster id (-1 for other kinds).
    """

    xy: np.ndarray
    kind: np.ndarray
    variant: np.ndarray
    hard: np.ndarray
    angle: np.ndarray
    size: np.ndarray
    dark: np.ndarray
    cluster: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def concat(parts: list[Objects]) -> Objects:
        """Concatenate object arrays in order."""
        return Objects(
            **{
                f: np.concatenate([getattr(p, f) for p in parts])
                for f in Objects.__dataclass_fields__
            }
        )


@dataclass
class SlidePlan:
    """Everything needed to render one slide, independent of chunking.

    Attributes
    ----------
    name : str
        Slide name (file stem).
    seed : int
        The slide's seed.
    params : SynthParams
        Content settings.
    look : SlideLook
        This slide's appearance.
    fields : CoarseFields
        Layout fields (thresholds folded in: a boundary is where a field is 0).
    objects : Objects
        Every mitosis (first) and look-alike (after): the ground truth.
    tissue_area_mm2 : float
        Tissue area (holes excluded) estimated on the coarse grid.
    tumour_area_mm2 : float
        Tumour nest area estimated on the coarse grid.
    """

    name: str
    seed: int
    params: SynthParams
    look: SlideLook
    fields: CoarseFields
    objects: Objects
    tissue_area_mm2: float
    tumour_area_mm2: float
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def mpp(self) -> float:
        """Resolution (µm/px)."""
        return self.params.mpp


def _node_distance_um(rows: int, cols: int, cell_um: float, w_um: float, h_um: float) -> np.ndarray:
    y = np.arange(rows, dtype=np.float32)[:, None] * np.float32(cell_um)
    x = np.arange(cols, dtype=np.float32)[None, :] * np.float32(cell_um)
    return np.minimum(np.minimum(x, np.float32(w_um) - x), np.minimum(y, np.float32(h_um) - y))


def _make_fields(params: SynthParams, seed: int) -> tuple[CoarseFields, float, float]:
    """Draw the coarse fields; returns them with the tissue and tumour node fractions."""
    rng = slide_rng(seed, "fields")
    mpp = params.mpp
    cell_px = max(2, round(um_to_px(GRID_UM, mpp)))
    cell_um = cell_px * mpp
    rows = math.ceil(params.height_px / cell_px) + 2
    cols = math.ceil(params.width_px / cell_px) + 2
    w_um, h_um = params.width_px * mpp, params.height_px * mpp
    size_um = min(w_um, h_um)
    shape = (rows, cols)
    data = np.zeros((len(FIELD_NAMES), rows, cols), dtype=np.float32)
    dist = _node_distance_um(rows, cols, cell_um, w_um, h_um)
    inside = dist > 0

    # Tissue: lobed pieces, pushed away from the slide border.
    scale_t = float(np.clip(size_um / 2.5, 150.0, 4000.0))
    tissue = smooth_noise(rng, shape, scale_cells=scale_t / cell_um) * np.float32(scale_t / 2.5)
    tissue += smooth_noise(rng, shape, scale_cells=scale_t / 4 / cell_um) * np.float32(scale_t / 12)
    tissue -= np.float32(scale_t / 2.5 * 2.2) * np.exp(-dist / np.float32(0.07 * size_um))
    hole_frac = 0.05
    frac = min(0.97, params.tissue_fraction / (1 - hole_frac))
    thr = np.quantile(tissue[inside], 1.0 - frac)
    tissue -= np.float32(thr)
    in_tissue = inside & (tissue > 0)
    if not in_tissue.any():  # degenerate tiny slide: keep the centre
        in_tissue = inside
    # Holes (fat, vessels) inside the tissue.
    scale_h = 90.0
    hole = smooth_noise(rng, shape, scale_cells=scale_h / cell_um) * np.float32(scale_h / 2.5)
    hole -= np.float32(np.quantile(hole[in_tissue], 1.0 - hole_frac))
    tissue_nodes = in_tissue & (hole < 0)
    # Tumour: regions of tumour, within them nests separated by stroma strands.
    scale_u = float(np.clip(size_um / 3.0, 150.0, 1500.0))
    tum = smooth_noise(rng, shape, scale_cells=scale_u / cell_um) * np.float32(scale_u / 2.5)
    scale_n = 55.0
    nest = smooth_noise(rng, shape, scale_cells=scale_n / cell_um) * np.float32(scale_n / 2.5)
    nest_keep = 0.82
    nest -= np.float32(np.quantile(nest[tissue_nodes], 1.0 - nest_keep))
    region_frac = min(1.0, params.tumour_fraction / nest_keep)
    if region_frac >= 1.0:
        tum_region = np.full(shape, scale_u, dtype=np.float32)
    else:
        tum_region = tum - np.float32(np.quantile(tum[tissue_nodes], 1.0 - region_frac))
    tumour = np.minimum(tum_region, nest)
    hot = np.exp(0.9 * smooth_noise(rng, shape, scale_cells=600.0 / cell_um))
    v = params.stain_variation
    stain_h = np.exp(0.07 * v * smooth_noise(rng, shape, scale_cells=1500.0 / cell_um))
    stain_e = np.exp(0.10 * v * smooth_noise(rng, shape, scale_cells=1500.0 / cell_um))
    a1 = smooth_noise(rng, shape, scale_cells=250.0 / cell_um)
    a2 = smooth_noise(rng, shape, scale_cells=250.0 / cell_um)
    theta = (0.5 * np.arctan2(a2, a1)) % np.pi
    weights = np.stack([np.cos(theta - k * np.pi / 3) ** 8 for k in range(3)])
    weights /= weights.sum(axis=0, keepdims=True)
    cell = np.clip(0.80 + 0.10 * smooth_noise(rng, shape, scale_cells=200.0 / cell_um), 0.5, 0.97)
    for name, arr in (
        ("tissue", tissue),
        ("hole", hole),
        ("tumour", tumour),
        ("hotspot", hot),
        ("stain_h", stain_h),
        ("stain_e", stain_e),
        ("fib0", weights[0]),
        ("fib1", weights[1]),
        ("fib2", weights[2]),
        ("fib_angle", theta),
        ("cellularity", cell),
    ):
        data[FIELD_NAMES.index(name)] = arr
    tissue_frac = float(tissue_nodes.sum()) / float(inside.sum())
    tumour_frac = float((tissue_nodes & (tumour > 0)).sum()) / float(inside.sum())
    return CoarseFields(data=data, cell_px=cell_px), tissue_frac, tumour_frac


def tissue_value(fields: CoarseFields, bank: TextureBank, xy: np.ndarray, mpp: float) -> np.ndarray:
    """Signed tissue value (µm-like) at level-0 points ``(N, 2)``: > 0 in tissue, not in a hole."""
    t = interp_points(fields, "tissue", xy) + np.float32(EDGE_UM[0]) * bank.at("edge", xy)
    h = interp_points(fields, "hole", xy) + np.float32(EDGE_UM[1]) * bank.at("edge2", xy)
    return np.minimum(t, -h)


def tumour_value(fields: CoarseFields, bank: TextureBank, xy: np.ndarray, mpp: float) -> np.ndarray:
    """Signed tumour-nest value at level-0 points ``(N, 2)``: > 0 inside a nest."""
    u = interp_points(fields, "tumour", xy) - np.float32(EDGE_UM[2]) * bank.at("edge2", xy)
    return u


def inside_tissue(
    fields: CoarseFields, bank: TextureBank, xy: np.ndarray, mpp: float, *, margin_um: float = 0.0
) -> np.ndarray:
    """Whether level-0 points ``(N, 2)`` lie at least ``margin_um`` inside tissue."""
    return tissue_value(fields, bank, xy, mpp) > margin_um


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


def _place_objects(
    params: SynthParams, seed: int, fields: CoarseFields, bank: TextureBank, tissue_mm2: float
) -> Objects:
    rng = slide_rng(seed, "objects")
    mpp = params.mpp
    w, h = params.width_px, params.height_px
    margin = um_to_px(12.0, mpp)
    bounds = (margin, margin, w - margin, h - margin)
    placer = _Placer(um_to_px(16.0, mpp))
    excl = [um_to_px(r, mpp) for r in _EXCL_UM]
    hot_max = float(np.asarray(fields.field("hotspot")).max())
    share = np.asarray(params.lookalike_mix) / sum(params.lookalike_mix)
    n_mit = round(params.mitoses_per_mm2 * tissue_mm2)
    n_look = params.lookalikes_per_mm2 * tissue_mm2
    n_apo, n_pyk = round(n_look * share[0]), round(n_look * share[1])
    n_lym = round(n_look * share[2])
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
        return in_tumour(xy) * interp_points(fields, "hotspot", xy) / hot_max

    parts = []
    xy = _sample_points(rng, n_mit, mitosis_accept, placer, excl[0], bounds)
    hard = rng.uniform(0, 1, len(xy)) < hard_p
    var = np.where(
        hard, 5 + rng.choice(3, len(xy), p=_PHASE_P_HARD), rng.choice(5, len(xy), p=_PHASE_P_NORMAL)
    )
    parts.append(_objects(xy, KIND_MITOSIS, var, hard, rng))

    def apo_accept(xy: np.ndarray) -> np.ndarray:
        return in_tumour(xy) * np.sqrt(interp_points(fields, "hotspot", xy) / hot_max)

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


def make_bank(params: SynthParams, seed: int, *, pad_px: int) -> TextureBank:
    """The slide's periodic textures (see :func:`wsdal_wsi.synth.fields.make_textures`)."""
    return make_textures(
        slide_rng(seed, "textures"), mpp=params.mpp, period_px=TEXTURE_PERIOD_PX, pad_px=pad_px
    )


def make_plan(params: SynthParams, *, seed: int, name: str, bank: TextureBank) -> SlidePlan:
    """Draw the plan of one slide from its seed.

    Parameters
    ----------
    params : SynthParams
        Content settings (size, resolution, densities...).
    seed : int
        The slide's seed: the same seed and params give the same plan.
    name : str
        Slide name.
    bank : TextureBank
        The slide's textures (:func:`make_bank`), needed to place objects
        consistently with the rendered borders.
    """
    fields, tissue_frac, tumour_frac = _make_fields(params, seed)
    area_mm2 = px2_to_mm2(params.width_px * params.height_px, params.mpp)
    tissue_mm2 = tissue_frac * area_mm2
    look = sample_look(
        slide_rng(seed, "look"),
        stain_variation=params.stain_variation,
        blur_um=params.blur_um,
        jpeg_quality=params.jpeg_quality,
    )
    objects = _place_objects(params, seed, fields, bank, tissue_mm2)
    return SlidePlan(
        name=name,
        seed=int(seed),
        params=params,
        look=look,
        fields=fields,
        objects=objects,
        tissue_area_mm2=tissue_mm2,
        tumour_area_mm2=tumour_frac * area_mm2,
    )
