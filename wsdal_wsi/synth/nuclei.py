"""Ordinary nuclei: a per-slide sprite library, and nuclei drawn per block on demand.

Tumour nuclei (6-12 µm, round to oval, lumpy outlines, vesicular chromatin,
darker membrane, one or two nucleoli; a share hyperchromatic) and stromal
spindle nuclei (fibroblasts, aligned with the collagen) are pre-drawn once per
slide as a library of sparse sprites (:func:`make_nucleus_library`) and
reused with a random dihedral transform and stain gain.

Positions come from a global hexagonal lattice (12.5 µm) with jitter: the
lattice is cut into blocks, and block ``(bi, bj)`` draws its nuclei from its
own random stream (:func:`block_nuclei`), so a chunk only ever draws the
blocks it touches and the result does not depend on chunking. A lattice point
becomes a tumour nucleus inside tumour nests (with the local cellularity as
probability: several thousand nuclei per mm²), a spindle nucleus in stroma
with a small probability, nothing outside tissue; nuclei too close to a
special object (mitosis, look-alike) are dropped so the figures stand alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsdal_wsi.synth.fields import TextureBank, interp_points
from wsdal_wsi.synth.layout import tissue_value, tumour_value
from wsdal_wsi.synth.objects import slide_rng
from wsdal_wsi.synth.plan import SlidePlan
from wsdal_wsi.synth.shapes import grid, noise2d, rotate, soft_inside, wobbly_radius
from wsdal_wsi.synth.sprites import SpriteLib, StampSet, blur_sprites
from wsdal_wsi.units import um_to_px

__all__ = ["NucleusLibrary", "block_nuclei", "chunk_nuclei", "make_nucleus_library"]

#: Lattice spacing of nucleus positions (µm) and block size (lattice cells).
LATTICE_UM = 10.5
BLOCK_CELLS = 16
#: Sprites per library.
N_TUMOUR = 160
N_SPINDLE = 36
#: Probability of a spindle nucleus at a stromal lattice point.
STROMA_KEEP = 0.09
#: Share of hyperchromatic tumour nuclei and their extra darkness.
HYPER_SHARE, HYPER_GAIN = 0.07, 1.7


@dataclass
class NucleusLibrary:
    """Sprites of ordinary nuclei for one slide.

    Attributes
    ----------
    tumour : SpriteLib
        Tumour nucleus sprites (stamp sprite indices ``0 .. N_TUMOUR - 1``).
    spindle : SpriteLib
        Spindle nucleus sprites (stamp sprite indices ``N_TUMOUR + k``).
    spindle_angle : numpy.ndarray
        ``(N_SPINDLE,)`` float32 long-axis angle (rad) of each spindle sprite.
    """

    tumour: SpriteLib
    spindle: SpriteLib
    spindle_angle: np.ndarray

    @property
    def max_radius_px(self) -> int:
        """Largest sprite radius (px)."""
        return max(self.tumour.radius, self.spindle.radius)

    def split(self, stamps: StampSet) -> tuple[StampSet, StampSet]:
        """Stamps of tumour sprites, and of spindle sprites (re-indexed)."""
        is_sp = stamps.sprite >= N_TUMOUR
        tum = stamps.select(~is_sp)
        sp = stamps.select(is_sp)
        sp.sprite = sp.sprite - N_TUMOUR
        return tum, sp


def _tumour_sprites(rng: np.random.Generator, k: int, mpp: float) -> np.ndarray:
    size = 2 * math.ceil(um_to_px(7.5, mpp)) + 1
    yy, xx = grid(size)
    yy, xx = yy[None], xx[None]
    a = um_to_px(1.0, mpp) * rng.uniform(3.2, 5.6, (k, 1, 1)).astype(np.float32)  # semi-axis
    b = a * rng.uniform(0.65, 0.95, (k, 1, 1)).astype(np.float32)
    ang = rng.uniform(0, np.pi, (k, 1, 1)).astype(np.float32)
    u, v = rotate(xx, yy, ang)
    phi = np.arctan2(v / b, u / a)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobbly_radius(rng, phi, 0.12, batch=(k,))
    inside = soft_inside((rho - 1.0) * a, um_to_px(0.22, mpp))
    fine = noise2d(rng, (k, size, size), um_to_px(0.3, mpp))
    coarse = noise2d(rng, (k, size, size), um_to_px(0.9, mpp))
    base = rng.uniform(0.28, 0.45, (k, 1, 1)).astype(np.float32)
    vesic = rng.uniform(0.1, 0.45, (k, 1, 1)).astype(np.float32)  # chromatin clearing
    chrom = 1.0 + 0.30 * fine + 0.25 * coarse - vesic * np.exp(-((rho / 0.7) ** 2))
    chrom = np.clip(chrom, 0.15, None)
    rim = np.exp(-(((rho - 0.93) / 0.09) ** 2)) * rng.uniform(0.6, 1.2, (k, 1, 1)).astype(
        np.float32
    )
    h = inside * base * chrom + base * rim * inside.max(axis=(1, 2), keepdims=True) * 0.9
    e = 0.04 * inside
    # Nucleoli: magenta dots (haematoxylin and eosin), one or two per nucleus.
    for j in range(2):
        present = (rng.uniform(0, 1, (k, 1, 1)) < (0.85 if j == 0 else 0.35)).astype(np.float32)
        r = rng.uniform(0, 0.45, (k, 1, 1)).astype(np.float32)
        t = rng.uniform(0, 2 * np.pi, (k, 1, 1)).astype(np.float32)
        ny, nx = r * b * np.sin(t), r * a * np.cos(t)
        nr = um_to_px(1.0, mpp) * rng.uniform(0.45, 0.85, (k, 1, 1)).astype(np.float32)
        d2 = ((xx - nx) ** 2 + (yy - ny) ** 2) / (nr * nr)
        spot = present * np.exp(-d2 * 1.6)
        h = h + 0.28 * spot
        e = e + 0.55 * spot
    m = 0.75 * inside
    return np.stack([h, e, m], axis=1).astype(np.float32)


def _spindle_sprites(rng: np.random.Generator, k: int, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    size = 2 * math.ceil(um_to_px(9.5, mpp)) + 1
    yy, xx = grid(size)
    yy, xx = yy[None], xx[None]
    ang = ((np.arange(k) + rng.uniform(0, 1, k)) * np.pi / k).astype(np.float32)
    a = um_to_px(1.0, mpp) * rng.uniform(5.0, 8.5, (k, 1, 1)).astype(np.float32)
    b = um_to_px(1.0, mpp) * rng.uniform(1.1, 1.9, (k, 1, 1)).astype(np.float32)
    u, v = rotate(xx, yy, ang[:, None, None])
    bend = rng.normal(0, 0.08, (k, 1, 1)).astype(np.float32)
    v = v - bend * (u * u) / a
    taper = np.clip(1.0 - 0.55 * (u / a) ** 2, 0.2, 1.0)
    rho = np.sqrt((u / a) ** 2 + (v / (b * taper)) ** 2)
    inside = soft_inside((rho - 1.0) * b, um_to_px(0.18, mpp))
    tex = 1.0 + 0.2 * noise2d(rng, (k, size, size), um_to_px(0.4, mpp))
    base = rng.uniform(0.42, 0.6, (k, 1, 1)).astype(np.float32)
    h = inside * base * tex
    e = 0.03 * inside
    m = 0.6 * inside
    return np.stack([h, e, m], axis=1).astype(np.float32), ang


def make_nucleus_library(seed: int, mpp: float, *, blur_px: float = 0.0) -> NucleusLibrary:
    """Draw the slide's ordinary-nucleus sprites (deterministic in ``seed``).

    Parameters
    ----------
    seed : int
        The slide's seed.
    mpp : float
        Resolution (µm/px).
    blur_px : float
        The slide's focus blur (Gaussian sigma, px), applied to the sprites.
    """
    rng = slide_rng(seed, "sprites")
    tumour = SpriteLib(blur_sprites(_tumour_sprites(rng, N_TUMOUR, mpp), blur_px))
    spindle_dense, angles = _spindle_sprites(rng, N_SPINDLE, mpp)
    spindle = SpriteLib(blur_sprites(spindle_dense, blur_px))
    return NucleusLibrary(tumour=tumour, spindle=spindle, spindle_angle=angles)


def _lattice(mpp: float) -> tuple[float, float]:
    a = um_to_px(LATTICE_UM, mpp)
    return a, a * math.sqrt(3.0) / 2.0


def block_nuclei(
    plan: SlidePlan, bank: TextureBank, library: NucleusLibrary, bi: int, bj: int
) -> StampSet:
    """The ordinary nuclei of lattice block ``(bi, bj)`` (block rows, cols).

    Returns
    -------
    StampSet
        Level-0 centres, sprite indices, transforms and gains of the block's
        nuclei (not yet filtered against special objects).
    """
    mpp = plan.mpp
    a, row_h = _lattice(mpp)
    rng = slide_rng(plan.seed, "nuclei", bi, bj)
    r = np.repeat(np.arange(bi * BLOCK_CELLS, (bi + 1) * BLOCK_CELLS), BLOCK_CELLS)
    c = np.tile(np.arange(bj * BLOCK_CELLS, (bj + 1) * BLOCK_CELLS), BLOCK_CELLS)
    n = len(r)
    jit = rng.uniform(-0.3, 0.3, (n, 2)) * a
    xy = np.column_stack([(c + 0.5 * (r % 2)) * a, r * row_h]) + jit
    u = rng.uniform(0, 1, n)
    pick = rng.integers(0, 1 << 30, n)
    gain = np.exp(rng.normal(0.0, 0.16, n)).astype(np.float32)
    hyper = rng.uniform(0, 1, n) < HYPER_SHARE
    tform = rng.integers(0, 8, n).astype(np.int8)
    w, h = plan.params.width_px, plan.params.height_px
    ok = (xy[:, 0] > -a) & (xy[:, 0] < w + a) & (xy[:, 1] > -a) & (xy[:, 1] < h + a)
    xy, u, pick, gain, hyper, tform = xy[ok], u[ok], pick[ok], gain[ok], hyper[ok], tform[ok]
    if len(xy) == 0:
        return _empty()
    fields = plan.fields
    tis = tissue_value(fields, bank, xy, mpp)
    tum = tumour_value(fields, bank, xy, mpp)
    cell = interp_points(plan.slow, "cellularity", xy)
    is_tum = (tis > 1.5) & (tum > 0.0) & (u < cell)
    is_spin = (tis > 2.0) & (tum <= 0.0) & (u < STROMA_KEEP)
    sprite = np.where(is_tum, pick % N_TUMOUR, 0)
    if is_spin.any():
        theta = interp_points(plan.slow, "fib_angle", xy[is_spin]) + rng.normal(
            0, 0.15, is_spin.sum()
        )
        idx = np.round((theta % np.pi) / np.pi * N_SPINDLE).astype(np.int64) % N_SPINDLE
        sprite[is_spin] = N_TUMOUR + idx
        tform[is_spin] = 0
    gain = np.where(is_tum & hyper, gain * HYPER_GAIN, gain).astype(np.float32)
    keep = is_tum | is_spin
    return StampSet(
        cx=np.round(xy[keep, 0]).astype(np.int64),
        cy=np.round(xy[keep, 1]).astype(np.int64),
        sprite=sprite[keep].astype(np.int64),
        transform=tform[keep],
        gain=gain[keep],
    )


def _empty() -> StampSet:
    z = np.zeros(0, dtype=np.int64)
    return StampSet(
        cx=z,
        cy=z.copy(),
        sprite=z.copy(),
        transform=np.zeros(0, dtype=np.int8),
        gain=np.zeros(0, dtype=np.float32),
    )


def chunk_nuclei(
    plan: SlidePlan,
    bank: TextureBank,
    library: NucleusLibrary,
    x0: int,
    y0: int,
    w: int,
    h: int,
    *,
    avoid_xy: np.ndarray,
    avoid_r_px: np.ndarray,
    cache: dict | None = None,
) -> StampSet:
    """The ordinary nuclei that touch the level-0 window ``(x0, y0, w, h)``.

    Parameters
    ----------
    avoid_xy : numpy.ndarray
        ``(K, 2)`` level-0 centres of special objects near the window.
    avoid_r_px : numpy.ndarray
        ``(K,)`` float radius (px) around each kept free of ordinary nuclei.
    cache : dict, optional
        Block cache (the caller's, per slide), so neighbouring chunks do not
        redraw shared blocks.
    """
    a, row_h = _lattice(plan.mpp)
    pad = library.max_radius_px + a
    bw, bh = BLOCK_CELLS * a, BLOCK_CELLS * row_h
    bj0, bj1 = math.floor((x0 - pad) / bw), math.floor((x0 + w + pad) / bw)
    bi0, bi1 = math.floor((y0 - pad) / bh), math.floor((y0 + h + pad) / bh)
    parts = []
    for bi in range(bi0, bi1 + 1):
        for bj in range(bj0, bj1 + 1):
            key = (bi, bj)
            blk = cache.get(key) if cache is not None else None
            if blk is None:
                blk = block_nuclei(plan, bank, library, bi, bj)
                if cache is not None:
                    if len(cache) > 256:
                        cache.pop(next(iter(cache)))
                    cache[key] = blk
            parts.append(blk)
    st = StampSet.concat(parts)
    rad = np.where(st.sprite < N_TUMOUR, library.tumour.radius, library.spindle.radius)
    keep = (
        (st.cx + rad >= x0) & (st.cx - rad < x0 + w) & (st.cy + rad >= y0) & (st.cy - rad < y0 + h)
    )
    if len(avoid_xy) and keep.any():
        idx = np.nonzero(keep)[0]
        dx = st.cx[idx, None] - avoid_xy[None, :, 0]
        dy = st.cy[idx, None] - avoid_xy[None, :, 1]
        near = ((dx * dx + dy * dy) < (avoid_r_px[None, :] ** 2)).any(axis=1)
        keep[idx[near]] = False
    return st.select(keep)
