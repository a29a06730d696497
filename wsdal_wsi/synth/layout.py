"""The layout of a synthetic slide: tissue pieces, holes, tumour nests, hotspots.

:func:`make_fields` draws the slide's coarse fields from its seed
(:mod:`wsdal_wsi.synth.fields`): tissue pieces with irregular borders and
holes, tumour regions split into nests by stroma strands, mitotic hotspots,
slow stain variation, fibre orientation and cellularity. Thresholds are folded
into the fields, so a border is where a field crosses 0;
:func:`tissue_value` and :func:`tumour_value` add the fine border roughness
of the textures and are what both the renderer and the object placement use,
so objects lie where the pixels show tissue and tumour.
"""

from __future__ import annotations

import math

import numpy as np

from wsdal_wsi.synth.fields import (
    FINE_FIELDS,
    SLOW_FIELDS,
    CoarseFields,
    TextureBank,
    interp_points,
    make_textures,
    node_quantile,
    smooth_noise,
)
from wsdal_wsi.synth.objects import slide_rng
from wsdal_wsi.synth.params import SynthParams
from wsdal_wsi.units import um_to_px

__all__ = [
    "EDGE_UM",
    "GRID_UM",
    "TEXTURE_PERIOD_PX",
    "inside_tissue",
    "make_bank",
    "make_fields",
    "tissue_value",
    "tumour_value",
]

#: Coarse grid spacing (µm) and fine-texture period (px).
GRID_UM = 8.0
TEXTURE_PERIOD_PX = 1024
#: Border roughness amplitude (µm) of tissue, holes and tumour nests.
EDGE_UM = (9.0, 5.0, 4.0)


def _node_distance_um(rows: int, cols: int, cell_um: float, w_um: float, h_um: float) -> np.ndarray:
    y = np.arange(rows, dtype=np.float32)[:, None] * np.float32(cell_um)
    x = np.arange(cols, dtype=np.float32)[None, :] * np.float32(cell_um)
    return np.minimum(np.minimum(x, np.float32(w_um) - x), np.minimum(y, np.float32(h_um) - y))


