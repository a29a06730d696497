"""The report's map panel: the slide thumbnail under a detection-density heat map.

The heat map is a Gaussian kernel density of the detections in tissue, in mitoses per
mm², over the desaturated thumbnail; the hotspot and the counted regions are outlined,
with a scale bar and a colour scale marking the score cut-offs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from shapely.geometry import MultiPolygon, Polygon

from wsdal_wsi.report.drawing import (
    HOTSPOT_RGB,
    INK,
    LINE,
    MUTED,
    PAD,
    REGION_RGB,
    colormap,
    load_font,
    text_width,
)

_MAP_BOX = (1150, 900)  # the map's largest (w, h)


@dataclass(frozen=True)
class MapView:
    """Where the slide map lies in the report image.

    Attributes
    ----------
    origin : (int, int)
        Image position of the map's top-left pixel.
    size : (int, int)
        Map size (w, h) in image pixels.
    level0_per_px : float
        Level-0 pixels per map pixel.
    """

    origin: tuple[int, int]
    size: tuple[int, int]
    level0_per_px: float

    def to_image(self, xy_level0: np.ndarray) -> np.ndarray:
        """Level-0 ``(N, 2)`` -> report image ``(N, 2)`` float pixel coordinates."""
        xy = np.asarray(xy_level0, dtype=np.float64).reshape(-1, 2)
        return xy / self.level0_per_px + np.asarray(self.origin, dtype=np.float64)


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(value))
    return next(m * e for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * e >= value - 1e-12)


def _nice_length_mm(max_mm: float) -> float:
    candidates = [0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 50]
    fitting = [c for c in candidates if c <= max_mm]
    return fitting[-1] if fitting else max_mm


def background(
    thumbnail, thumb_ds, tissue_mask, tissue_ds, slide_dimensions, points
) -> tuple[np.ndarray, float] | None:
    """An RGB base image and its level-0 px per pixel, from what is available."""
    if thumbnail is not None:
        rgb = np.asarray(thumbnail, dtype=np.float64)[..., :3]
        gray = rgb @ np.array([0.299, 0.587, 0.114])
        mixed = 0.2 * rgb + 0.8 * gray[..., None]
        return 255 - (255 - mixed) * 0.7, float(thumb_ds)
    if tissue_mask is not None:
        m = np.asarray(tissue_mask, dtype=bool)
        base = np.where(m[..., None], np.array([226.0, 214, 224]), 250.0)
        return base * np.ones(3), float(tissue_ds)
    if slide_dimensions is not None:
        w, h = slide_dimensions
    elif len(points):
        w, h = points.max(axis=0) * 1.05 + 1
    else:
        return None
    ds = max(w, h) / 1024
    return np.full((max(1, round(h / ds)), max(1, round(w / ds)), 3), 245.0), ds


def _resize(arr: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return np.asarray(img.resize(size, resample), dtype=np.float64)


def _density(points, tissue, mpp, view_ds, size, sigma_um) -> np.ndarray:
    """Gaussian kernel density (mitoses/mm²) per map pixel, computed on a coarser grid."""
    w, h = size
    sigma_px = sigma_um / (view_ds * mpp)
    f = max(1, int(sigma_px // 3))  # grid cells of about a third of sigma
    cw, ch = math.ceil(w / f), math.ceil(h / f)
    hist = np.zeros((ch, cw), dtype=np.float64)
    if len(points):
        ij = np.floor(points[:, ::-1] / (view_ds * f)).astype(np.int64)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < ch) & (ij[:, 1] >= 0) & (ij[:, 1] < cw)
        np.add.at(hist, (ij[ok, 0], ij[ok, 1]), 1.0)
    dens = gaussian_filter(hist, sigma=sigma_px / f, mode="constant", truncate=3.0)
    dens /= (view_ds * f * mpp / 1000.0) ** 2  # per mm²
    if f > 1:
        img = Image.fromarray(dens.astype(np.float32))
        img = img.resize((cw * f, ch * f), Image.Resampling.BILINEAR)
        dens = np.asarray(img, dtype=np.float64)[:h, :w]
    if tissue is not None:
        dens = dens * tissue
    return dens


def _outline(draw, geom, view: MapView, color, width: int) -> None:
    polys = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
    for poly in polys:
        if not isinstance(poly, Polygon) or poly.is_empty:
            continue
        pts = [tuple(p) for p in view.to_image(np.asarray(poly.exterior.coords))]
        draw.line([*pts, pts[0]], fill=(0, 0, 0), width=width + 3, joint="curve")
        draw.line([*pts, pts[0]], fill=color, width=width, joint="curve")


def _label(draw, xy, text, color) -> None:
    font = load_font(17, bold=True)
    x, y = xy
    w = text_width(draw, text, font)
    draw.rounded_rectangle((x, y, x + w + 14, y + 26), radius=6, fill=(0, 0, 0))
    draw.text((x + 7, y + 3), text, font=font, fill=color)


def heat_map(
    base: tuple[np.ndarray, float],
    pts: np.ndarray,
    tissue_mask: np.ndarray | None,
    mpp: float,
    origin: tuple[int, int],
    sigma_um: float,
) -> tuple[MapView, np.ndarray, float, np.ndarray]:
    """Fit the background into the map box and lay the density heat map over it.

    ``base``: the ``(h0, w0, 3)`` float64 RGB background (0-255) and its level-0 px per
    pixel; ``pts``: ``(N, 2)`` float64 level-0 ``(x, y)``; ``tissue_mask``: ``(h1, w1)``
    bool or None; ``mpp`` in µm/px; ``sigma_um`` in µm. Returns the map view, the density
    ``(h, w)`` float64 (mitoses/mm² per map pixel), the top of the colour scale (/mm²) and
    the map ``(h, w, 3)`` float64 RGB (0-255).
    """
    bg, bg_ds = base
    scale = min(_MAP_BOX[0] / bg.shape[1], _MAP_BOX[1] / bg.shape[0])
    size = (max(1, round(bg.shape[1] * scale)), max(1, round(bg.shape[0] * scale)))
    view = MapView(origin, size, bg_ds / scale)
    bg = _resize(bg, size, Image.Resampling.LANCZOS)
    tissue = None
    if tissue_mask is not None:
        m = np.asarray(tissue_mask, dtype=np.uint8) * 255
        tissue = _resize(m, size, Image.Resampling.BILINEAR) / 255.0
    density = _density(pts, tissue, mpp, view.level0_per_px, size, sigma_um)
    vmax = max(10.0, _nice_ceiling(float(density.max())))
    v = density / vmax
    alpha = (0.9 * np.sqrt(np.clip(v, 0, 1)))[..., None]
    map_rgb = bg * (1 - alpha) + colormap(v) * alpha
    return view, density, vmax, map_rgb


def draw_map(
    img, draw, top: int, view, map_rgb, *, regions, hotspot, hotspot_label, mpp, vmax, cutoffs
) -> None:
    """Draw the map panel: the heat map, the outlines, the scale bar and the legend.

    ``map_rgb``: ``(h, w, 3)`` float64 RGB (0-255), None with ``view``; ``regions`` and
    ``hotspot``: level-0 polygons; ``mpp`` in µm/px; ``vmax`` and ``cutoffs`` in /mm².
    """
    draw.text((PAD, top), "Detection density and hotspot", font=load_font(22, True), fill=INK)
    if view is None:
        draw.text(
            (PAD, top + 50),
            "No thumbnail, tissue mask or detections to draw.",
            font=load_font(18),
            fill=MUTED,
        )
        return
    img.paste(Image.fromarray(np.clip(map_rgb, 0, 255).astype(np.uint8)), view.origin)
    ox, oy = view.origin
    draw.rectangle((ox - 1, oy - 1, ox + view.size[0], oy + view.size[1]), outline=LINE)
    for name, geom in regions:
        _outline(draw, geom, view, REGION_RGB, 2)
        x0, y0 = view.to_image(np.array([geom.bounds[:2]]))[0]
        _label(draw, (x0 + 4, y0 + 4), name, (150, 205, 255))
    if hotspot is not None:
        _outline(draw, hotspot, view, HOTSPOT_RGB, 4)
        bx, by, bx1, by1 = view.to_image(np.array([hotspot.bounds])).ravel()
        lx = bx if bx + 260 < ox + view.size[0] else bx1 - 260
        ly = by1 + 8 if by1 + 40 < oy + view.size[1] else by - 34  # below, else above
        _label(draw, (max(ox + 4, lx), max(oy + 4, ly)), hotspot_label, HOTSPOT_RGB)
    _scale_bar(draw, view, mpp)
    _legend(draw, (ox, oy + view.size[1] + 22), min(view.size[0] - 300, 600), vmax, cutoffs)


def _scale_bar(draw, view: MapView, mpp: float) -> None:
    px_mm = view.level0_per_px * mpp / 1000.0  # mm per map pixel
    length_mm = _nice_length_mm(view.size[0] * px_mm * 0.2)
    length_px = round(length_mm / px_mm)
    ox, oy = view.origin
    x0, y0 = ox + 16, oy + view.size[1] - 22
    label = f"{length_mm:g} mm" if length_mm >= 1 else f"{length_mm * 1000:g} µm"
    w = max(length_px, text_width(draw, label, load_font(15, True)))
    draw.rounded_rectangle((x0 - 8, y0 - 28, x0 + w + 8, y0 + 12), radius=6, fill=(255, 255, 255))
    draw.rectangle((x0, y0, x0 + length_px, y0 + 5), fill=(0, 0, 0))
    draw.text((x0, y0 - 24), label, font=load_font(15, True), fill=(0, 0, 0))


def _legend(draw, xy, width, vmax, cutoffs) -> None:
    x0, y0 = xy
    draw.text((x0, y0), "Mitoses per mm² (smoothed density)", font=load_font(15, True), fill=INK)
    y0 += 30
    ramp = colormap(np.linspace(0, 1, width))
    for i, col in enumerate(ramp):
        draw.line((x0 + i, y0, x0 + i, y0 + 16), fill=tuple(int(c) for c in col))
    draw.rectangle((x0 - 1, y0 - 1, x0 + width, y0 + 17), outline=LINE)
    step = _nice_ceiling(vmax / 5)
    for t in np.arange(0, vmax + 1e-9, step):
        x = x0 + round(t / vmax * (width - 1))
        draw.line((x, y0 + 17, x, y0 + 22), fill=MUTED)
        draw.text((x - 8, y0 + 24), f"{t:g}", font=load_font(13), fill=MUTED)
    marks = [c for c in (cutoffs or ()) if 0 < c < vmax]
    for c in marks:
        x = x0 + round(c / vmax * (width - 1))
        draw.polygon([(x, y0 - 1), (x - 6, y0 - 9), (x + 6, y0 - 9)], fill=INK)
    if marks:
        tag = "▼ score cut-offs: " + " and ".join(f"{c:.1f}" for c in marks) + " /mm²"
        draw.text((x0 + width + 16, y0), tag, font=load_font(13), fill=INK)
