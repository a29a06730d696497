"""Rendering a window of a synthetic slide, and the per-chunk job that workers run.

:class:`ChunkRenderer` turns a :class:`~wsdal_wsi.synth.layout.SlidePlan` into
pixels for any level-0 window; the result depends only on the plan and the
window, never on which process renders it or in which order. Per window it

1. interpolates the coarse fields and slices the periodic textures (tissue
   alpha with rough borders and holes, tumour nests with retraction clefts,
   collagen fibres blended by local orientation, granular cytoplasm);
2. stamps the ordinary nuclei of the blocks it touches and the special objects
   near it (:mod:`wsdal_wsi.synth.sprites`);
3. composes stain concentrations (the sprites carry the slide's focus blur),
   applies the slide's slow stain variation, and converts to RGB by
   Beer-Lambert with sensor noise
   (:func:`wsdal_wsi.synth.stain.od_to_rgb`).

Windows with no tissue are a constant background colour and cost nothing.

:func:`chunk_job` is the unit of parallel work: it renders one chunk, encodes
its JPEG tiles and returns them with the chunk downsampled 2x (for level 1 of
the pyramid). Workers load the plan once from a pickle file and keep the
renderer (textures, sprite libraries, caches) between jobs.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np

from wsdal_wsi.progress import ProgressTask
from wsdal_wsi.synth.fields import TextureBank, interp_blocks, interp_window
from wsdal_wsi.synth.figures import SPRITE_RADIUS_UM, render_object
from wsdal_wsi.synth.layout import EDGE_UM, make_bank
from wsdal_wsi.synth.nuclei import chunk_nuclei, make_nucleus_library
from wsdal_wsi.synth.objects import slide_rng
from wsdal_wsi.synth.plan import SlidePlan
from wsdal_wsi.synth.pyramid import Band, downsample2, encode_tiles
from wsdal_wsi.synth.sprites import Canvas, blur_sprites
from wsdal_wsi.synth.stain import od_to_rgb
from wsdal_wsi.units import um_to_px

__all__ = ["CHUNK_H_PX", "CHUNK_W_PX", "ChunkRenderer", "chunk_grid", "chunk_job", "iter_bands"]

#: Chunk (unit of parallel work) size in level-0 px; multiples of the tile size.
CHUNK_W_PX = 1024
CHUNK_H_PX = 512
#: Slow fields (stain strength, fibre orientation) are constant over blocks of (h, w) px.
BLOCK_PX = (8, 64)
#: Special-object sprites a renderer keeps (about 100 kB each at 0.25 µm/px).
FIGURE_CACHE = 512
#: Radius (µm) around each special object kept free of ordinary nuclei, by kind.
_AVOID_UM = np.array([9.5, 8.5, 6.0, 4.5])


class ChunkRenderer:
    """Renders level-0 windows of one planned slide.

    Parameters
    ----------
    plan : SlidePlan
        The slide.
    bank : TextureBank, optional
        The slide's textures (drawn from the plan's seed when not given).
    """

    def __init__(self, plan: SlidePlan, *, bank: TextureBank | None = None) -> None:
        self.plan = plan
        mpp = plan.mpp
        if bank is None:
            bank = make_bank(plan.params, plan.seed)
        self.bank = bank
        look = plan.look
        self.blur_px = look.blur_sigma_um / mpp
        self.nuclei = make_nucleus_library(plan.seed, mpp, blur_px=self.blur_px)
        self.block_cache: dict = {}
        self.figure_cache: dict[int, np.ndarray] = {}
        obj = plan.objects
        self._order = np.argsort(obj.xy[:, 1], kind="stable")
        self._ys = obj.xy[self._order, 1]
        self._fig_r = math.ceil(um_to_px(max(SPRITE_RADIUS_UM), mpp))
        self._avoid_px = np.array([um_to_px(r, mpp) for r in _AVOID_UM])
        rng = slide_rng(plan.seed, "look", 1)
        self.e_stroma = float(rng.uniform(0.42, 0.62))
        self.e_cyto = float(rng.uniform(0.22, 0.36))
        self.h_cyto = float(rng.uniform(0.07, 0.13))
        self.cleft = float(rng.uniform(0.2, 0.85))
        bg = np.exp(-np.log(10.0) * np.asarray(look.od_background)) * 255.0
        self.background = np.clip(np.round(bg), 0, 255).astype(np.uint8)
        edge_max = float(max(np.abs(self.bank.tex["edge"]).max(), 1.0))
        self._blank_level = -(EDGE_UM[0] * edge_max + 2.0)

    def is_blank(self, x0: int, y0: int, w: int, h: int) -> bool:
        """True when the window holds no tissue at all (it is then plain background)."""
        f = self.plan.fields
        cell = f.cell_px
        rows, cols = f.data.shape[1:]
        i0 = max(0, y0 // cell)
        i1 = min(rows, (y0 + h + BLOCK_PX[0]) // cell + 2)
        j0 = max(0, x0 // cell)
        j1 = min(cols, (x0 + w + BLOCK_PX[1]) // cell + 2)
        patch = np.asarray(f.field("tissue")[i0:i1, j0:j1])
        return bool(patch.size == 0 or patch.max() < self._blank_level)

    def _special_objects(self, x0: int, y0: int, w: int, h: int, r: float) -> np.ndarray:
        """Indices of the special objects within ``r`` px of the window."""
        obj = self.plan.objects
        lo, hi = np.searchsorted(self._ys, [y0 - r, y0 + h + r])
        idx = self._order[lo:hi]
        xs = obj.xy[idx, 0]
        return np.sort(idx[(xs >= x0 - r) & (xs < x0 + w + r)])

    def _figure(self, i: int) -> np.ndarray:
        """The (blurred) ``(3, S, S)`` sprite of special object ``i`` (cached)."""
        sprite = self.figure_cache.get(i)
        if sprite is None:
            obj = self.plan.objects
            dense = render_object(
                int(obj.kind[i]),
                int(obj.variant[i]),
                angle=float(obj.angle[i]),
                size=float(obj.size[i]),
                dark=float(obj.dark[i]),
                rng=slide_rng(self.plan.seed, "figure", i),
                mpp=self.plan.mpp,
            )
            sprite = blur_sprites(dense[None], self.blur_px)[0]
            if len(self.figure_cache) >= FIGURE_CACHE:
                self.figure_cache.pop(next(iter(self.figure_cache)))
            self.figure_cache[i] = sprite
        return sprite

    def render(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Render the level-0 window ``(x0, y0, w, h)``.

        Returns
        -------
        numpy.ndarray
            ``(h, w, 3)`` uint8 RGB.
        """
        if self.is_blank(x0, y0, w, h):
            return np.broadcast_to(self.background, (h, w, 3)).copy()
        f32 = np.float32
        # Work on a window grown to whole blocks of the global block grid: slow fields are
        # constant per block, so any window gives the same pixels as the chunks do.
        B = BLOCK_PX
        ox, oy = x0 % B[1], y0 % B[0]
        x0, y0 = x0 - ox, y0 - oy
        W, H = -(-(w + ox) // B[1]) * B[1], -(-(h + oy) // B[0]) * B[0]
        plan, bank = self.plan, self.bank
        tis, hole, tum = interp_window(plan.fields, ("tissue", "hole", "tumour"), x0, y0, W, H)
        sh, se, f0, f1, f2 = interp_blocks(
            plan.slow, ("stain_h", "stain_e", "fib0", "fib1", "fib2"), x0, y0, W, H, B
        )
        edge = bank.window("edge", x0, y0, W, H)
        edge2 = bank.window("edge2", x0, y0, W, H)
        # Tissue alpha (rough borders, holes) and tumour-nest alpha.
        tval = edge * f32(EDGE_UM[0])
        tval += tis
        hv = edge2 * f32(EDGE_UM[1])
        hv += hole
        np.negative(hv, out=hv)
        np.minimum(tval, hv, out=tval)
        tval += f32(0.5)
        alpha = np.clip(tval, 0.0, 1.0, out=tval)
        tumv = edge2 * f32(-EDGE_UM[2])
        tumv += tum
        ta = tumv * f32(1.2)
        ta += f32(0.5)
        np.clip(ta, 0.0, 1.0, out=ta)
        # Retraction clefts just outside the nests: keep = alpha * (1 - cleft).
        z = tumv + f32(1.3)
        z *= f32(1.0 / 0.9)
        np.square(z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        z *= f32(-self.cleft)
        z += f32(1.0)
        keep = z
        keep *= alpha
        # Background stains: fibrous stroma, granular cytoplasm in the nests.
        fib = _blocks(bank.window("fibre0", x0, y0, W, H), B) * f0
        fib += _blocks(bank.window("fibre1", x0, y0, W, H), B) * f1
        fib += _blocks(bank.window("fibre2", x0, y0, W, H), B) * f2
        e_str = fib.reshape(H, W)
        e_str *= f32(0.85 * self.e_stroma)
        e_str += edge * f32(0.12 * self.e_stroma)
        e_str += f32(0.35 * self.e_stroma)
        gran = bank.window("gran", x0, y0, W, H)
        eb = gran * f32(0.12 * self.e_cyto)
        eb += f32(self.e_cyto)
        eb -= e_str
        eb *= ta
        eb += e_str
        eb *= keep
        hb = gran * f32(0.15 * self.h_cyto)
        hb += f32(self.h_cyto)
        hb *= ta
        hb += f32(0.05)
        hb *= keep
        # Objects: ordinary nuclei and special objects, stamped as sprites.
        hs, es, ms = self._stamps(x0, y0, W, H)
        np.clip(ms, 0.0, 1.0, out=ms)
        np.subtract(f32(1.0), ms, out=ms)
        hb *= ms
        hs *= alpha
        hs += hb
        eb *= ms
        es *= alpha
        es += eb
        c_h = (_blocks(hs, B) * sh).reshape(H, W)
        c_e = (_blocks(es, B) * se).reshape(H, W)
        noise = bank.window("sensor", x0, y0, W, H) * f32(plan.look.noise_level)
        noise *= alpha
        crop = (slice(oy, oy + h), slice(ox, ox + w))
        return od_to_rgb(c_h[crop], c_e[crop], plan.look, noise=noise[crop])

    def _stamps(self, x0: int, y0: int, w: int, h: int):
        """``(H, E, M)`` maps of the ordinary nuclei and special objects touching the window."""
        plan = self.plan
        obj = plan.objects
        # Objects that clear nuclei touching the window (a wider reach than their sprites).
        reach = self.nuclei.max_radius_px + float(self._avoid_px.max()) + 1
        near = self._special_objects(x0, y0, w, h, reach)
        nuc = chunk_nuclei(
            plan,
            self.bank,
            self.nuclei,
            x0,
            y0,
            w,
            h,
            avoid_xy=obj.xy[near],
            avoid_r_px=self._avoid_px[obj.kind[near]],
            cache=self.block_cache,
        )
        sp_idx = self._special_objects(x0, y0, w, h, self._fig_r)
        canvas = Canvas(x0, y0, w, h)
        tum, spin = self.nuclei.split(nuc)
        canvas.add(self.nuclei.tumour, tum)
        canvas.add(self.nuclei.spindle, spin)
        for i in sp_idx.tolist():
            cx, cy = np.round(obj.xy[i]).astype(np.int64).tolist()
            canvas.add_one(self._figure(i), cx, cy)
        return canvas.maps()


def _blocks(arr: np.ndarray, b: tuple[int, int]) -> np.ndarray:
    """View an ``(H, W)`` array as ``(H / bh, bh, W / bw, bw)`` blocks."""
    hh, ww = arr.shape
    return arr.reshape(hh // b[0], b[0], ww // b[1], b[1])


_WORKER_STATE: dict[str, ChunkRenderer] = {}


def renderer_for(plan_path: str) -> ChunkRenderer:
    """The worker's renderer for the plan pickled at ``plan_path`` (loaded once)."""
    rend = _WORKER_STATE.get(plan_path)
    if rend is None:
        _WORKER_STATE.clear()
        with open(plan_path, "rb") as fh:
            plan = pickle.load(fh)
        rend = ChunkRenderer(plan)
        _WORKER_STATE[plan_path] = rend
    return rend


def chunk_job(
    plan_path: str | Path, x0: int, y0: int, w: int, h: int, *, tile_px: int, quality: int
) -> tuple[list[bytes], np.ndarray]:
    """Render one chunk and encode it (the work one worker does).

    Parameters
    ----------
    plan_path : str or Path
        Pickled :class:`SlidePlan` (read once per worker).
    x0, y0 : int
        Level-0 top-left of the chunk (multiples of ``tile_px``).
    w, h : int
        Chunk size (px).
    tile_px : int
        TIFF tile side.
    quality : int
        JPEG quality.

    Returns
    -------
    tiles : list of bytes
        JPEG tiles of the chunk, row-major (``ceil(h / tile) x ceil(w / tile)``).
    half : numpy.ndarray
        ``(ceil(h / 2), ceil(w / 2), 3)`` uint8: the chunk downsampled 2x.
    """
    rend = renderer_for(str(plan_path))
    rgb = rend.render(x0, y0, w, h)
    rend.plan.fields.release()
    rend.plan.slow.release()
    return encode_tiles(rgb, tile_px=tile_px, quality=quality), downsample2(rgb)


def chunk_grid(width_px: int, height_px: int) -> list[list[tuple[int, int, int, int]]]:
    """Chunks ``(x0, y0, w, h)`` of a slide, grouped in full-width bands, top to bottom."""
    bands = []
    for y0 in range(0, height_px, CHUNK_H_PX):
        h = min(CHUNK_H_PX, height_px - y0)
        bands.append(
            [(x0, y0, min(CHUNK_W_PX, width_px - x0), h) for x0 in range(0, width_px, CHUNK_W_PX)]
        )
    return bands


def iter_bands(
    plan_path: str | Path | None,
    renderer: ChunkRenderer | None,
    *,
    width_px: int,
    height_px: int,
    tile_px: int,
    quality: int,
    executor: Executor | None = None,
    lookahead: int = 8,
    task: ProgressTask | None = None,
) -> Iterator[Band]:
    """Render a slide chunk by chunk and yield its level-0 bands in order.

    Parameters
    ----------
    plan_path : str or Path, optional
        The pickled plan, for ``executor`` workers.
    renderer : ChunkRenderer, optional
        Renders in this process when no ``executor`` is given.
    executor : concurrent.futures.Executor, optional
        Process pool running :func:`chunk_job`; results are consumed in
        order, at most ``lookahead`` chunks ahead, so the output is the same
        whatever the number of workers.
    task : ProgressTask, optional
        Advanced by one per chunk.
    """
    if CHUNK_W_PX % tile_px or CHUNK_H_PX % tile_px:
        raise ValueError(f"tile_px {tile_px} must divide the chunk size {CHUNK_W_PX}x{CHUNK_H_PX}")
    bands = chunk_grid(width_px, height_px)
    flat = [c for band in bands for c in band]

    def local(chunk: tuple[int, int, int, int]) -> tuple[list[bytes], np.ndarray]:
        assert renderer is not None
        rgb = renderer.render(*chunk)
        return encode_tiles(rgb, tile_px=tile_px, quality=quality), downsample2(rgb)

    if executor is None:
        results: Iterator[tuple[list[bytes], np.ndarray]] = (local(c) for c in flat)
    else:
        results = _ordered(executor, str(plan_path), flat, tile_px, quality, lookahead)
    for band in bands:
        parts = []
        for _ in band:
            parts.append(next(results))
            if task is not None:
                task.advance()
        rows = math.ceil(band[0][3] / tile_px)
        tiles: list[bytes] = []
        for r in range(rows):
            for (_x0, _y0, w, _h), (chunk_tiles, _) in zip(band, parts, strict=True):
                cols = math.ceil(w / tile_px)
                tiles.extend(chunk_tiles[r * cols : (r + 1) * cols])
        half = np.concatenate([p[1] for p in parts], axis=1)
        yield Band(tiles=tiles, half=half)


def _ordered(
    executor: Executor, plan_path: str, chunks, tile_px: int, quality: int, lookahead: int
) -> Iterator[tuple[list[bytes], np.ndarray]]:
    pending: deque[Future] = deque()
    it = iter(chunks)
    try:
        for chunk in it:
            pending.append(
                executor.submit(chunk_job, plan_path, *chunk, tile_px=tile_px, quality=quality)
            )
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