def make_fields(params: SynthParams, seed: int) -> tuple[CoarseFields, CoarseFields, float, float]:
    """Draw the slide's coarse fields.

    Returns
    -------
    fine : CoarseFields
        :data:`~wsdal_wsi.synth.fields.FINE_FIELDS` on a grid of about
        :data:`GRID_UM` (thresholds folded in: borders where a field is 0).
    slow : CoarseFields
        :data:`~wsdal_wsi.synth.fields.SLOW_FIELDS` on a 4x coarser grid.
    tissue_fraction, tumour_fraction : float
        Fractions of the slide's grid nodes in tissue (not in holes), and in
        tumour nests.
    """
    rng = slide_rng(seed, "fields")
    mpp = params.mpp
    cell_px = max(2, round(um_to_px(GRID_UM, mpp)))
    cell_um = cell_px * mpp
    rows = math.ceil(params.height_px / cell_px) + 2
    cols = math.ceil(params.width_px / cell_px) + 2
    w_um, h_um = params.width_px * mpp, params.height_px * mpp
    size_um = min(w_um, h_um)
    shape = (rows, cols)
    dist = _node_distance_um(rows, cols, cell_um, w_um, h_um)
    inside = dist > 0

    # Tissue: lobed pieces, pushed away from the slide border.
    scale_t = float(np.clip(size_um / 2.5, 150.0, 4000.0))
    tissue = smooth_noise(rng, shape, scale_cells=scale_t / cell_um) * np.float32(scale_t / 2.5)
    tissue += smooth_noise(rng, shape, scale_cells=scale_t / 4 / cell_um) * np.float32(scale_t / 12)
    tissue -= np.float32(scale_t / 2.5 * 2.2) * np.exp(-dist / np.float32(0.07 * size_um))
    del dist
    hole_frac = 0.05
    frac = min(0.97, params.tissue_fraction / (1 - hole_frac))
    tissue -= np.float32(node_quantile(tissue, inside, 1.0 - frac))
    in_tissue = inside & (tissue > 0)
    if not in_tissue.any():  # degenerate tiny slide: keep the centre
        in_tissue = inside
    # Holes (fat, vessels) inside the tissue.
    scale_h = 90.0
    hole = smooth_noise(rng, shape, scale_cells=scale_h / cell_um) * np.float32(scale_h / 2.5)
    hole -= np.float32(node_quantile(hole, in_tissue, 1.0 - hole_frac))
    tissue_nodes = in_tissue & (hole < 0)
    del in_tissue
    # Tumour: regions of tumour, within them nests separated by stroma strands.
    scale_u = float(np.clip(size_um / 3.0, 150.0, 1500.0))
    tumour = smooth_noise(rng, shape, scale_cells=scale_u / cell_um) * np.float32(scale_u / 2.5)
    scale_n = 55.0
    nest = smooth_noise(rng, shape, scale_cells=scale_n / cell_um) * np.float32(scale_n / 2.5)
    nest_keep = 0.82
    nest -= np.float32(node_quantile(nest, tissue_nodes, 1.0 - nest_keep))
    region_frac = min(1.0, params.tumour_fraction / nest_keep)
    if region_frac >= 1.0:
        tumour[:] = np.float32(scale_u)
    else:
        tumour -= np.float32(node_quantile(tumour, tissue_nodes, 1.0 - region_frac))
    np.minimum(tumour, nest, out=tumour)
    del nest
    tissue_frac = float(tissue_nodes.sum()) / float(inside.sum())
    tumour_frac = float((tissue_nodes & (tumour > 0)).sum()) / float(inside.sum())
    del tissue_nodes, inside
    fine = np.stack([tissue, hole, tumour])
    del tissue, hole, tumour

    # Slow fields on a 4x coarser grid.
    slow_cell_px = 4 * cell_px
    slow_um = slow_cell_px * mpp
    slow_shape = (
        math.ceil(params.height_px / slow_cell_px) + 2,
        math.ceil(params.width_px / slow_cell_px) + 2,
    )

    def slow_noise(scale_um: float) -> np.ndarray:
        return smooth_noise(rng, slow_shape, scale_cells=scale_um / slow_um)

    v = params.stain_variation
    hot = np.exp(0.9 * slow_noise(600.0))
    stain_h = np.exp(0.07 * v * slow_noise(1500.0))
    stain_e = np.exp(0.10 * v * slow_noise(1500.0))
    theta = (0.5 * np.arctan2(slow_noise(250.0), slow_noise(250.0))) % np.pi
    weights = np.stack([np.cos(theta - k * np.pi / 3) ** 8 for k in range(3)])
    weights /= weights.sum(axis=0, keepdims=True)
    cell = np.clip(0.80 + 0.10 * slow_noise(200.0), 0.5, 0.97)
    by_name = {
        "hotspot": hot,
        "stain_h": stain_h,
        "stain_e": stain_e,
        "fib0": weights[0],
        "fib1": weights[1],
        "fib2": weights[2],
        "fib_angle": theta,
        "cellularity": cell,
    }
    slow = np.stack([by_name[n] for n in SLOW_FIELDS]).astype(np.float32)
    return (
        CoarseFields(data=fine, cell_px=cell_px, names=FINE_FIELDS),
        CoarseFields(data=slow, cell_px=slow_cell_px, names=SLOW_FIELDS),
        tissue_frac,
        tumour_frac,
    )


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


def make_bank(params: SynthParams, seed: int) -> TextureBank:
    """The slide's periodic textures (see :func:`wsdal_wsi.synth.fields.make_textures`)."""
    return make_textures(slide_rng(seed, "textures"), mpp=params.mpp, period_px=TEXTURE_PERIOD_PX)
