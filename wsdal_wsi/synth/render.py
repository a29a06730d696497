"""Rendering a window of a synthetic slide, and the per-chunk job that workers run.

:class:`ChunkRenderer` turns a :class:`~wsdal_wsi.synth.layout.SlidePlan` into
pixels for any level-0 window; the result depends only on the plan and the
window, never on which process renders it or in which order. Per window it

1. interpolates the coarse fields and slices the periodic textures (tissue
   alpha with rough borders and holes, tumour nests with retraction clefts,
   collagen fibres blended by local orientation, granular cytoplasm);
2. stamps the ordinary nuclei of the blocks it touches and the special objects
   near it (:mod:`wsdal_wsi.synth.sprites`);
3. composes stain concentrations, applies the slide's slow stain variation and
   focus blur, and converts to RGB by Beer-Lambert with sensor noise
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
from scipy import ndimage

from wsdal_wsi.progress import ProgressTask
from wsdal_wsi.synth.fields import TextureBank, interp_window
from wsdal_wsi.synth.figures import SPRITE_RADIUS_UM, render_object
from wsdal_wsi.synth.layout import EDGE_UM, SlidePlan, make_bank, slide_rng
from wsdal_wsi.synth.nuclei import chunk_nuclei, make_nucleus_library
from wsdal_wsi.synth.pyramid import Band, downsample2, encode_tiles
from wsdal_wsi.synth.sprites import SpriteLib, StampSet, stamp
from wsdal_wsi.synth.stain import od_to_rgb
from wsdal_wsi.units import um_to_px

__all__ = ["CHUNK_H_PX", "CHUNK_W_PX", "ChunkRenderer", "chunk_grid", "chunk_job", "iter_bands"]

#: Chunk (unit of parallel work) size in level-0 px; multiples of the tile size.
CHUNK_W_PX = 1024
CHUNK_H_PX = 512
#: Extra pixels rendered around a window for the blur.
MARGIN_PX = 8
#: Texture padding a renderer needs (px).
TEXTURE_PAD_PX = CHUNK_W_PX + 2 * MARGIN_PX
#: Radius (µm) around each special object kept free of ordinary nuclei, by kind.
_AVOID_UM = np.array([9.5, 8.5, 6.0, 4.5])


class ChunkRenderer:
    """Renders level-0 windows of one planned slide.

    Parameters
    ----------
    plan : SlidePlan
        The slide.
    bank : TextureBank, optional
        The slide's textures with at least :data:`TEXTURE_PAD_PX` padding
        (drawn from the plan's seed when not given).
    """

    def __init__(self, plan: SlidePlan, *, bank: TextureBank | None = None) -> None:
        self.plan = plan
        mpp = plan.mpp
        if bank is None or bank.pad_px < TEXTURE_PAD_PX:
            bank = make_bank(plan.params, plan.seed, pad_px=TEXTURE_PAD_PX)
        self.bank = bank
        self.nuclei = make_nucleus_library(plan.seed, mpp)
        self.block_cache: dict = {}
        self.figure_cache: dict[int, SpriteLib] = {}
        obj = plan.objects
        self._order = np.argsort(obj.xy[:, 1], kind="stable")
        self._ys = obj.xy[self._order, 1]
        self._fig_r = um_to_px(SPRITE_RADIUS_UM, mpp) + 2
        self._avoid_px = np.array([um_to_px(r, mpp) for r in _AVOID_UM])
        rng = slide_rng(plan.seed, "look", 1)
        self.e_stroma = float(rng.uniform(0.42, 0.62))
        self.e_cyto = float(rng.uniform(0.22, 0.36))
        self.h_cyto = float(rng.uniform(0.05, 0.10))
        self.cleft = float(rng.uniform(0.2, 0.85))
        look = plan.look
        self.blur_px = look.blur_sigma_um / mpp
        bg = np.exp(-np.log(10.0) * np.asarray(look.od_background)) * 255.0
        self.background = np.clip(np.round(bg), 0, 255).astype(np.uint8)
        edge_max = float(max(np.abs(self.bank.tex["edge"]).max(), 1.0))
        self._blank_level = -(EDGE_UM[0] * edge_max + 2.0)

    def is_blank(self, x0: int, y0: int, w: int, h: int) -> bool:
        """True when the window holds no tissue at all (it is then plain background)."""
        f = self.plan.fields
        cell = f.cell_px
        rows, cols = f.data.shape[1:]
        i0 = max(0, (y0 - MARGIN_PX) // cell)
        i1 = min(rows, (y0 + h + MARGIN_PX) // cell + 2)
        j0 = max(0, (x0 - MARGIN_PX) // cell)
        j1 = min(cols, (x0 + w + MARGIN_PX) // cell + 2)
        patch = np.asarray(f.field("tissue")[i0:i1, j0:j1])
        return bool(patch.size == 0 or patch.max() < self._blank_level)

    def _special_stamps(self, x0: int, y0: int, w: int, h: int):
        """Sprites and stamps of the special objects whose sprite touches the window."""
        obj = self.plan.objects
        r = self._fig_r
        lo, hi = np.searchsorted(self._ys, [y0 - r, y0 + h + r])
        idx = self._order[lo:hi]
        xs = obj.xy[idx, 0]
        idx = idx[(xs >= x0 - r) & (xs < x0 + w + r)]
        libs = []
        for i in idx.tolist():
            lib = self.figure_cache.get(i)
            if lib is None:
                dense = render_object(
                    int(obj.kind[i]),
                    int(obj.variant[i]),
                    angle=float(obj.angle[i]),
                    size=float(obj.size[i]),
                    dark=float(obj.dark[i]),
                    rng=slide_rng(self.plan.seed, "figure", i),
                    mpp=self.plan.mpp,
                )
                lib = SpriteLib.from_dense(dense[None])
                if len(self.figure_cache) > 4096:
                    self.figure_cache.pop(next(iter(self.figure_cache)))
                self.figure_cache[i] = lib
            libs.append(lib)
        return idx, libs

    def render(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Render the level-0 window ``(x0, y0, w, h)``.

        Returns
        -------
        numpy.ndarray
            ``(h, w, 3)`` uint8 RGB.
        """
        if self.is_blank(x0, y0, w, h):
            return np.broadcast_to(self.background, (h, w, 3)).copy()
        m = MARGIN_PX
        X0, Y0, W, H = x0 - m, y0 - m, w + 2 * m, h + 2 * m
        plan, bank = self.plan, self.bank
        tis, hole, tum, sh, se, f0, f1, f2 = interp_window(
            plan.fields,
            ("tissue", "hole", "tumour", "stain_h", "stain_e", "fib0", "fib1", "fib2"),
            X0,
            Y0,
            W,
            H,
        )
        edge = bank.window("edge", X0, Y0, W, H)
        edge2 = bank.window("edge2", X0, Y0, W, H)
        tval = np.minimum(
            tis + np.float32(EDGE_UM[0]) * edge, -(hole + np.float32(EDGE_UM[1]) * edge2)
        )
        alpha = np.clip(tval * np.float32(1.0) + np.float32(0.5), 0.0, 1.0)
        tumv = tum - np.float32(EDGE_UM[2]) * edge2
        ta = np.clip(tumv * np.float32(1.2) + np.float32(0.5), 0.0, 1.0)
        cleft = np.exp(-(((tumv + np.float32(1.3)) / np.float32(0.9)) ** 2)) * np.float32(
            self.cleft
        )
        fib = (
            f0 * bank.window("fibre0", X0, Y0, W, H)
            + f1 * bank.window("fibre1", X0, Y0, W, H)
            + f2 * bank.window("fibre2", X0, Y0, W, H)
        )
        gran = bank.window("gran", X0, Y0, W, H)
        e_str = np.float32(self.e_stroma) * (
            np.float32(0.35) + np.float32(0.85) * fib + np.float32(0.12) * edge
        )
        e_cyt = np.float32(self.e_cyto) * (np.float32(1.0) + np.float32(0.2) * gran)
        eb = e_str + ta * (e_cyt - e_str)
        hb = np.float32(0.03) + ta * np.float32(self.h_cyto) * (
            np.float32(1.0) + np.float32(0.25) * gran
        )
        keep = alpha * (np.float32(1.0) - cleft)
        eb *= keep
        hb *= keep

        sp_idx, sp_libs = self._special_stamps(X0, Y0, W, H)
        obj = plan.objects
        nuc = chunk_nuclei(
            plan,
            bank,
            self.nuclei,
            X0,
            Y0,
            W,
            H,
            avoid_xy=obj.xy[sp_idx],
            avoid_r_px=self._avoid_px[obj.kind[sp_idx]],
            cache=self.block_cache,
        )
        hs, es, ms = stamp(self.nuclei.lib, nuc, X0, Y0, W, H)
        if len(sp_idx):
            lib = SpriteLib.concat(sp_libs)
            n = len(sp_idx)
            st = StampSet(
                cx=np.round(obj.xy[sp_idx, 0]).astype(np.int64),
                cy=np.round(obj.xy[sp_idx, 1]).astype(np.int64),
                sprite=np.arange(n, dtype=np.int64),
                transform=np.zeros(n, dtype=np.int8),
                gain_h=np.ones(n, dtype=np.float32),
                gain_e=np.ones(n, dtype=np.float32),
            )
            h2, e2, m2 = stamp(lib, st, X0, Y0, W, H)
            hs += h2
            es += e2
            ms += m2
        np.clip(ms, 0.0, 1.0, out=ms)
        inv = np.float32(1.0) - ms
        c_h = (hb * inv + hs * alpha) * sh
        c_e = (eb * inv + es * alpha) * se
        if self.blur_px >= 0.2:
            c_h = ndimage.gaussian_filter(c_h, self.blur_px, truncate=3.0)
            c_e = ndimage.gaussian_filter(c_e, self.blur_px, truncate=3.0)
        noise = bank.window("sensor", X0, Y0, W, H) * (np.float32(plan.look.noise_level) * alpha)
        rgb = od_to_rgb(c_h, c_e, plan.look, noise=noise)
        return rgb[m : m + h, m : m + w]


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
