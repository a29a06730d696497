"""Random fields of a synthetic slide: coarse layout fields and periodic fine textures.

Two kinds of fields describe a slide without ever holding it in memory:

- **Coarse fields** (:class:`CoarseFields`): tissue, holes and tumour nests on
  a grid of about 8 µm; mitotic hotspots, slow stain variation, fibre
  orientation and cellularity on a 4x coarser grid. They are smooth random fields in
  "µm of signed distance" units (a boundary lies where a field crosses 0), so an
  edge noise of a few µm roughens borders by a few µm whatever the field's scale.
  Interpolated bilinearly, to a pixel window (:func:`interp_window`) or to
  points (:func:`interp_points`), with the same result.
- **Periodic textures** (:class:`TextureBank`): ``P x P`` tiles of filtered noise
  (collagen fibres in three orientations, cytoplasm granularity, border
  roughness, sensor noise) that repeat every ``P`` pixels; a chunk's window
  is a plain slice (no copy).

Everything is drawn from seeded generators, so a slide's fields depend only on
its seed and size, never on how the rendering is split into chunks or workers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage, special

__all__ = [
    "FIELD_NAMES",
    "FINE_FIELDS",
    "SLOW_FIELDS",
    "CoarseFields",
    "TextureBank",
    "interp_blocks",
    "interp_points",
    "interp_window",
    "interp_window_at",
    "make_textures",
    "node_quantile",
    "smooth_noise",
]

#: Fields on the fine coarse grid (about 8 µm): they define borders.
FINE_FIELDS = (
    "tissue",  # > 0: tissue (µm-like signed distance)
    "hole",  # > 0: hole (fat, vessel) inside tissue
    "tumour",  # > 0: tumour nest
)
#: Fields on a 4x coarser grid: they vary slowly.
SLOW_FIELDS = (
    "hotspot",  # mitosis density multiplier (> 0)
    "stain_h",  # slow haematoxylin strength multiplier (~1)
    "stain_e",  # slow eosin strength multiplier (~1)
    "fib0",  # weight of fibre texture 0 (0 deg)
    "fib1",  # weight of fibre texture 1 (60 deg)
    "fib2",  # weight of fibre texture 2 (120 deg)
    "fib_angle",  # local fibre angle (rad, [0, pi)) for spindle nuclei
    "cellularity",  # tumour nucleus keep probability
)
#: Every field name.
FIELD_NAMES = FINE_FIELDS + SLOW_FIELDS


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], *, scale_cells: float
) -> np.ndarray:
    """A smooth Gaussian random field with unit standard deviation.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream.
    shape : tuple of int
        ``(rows, cols)`` of the output grid.
    scale_cells : float
        Correlation length in grid cells.

    Returns
    -------
    numpy.ndarray
        ``shape`` float32, mean about 0, std 1.
    """
    rows, cols = shape
    if scale_cells <= 6:
        noise = rng.standard_normal((rows, cols), dtype=np.float32)
        out = ndimage.gaussian_filter(noise, sigma=max(scale_cells / 2.0, 0.5), mode="reflect")
        del noise
    else:
        step = scale_cells / 3.0
        lr, lc = math.ceil(rows / step) + 4, math.ceil(cols / step) + 4
        low = ndimage.gaussian_filter(
            rng.standard_normal((lr, lc), dtype=np.float32), sigma=1.0, mode="reflect"
        )
        yy = np.arange(rows, dtype=np.float32) / np.float32(step) + 2.0
        xx = np.arange(cols, dtype=np.float32) / np.float32(step) + 2.0
        out = _separable_cubic(low, yy, xx)
    # Standardise in place (these grids reach 10 M cells on 100k-px slides).
    out = out.astype(np.float32, copy=False)
    out -= np.float32(out.mean(dtype=np.float64))
    flat = out.ravel()
    std = math.sqrt(float(np.dot(flat, flat)) / max(flat.size, 1))
    out /= np.float32(std if std > 0 else 1.0)
    return out


def node_quantile(values: np.ndarray, mask: np.ndarray, q: float) -> float:
    """Quantile ``q`` of ``values[mask]``, on a regular subsample of at most about 1 M nodes.

    Parameters
    ----------
    values : numpy.ndarray
        ``(rows, cols)`` grid.
    mask : numpy.ndarray
        ``(rows, cols)`` bool: the nodes that count.
    q : float
        Quantile in [0, 1].
    """
    step = max(1, math.isqrt(values.size // 1_000_000 + 1))
    sub = values[::step, ::step][mask[::step, ::step]]
    if sub.size == 0:
        sub = values[mask]
    return float(np.quantile(sub, q)) if sub.size else 0.0


def _cubic_matrix(pos: np.ndarray, n_in: int) -> np.ndarray:
    """Catmull-Rom interpolation weights ``(len(pos), n_in)`` at fractional positions."""
    i0 = np.floor(pos).astype(np.int64)
    t = (pos - i0).astype(np.float64)
    w = np.stack(
        [
            0.5 * (-(t**3) + 2 * t**2 - t),
            0.5 * (3 * t**3 - 5 * t**2 + 2),
            0.5 * (-3 * t**3 + 4 * t**2 + t),
            0.5 * (t**3 - t**2),
        ],
        axis=1,
    )
    mat = np.zeros((len(pos), n_in), dtype=np.float32)
    rows = np.arange(len(pos))
    for k in range(4):
        idx = np.clip(i0 - 1 + k, 0, n_in - 1)
        np.add.at(mat, (rows, idx), w[:, k])
    return mat


def _separable_cubic(low: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    my = _cubic_matrix(yy, low.shape[0])
    mx = _cubic_matrix(xx, low.shape[1])
    return (my @ low @ mx.T).astype(np.float32)


@dataclass
class CoarseFields:
    """Coarse layout fields of one slide on one grid.

    Attributes
    ----------
    data : numpy.ndarray
        ``(len(names), rows, cols)`` float32; node ``(i, j)`` lies at
        level-0 ``(x, y) = (j * cell_px, i * cell_px)``. May be a read-only
        memory map (see :meth:`to_memmap`).
    cell_px : int
        Grid spacing in level-0 pixels.
    names : tuple of str
        Field names, in the order of :attr:`data`.
    path : str, optional
        The ``.npy`` file :attr:`data` is mapped from; when set, pickling
        stores only the path (workers map the same file: no copy per process).
    """

    data: np.ndarray
    cell_px: int
    names: tuple[str, ...] = FIELD_NAMES
    path: str | None = None

    def index(self, name: str) -> int:
        """Position of field ``name`` in :attr:`data`."""
        return self.names.index(name)

    def field(self, name: str) -> np.ndarray:
        """The ``(rows, cols)`` grid of field ``name``."""
        return self.data[self.names.index(name)]

    def to_memmap(self, path: str | os.PathLike[str]) -> None:
        """Save :attr:`data` to ``path`` (``.npy``) and map it read-only from there."""
        np.save(path, np.ascontiguousarray(self.data))
        self.path = str(path)
        self.data = np.load(self.path, mmap_mode="r")

    def release(self) -> None:
        """Map the file afresh, dropping the pages the old mapping touched.

        Workers call this after each chunk, so their resident memory does not
        grow with the slide. Does nothing for in-memory fields.
        """
        if self.path is not None:
            self.data = np.load(self.path, mmap_mode="r")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["data"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.data is None:
            self.data = np.load(self.path, mmap_mode="r")


def _lerp_index(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.clip(pos, 0.0, n - 1.001)
    i0 = np.floor(pos).astype(np.int64)
    return i0, (pos - i0).astype(np.float32)


def interp_window(
    fields: CoarseFields, names: tuple[str, ...], x0: int, y0: int, w: int, h: int
) -> list[np.ndarray]:
    """Bilinearly interpolate coarse fields over a level-0 pixel window.

    Parameters
    ----------
    fields : CoarseFields
        The slide's fields.
    names : tuple of str
        Which fields.
    x0, y0 : int
        Level-0 top-left of the window (may be negative).
    w, h : int
        Window size (px).

    Returns
    -------
    list of numpy.ndarray
        One ``(h, w)`` float32 array per name, equal to :func:`interp_points`
        at the window's pixels.
    """
    return interp_window_at(
        fields, names, y0 + np.arange(h, dtype=np.float64), x0 + np.arange(w, dtype=np.float64)
    )


def interp_blocks(
    fields: CoarseFields,
    names: tuple[str, ...],
    x0: int,
    y0: int,
    w: int,
    h: int,
    block: tuple[int, int],
) -> list[np.ndarray]:
    """Coarse fields sampled once per block of a window (for slow fields).

    Parameters
    ----------
    x0, y0 : int
        Level-0 top-left of the window.
    w, h : int
        Window size (multiples of the block size).
    block : tuple of int
        Block size ``(bh, bw)`` (px); each block takes the value at its centre.

    Returns
    -------
    list of numpy.ndarray
        One ``(h / bh, 1, w / bw, 1)`` float32 array per name, to multiply
        with a window viewed as blocks (``arr.reshape(h / bh, bh, w / bw, bw)``).
    """
    bh, bw = block
    small = interp_window_at(
        fields,
        names,
        y0 + (bh - 1) / 2 + bh * np.arange(h // bh, dtype=np.float64),
        x0 + (bw - 1) / 2 + bw * np.arange(w // bw, dtype=np.float64),
    )
    return [a[:, None, :, None] for a in small]


def interp_window_at(
    fields: CoarseFields, names: tuple[str, ...], ys: np.ndarray, xs: np.ndarray
) -> list[np.ndarray]:
    """Bilinear interpolation on the grid of level-0 rows ``ys`` x columns ``xs``.

    Returns C-contiguous ``(len(ys), len(xs))`` float32 arrays.
    """
    cell = fields.cell_px
    rows, cols = fields.data.shape[1:]
    iy, ty = _lerp_index(ys / cell, rows)
    jx, tx = _lerp_index(xs / cell, cols)
    i_a, i_b = int(iy.min()), int(iy.max()) + 2
    j_a, j_b = int(jx.min()), int(jx.max()) + 2
    iy, jx = iy - i_a, jx - j_a
    ty = ty[:, None]
    out = []
    for name in names:
        patch = np.asarray(fields.data[fields.index(name), i_a:i_b, j_a:j_b])
        cols_i = patch[:, jx] * (1 - tx) + patch[:, jx + 1] * tx  # (n_rows, w), small
        top = cols_i[iy]
        bottom = cols_i[iy + 1]
        bottom -= top
        bottom *= ty
        top += bottom
        out.append(top)
    return out


def interp_points(fields: CoarseFields, name: str, xy: np.ndarray) -> np.ndarray:
    """Bilinearly interpolate one coarse field at level-0 points.

    Parameters
    ----------
    xy : numpy.ndarray
        ``(N, 2)`` level-0 ``(x, y)``.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float32, equal to :func:`interp_window` at integer points.
    """
    grid = fields.data[fields.index(name)]
    rows, cols = grid.shape
    fx = np.clip(xy[:, 0] / fields.cell_px, 0, cols - 1.001)
    fy = np.clip(xy[:, 1] / fields.cell_px, 0, rows - 1.001)
    j0 = np.floor(fx).astype(np.int64)
    i0 = np.floor(fy).astype(np.int64)
    tx = (fx - j0).astype(np.float32)
    ty = (fy - i0).astype(np.float32)
    g = np.asarray(grid)
    top = g[i0, j0] * (1 - tx) + g[i0, j0 + 1] * tx
    bottom = g[i0 + 1, j0] * (1 - tx) + g[i0 + 1, j0 + 1] * tx
    return (top * (1 - ty) + bottom * ty).astype(np.float32)


@dataclass
class TextureBank:
    """Periodic fine textures of one slide.

    Attributes
    ----------
    period_px : int
        Period ``P`` (px) of every texture. Windows that do not cross a
        period boundary (every chunk window, since chunk sizes divide ``P``)
        are views; others are assembled with wrap-around.
    tex : dict of str to numpy.ndarray
        ``(P, P)`` float32 textures: ``fibre0..2`` (collagen fibres, 0-1),
        ``gran`` (cytoplasm granularity, std 1), ``edge`` (border roughness,
        std 1), ``edge2`` (independent roughness, std 1), ``sensor`` (white
        noise, std 1).
    """

    period_px: int
    tex: dict[str, np.ndarray]

    def window(self, name: str, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """The ``(h, w)`` window of texture ``name`` at level-0 ``(x0, y0)``."""
        p = self.period_px
        ys, xs = y0 % p, x0 % p
        arr = self.tex[name]
        if ys + h <= p and xs + w <= p:
            return arr[ys : ys + h, xs : xs + w]
        rows = np.arange(ys, ys + h) % p
        cols = np.arange(xs, xs + w) % p
        return arr.take(rows, axis=0).take(cols, axis=1)

    def at(self, name: str, xy: np.ndarray) -> np.ndarray:
        """Texture ``name`` at level-0 points ``(N, 2)`` (nearest pixel) -> ``(N,)``."""
        p = self.period_px
        ix = np.floor(xy[:, 0]).astype(np.int64) % p
        iy = np.floor(xy[:, 1]).astype(np.int64) % p
        return self.tex[name][iy, ix]


def _spectrum_noise(rng: np.random.Generator, p: int, gain: np.ndarray) -> np.ndarray:
    """Periodic Gaussian noise with amplitude spectrum ``gain`` ``(p, p // 2 + 1)``, std 1."""
    shape = (p, p // 2 + 1)
    spec = np.empty(shape, dtype=np.complex64)
    spec.real = rng.standard_normal(shape, dtype=np.float32)
    spec.imag = rng.standard_normal(shape, dtype=np.float32)
    spec *= gain
    spec[0, 0] = 0.0
    out = scipy.fft.irfft2(spec, s=(p, p), workers=1)
    std = float(out.std())
    return (out / np.float32(std if std > 0 else 1.0)).astype(np.float32, copy=False)


_GAINS: dict[tuple[float, int], dict[str, np.ndarray]] = {}


def _texture_gains(mpp: float, p: int) -> dict[str, np.ndarray]:
    """Amplitude spectra ``(p, p // 2 + 1)`` of the textures (cached: seed-independent)."""
    key = (float(mpp), int(p))
    gains = _GAINS.get(key)
    if gains is not None:
        return gains
    fy = np.fft.fftfreq(p).astype(np.float32)[:, None] / np.float32(mpp)  # cycles per µm
    fx = np.fft.rfftfreq(p).astype(np.float32)[None, :] / np.float32(mpp)
    fr = np.sqrt(fx * fx + fy * fy)
    gains = {}
    for k, angle in enumerate((0.0, math.pi / 3, 2 * math.pi / 3)):
        # Fibres along `angle`: long correlation along, short across (wavy bundles).
        ca, sa = math.cos(angle), math.sin(angle)
        f_along = fx * ca + fy * sa
        f_across = -fx * sa + fy * ca
        gain = np.exp(-0.5 * ((f_along * 5.0) ** 2 + (f_across * 1.4) ** 2)) * (
            1.0 - np.exp(-0.5 * (fr * 8.0) ** 2)
        ) + 0.25 * np.exp(-0.5 * (fr * 4.0) ** 2)
        gains[f"fibre{k}"] = gain.astype(np.float32)
    gains["gran"] = np.exp(-0.5 * (fr * 1.6) ** 2).astype(np.float32)
    edge = np.exp(-0.5 * (fr * 20.0) ** 2) + 0.08 * np.exp(-0.5 * (fr * 5.0) ** 2)
    gains["edge"] = edge.astype(np.float32)
    if len(_GAINS) > 4:
        _GAINS.clear()
    _GAINS[key] = gains
    return gains


def make_textures(rng: np.random.Generator, *, mpp: float, period_px: int) -> TextureBank:
    """Draw one slide's periodic textures.

    Parameters
    ----------
    rng : numpy.random.Generator
        The slide's texture stream.
    mpp : float
        Resolution (µm/px): texture features keep their size in µm.
    period_px : int
        Texture period (px), even.
    """
    p = period_px
    gains = _texture_gains(mpp, p)
    tex: dict[str, np.ndarray] = {}
    for k in range(3):
        fib = _spectrum_noise(rng, p, gains[f"fibre{k}"])
        # Bundles with pale gaps: squash to 0..1 with a soft threshold.
        fib += np.float32(0.35)
        fib *= np.float32(2.2)
        tex[f"fibre{k}"] = special.expit(fib)
    tex["gran"] = _spectrum_noise(rng, p, gains["gran"])
    tex["edge"] = _spectrum_noise(rng, p, gains["edge"])
    tex["edge2"] = _spectrum_noise(rng, p, gains["edge"])
    tex["sensor"] = rng.standard_normal((p, p), dtype=np.float32)
    return TextureBank(period_px=p, tex=tex)
