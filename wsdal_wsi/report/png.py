"""The per-slide PNG report (Pillow only; arrays in, no slide I/O).

Layout (1800 px wide; the height follows the slide's aspect): a header with the
slide, model and date and the mitotic score as a coloured badge; a row of key
numbers; the slide thumbnail (desaturated) under a semi-transparent
detection-density heat map in mitoses per mm² with its colour scale, the
hotspot outlined and the counted regions outlined and named, with a scale bar;
a gallery of the highest-scoring detections with their scores; and a footer
with the region counts, the settings and how the score was derived.

The heat map is a Gaussian kernel density of the detections in tissue
(σ = ``density_sigma_um``, default 300 µm, comparable to the 0.8 mm radius of a
2 mm² window), in mitoses per mm²; its colour scale runs from 0 to at least
10 /mm² (further when the slide is denser) so slides can be compared, with the
score cut-offs marked on it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter
from shapely.geometry import MultiPolygon, Polygon

__all__ = ["HEAT", "MapView", "Report", "ReportText", "colormap", "render_report"]

WIDTH = 1800
_MAP_BOX = (1150, 900)  # the map's largest (w, h)
_PAD = 24
_INK, _MUTED, _PAPER, _LINE = (31, 41, 51), (96, 108, 122), (255, 255, 255), (221, 226, 232)
_HEADER_BG = (28, 37, 48)
_HOTSPOT = (0, 229, 255)
_REGION = (0, 140, 255)
_SCORE_COLORS = {1: (46, 160, 67), 2: (219, 142, 0), 3: (207, 34, 46)}

#: The heat colour map (ColorBrewer YlOrRd), light yellow (low) to dark red (high).
HEAT = (
    (255, 237, 160), (254, 217, 118), (254, 178, 76), (253, 141, 60),
    (252, 78, 42), (227, 26, 28), (189, 0, 38), (128, 0, 38),
)  # fmt: skip


def colormap(values: np.ndarray, anchors: Sequence[tuple[int, int, int]] = HEAT) -> np.ndarray:
    """Map values in [0, 1] ``(...)`` to RGB ``(..., 3)`` uint8 (256-level interpolated table)."""
    a = np.asarray(anchors, dtype=np.float64)
    pos = np.linspace(0, len(a) - 1, 256)
    lo = np.minimum(np.floor(pos).astype(int), len(a) - 2)
    t = (pos - lo)[:, None]
    lut = np.rint(a[lo] * (1 - t) + a[lo + 1] * t).astype(np.uint8)
    idx = np.rint(np.clip(np.asarray(values, dtype=np.float64), 0, 1) * 255).astype(np.intp)
    return lut[idx]


@functools.lru_cache(maxsize=32)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf") if bold else ("DejaVuSans.ttf",):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _text_w(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
    return int(x1 - x0)


def _fit(draw, text: str, font, width: int) -> str:
    if _text_w(draw, text, font) <= width:
        return text
    while text and _text_w(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


@dataclass(frozen=True)
class ReportText:
    """The words and numbers of a report (see :func:`wsdal_wsi.report.slide.report_text`).

    Attributes
    ----------
    title : str
        The slide name.
    subtitle : str
        Model, threshold, date.
    cards : list of (str, str, str)
        Key numbers: (label, value, detail).
    score : int or None
        The mitotic score for the badge (None: no hotspot).
    score_caption : str
        Under the badge (e.g. the field setting).
    table_header : list of str
    table_rows : list of list of str
        Region counts.
    notes : list of str
        Footer lines (settings, score basis, provenance).
    """

    title: str
    subtitle: str = ""
    cards: list[tuple[str, str, str]] = field(default_factory=list)
    score: int | None = None
    score_caption: str = ""
    table_header: list[str] = field(default_factory=list)
    table_rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class Report:
    """A rendered report.

    Attributes
    ----------
    image : PIL.Image.Image
        RGB, 1800 px wide.
    map_view : MapView or None
        None when there was nothing to draw a map from.
    density_per_mm2 : numpy.ndarray or None
        ``(h, w)`` float64: the heat map's density (mitoses/mm²) per map pixel.
    density_max_per_mm2 : float
        The top of the colour scale.
    """

    image: Image.Image
    map_view: MapView | None
    density_per_mm2: np.ndarray | None = field(repr=False)
    density_max_per_mm2: float


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(value))
    return next(m * e for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * e >= value - 1e-12)


def _nice_length_mm(max_mm: float) -> float:
    candidates = [0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 50]
    fitting = [c for c in candidates if c <= max_mm]
    return fitting[-1] if fitting else max_mm


def _background(
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
    font = _font(17, bold=True)
    x, y = xy
    w = _text_w(draw, text, font)
    draw.rounded_rectangle((x, y, x + w + 14, y + 26), radius=6, fill=(0, 0, 0))
    draw.text((x + 7, y + 3), text, font=font, fill=color)


def render_report(
    text: ReportText,
    *,
    thumbnail: np.ndarray | None = None,
    thumbnail_downsample: float | None = None,
    points_level0: np.ndarray | None = None,
    mpp: float,
    hotspot: Polygon | None = None,
    hotspot_label: str = "Hotspot",
    regions: Sequence[tuple[str, Polygon | MultiPolygon]] = (),
    tissue_mask: np.ndarray | None = None,
    tissue_downsample: float | None = None,
    slide_dimensions: tuple[int, int] | None = None,
    crops: np.ndarray | Sequence[np.ndarray] = (),
    crop_scores: Sequence[float] = (),
    cutoffs_per_mm2: tuple[float, float] | None = None,
    density_sigma_um: float = 300.0,
) -> Report:
    """Draw the report.

    Parameters
    ----------
    text : ReportText
        Title, key numbers, score, region table, notes.
    thumbnail : numpy.ndarray, optional
        ``(h, w, 3)`` uint8 RGB slide thumbnail.
    thumbnail_downsample : float, optional
        Level-0 px per thumbnail px.
    points_level0 : numpy.ndarray, optional
        ``(N, 2)`` level-0 ``(x, y)`` of the detections (for the heat map).
    mpp : float
        Slide resolution (µm/px).
    hotspot : shapely Polygon, optional
        Level-0.
    hotspot_label : str
    regions : sequence of (name, polygon)
        Level-0 outlines to draw and name.
    tissue_mask, tissue_downsample : optional
        ``(h, w)`` bool and level-0 px per mask px: the heat map is drawn on
        tissue only, and the mask is the background when there is no thumbnail.
    slide_dimensions : (int, int), optional
        Level-0 ``(w, h)``: the map's extent when neither thumbnail nor mask is given.
    crops : array ``(K, S, S, 3)`` uint8 or sequence of such images
        The top detections, best first.
    crop_scores : sequence of float
        Their probabilities.
    cutoffs_per_mm2 : (float, float), optional
        Density cut-offs to mark on the colour scale.
    density_sigma_um : float
        Heat map smoothing (µm).
    """
    pts = np.zeros((0, 2)) if points_level0 is None else np.asarray(points_level0, float)
    pts = pts.reshape(-1, 2)
    base = _background(
        thumbnail, thumbnail_downsample, tissue_mask, tissue_downsample, slide_dimensions, pts
    )
    scratch = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    header_h, cards_h = 112, 118
    top = header_h + cards_h + _PAD
    view = density = None
    vmax = 10.0
    map_rgb = None
    if base is not None:
        bg, bg_ds = base
        scale = min(_MAP_BOX[0] / bg.shape[1], _MAP_BOX[1] / bg.shape[0])
        size = (max(1, round(bg.shape[1] * scale)), max(1, round(bg.shape[0] * scale)))
        view = MapView((_PAD, top + 40), size, bg_ds / scale)
        bg = _resize(bg, size, Image.Resampling.LANCZOS)
        tissue = None
        if tissue_mask is not None:
            m = np.asarray(tissue_mask, dtype=np.uint8) * 255
            tissue = _resize(m, size, Image.Resampling.BILINEAR) / 255.0
        density = _density(pts, tissue, mpp, view.level0_per_px, size, density_sigma_um)
        vmax = max(10.0, _nice_ceiling(float(density.max())))
        v = density / vmax
        alpha = (0.9 * np.sqrt(np.clip(v, 0, 1)))[..., None]
        map_rgb = bg * (1 - alpha) + colormap(v) * alpha

    gallery_cols, tile, gap = 4, 128, 12
    n_crops = len(crops)
    gallery_rows = math.ceil(n_crops / gallery_cols) if n_crops else 0
    map_h = (view.size[1] + 40 + 92) if view else 140
    body_h = max(map_h, 40 + gallery_rows * (tile + 30 + gap))
    table_h = 40 + 26 * (len(text.table_rows) + 1) if text.table_rows else 0
    height = top + body_h + _PAD + table_h + 30 * len(text.notes) + 2 * _PAD
    img = Image.new("RGB", (WIDTH, height), _PAPER)
    draw = ImageDraw.Draw(img)

    # header: title, subtitle, score badge
    draw.rectangle((0, 0, WIDTH, header_h), fill=_HEADER_BG)
    draw.text((_PAD, 18), _fit(scratch, text.title, _font(34, True), 1300), font=_font(34, True),
              fill=(255, 255, 255))  # fmt: skip
    draw.text((_PAD, 66), _fit(scratch, text.subtitle, _font(19), 1300), font=_font(19),
              fill=(190, 200, 212))  # fmt: skip
    bx0 = WIDTH - _PAD - 330
    badge = _SCORE_COLORS.get(text.score or 0, (120, 128, 140))
    draw.rounded_rectangle((bx0, 14, WIDTH - _PAD, header_h - 14), radius=14, fill=badge)
    label = f"Mitotic score {text.score}" if text.score else "No hotspot"
    draw.text((bx0 + 18, 22), label, font=_font(30, True), fill=(255, 255, 255))
    draw.text((bx0 + 18, 62), _fit(scratch, text.score_caption, _font(16), 300), font=_font(16),
              fill=(255, 255, 255))  # fmt: skip

    # key numbers
    if text.cards:
        cw = (WIDTH - 2 * _PAD - (len(text.cards) - 1) * 16) / len(text.cards)
        for k, (lab, value, detail) in enumerate(text.cards):
            x0 = round(_PAD + k * (cw + 16))
            box = (x0, header_h + 18, round(x0 + cw), header_h + cards_h)
            draw.rounded_rectangle(box, radius=10, fill=(245, 247, 250), outline=_LINE)
            draw.text((x0 + 16, box[1] + 10), lab.upper(), font=_font(14, True), fill=_MUTED)
            draw.text((x0 + 16, box[1] + 32), _fit(scratch, value, _font(30, True), cw - 28),
                      font=_font(30, True), fill=_INK)  # fmt: skip
            draw.text((x0 + 16, box[1] + 70), _fit(scratch, detail, _font(15), cw - 28),
                      font=_font(15), fill=_MUTED)  # fmt: skip

    # the map
    draw.text((_PAD, top), "Detection density and hotspot", font=_font(22, True), fill=_INK)
    if view is None:
        draw.text((_PAD, top + 50), "No thumbnail, tissue mask or detections to draw.",
                  font=_font(18), fill=_MUTED)  # fmt: skip
    else:
        img.paste(Image.fromarray(np.clip(map_rgb, 0, 255).astype(np.uint8)), view.origin)
        ox, oy = view.origin
        draw.rectangle((ox - 1, oy - 1, ox + view.size[0], oy + view.size[1]), outline=_LINE)
        for name, geom in regions:
            _outline(draw, geom, view, _REGION, 2)
            x0, y0 = view.to_image(np.array([geom.bounds[:2]]))[0]
            _label(draw, (x0 + 4, y0 + 4), name, (150, 205, 255))
        if hotspot is not None:
            _outline(draw, hotspot, view, _HOTSPOT, 4)
            bx, by, bx1, by1 = view.to_image(np.array([hotspot.bounds])).ravel()
            lx = bx if bx + 260 < ox + view.size[0] else bx1 - 260
            ly = by1 + 8 if by1 + 40 < oy + view.size[1] else by - 34  # below, else above
            _label(draw, (max(ox + 4, lx), max(oy + 4, ly)), hotspot_label, _HOTSPOT)
        _scale_bar(draw, view, mpp)
        _legend(draw, (ox, oy + view.size[1] + 22), min(view.size[0] - 300, 600), vmax,
                cutoffs_per_mm2)  # fmt: skip

    # the gallery
    gx = WIDTH - _PAD - gallery_cols * (tile + gap) + gap
    draw.text((gx, top), "Highest-scoring detections", font=_font(22, True), fill=_INK)
    if not n_crops:
        draw.text((gx, top + 50), "No detections.", font=_font(18), fill=_MUTED)
    for k in range(n_crops):
        r, c = divmod(k, gallery_cols)
        x0, y0 = gx + c * (tile + gap), top + 40 + r * (tile + 30 + gap)
        crop = Image.fromarray(np.asarray(crops[k], dtype=np.uint8)).resize((tile, tile))
        img.paste(crop, (x0, y0))
        draw.rectangle((x0 - 1, y0 - 1, x0 + tile, y0 + tile), outline=_LINE)
        score = f"{crop_scores[k]:.3f}" if k < len(crop_scores) else ""
        draw.text((x0 + 2, y0 + tile + 5), f"#{k + 1}", font=_font(15, True), fill=_MUTED)
        draw.text((x0 + tile - _text_w(draw, score, _font(15)) - 2, y0 + tile + 5), score,
                  font=_font(15), fill=_INK)  # fmt: skip

    # footer: region table and notes
    y = top + body_h + _PAD
    draw.line((_PAD, y - 10, WIDTH - _PAD, y - 10), fill=_LINE, width=2)
    if text.table_rows:
        draw.text((_PAD, y), "Regions", font=_font(22, True), fill=_INK)
        y += 40
        widths = [420, 240, 180, 180, 140, 180]
        for r, row in enumerate([text.table_header, *text.table_rows]):
            x = _PAD
            for c, cell in enumerate(row):
                w = widths[c] if c < len(widths) else 160
                font = _font(16, bold=r == 0)
                draw.text((x, y), _fit(scratch, cell, font, w - 12), font=font,
                          fill=_MUTED if r == 0 else _INK)  # fmt: skip
                x += w
            y += 26
        y += 14
    for note in text.notes:
        draw.text((_PAD, y), _fit(scratch, note, _font(16), WIDTH - 2 * _PAD), font=_font(16),
                  fill=_MUTED)  # fmt: skip
        y += 30
    return Report(img, view, density, vmax)


def _scale_bar(draw, view: MapView, mpp: float) -> None:
    px_mm = view.level0_per_px * mpp / 1000.0  # mm per map pixel
    length_mm = _nice_length_mm(view.size[0] * px_mm * 0.2)
    length_px = round(length_mm / px_mm)
    ox, oy = view.origin
    x0, y0 = ox + 16, oy + view.size[1] - 22
    label = f"{length_mm:g} mm" if length_mm >= 1 else f"{length_mm * 1000:g} µm"
    w = max(length_px, _text_w(draw, label, _font(15, True)))
    draw.rounded_rectangle((x0 - 8, y0 - 28, x0 + w + 8, y0 + 12), radius=6, fill=(255, 255, 255))
    draw.rectangle((x0, y0, x0 + length_px, y0 + 5), fill=(0, 0, 0))
    draw.text((x0, y0 - 24), label, font=_font(15, True), fill=(0, 0, 0))


def _legend(draw, xy, width, vmax, cutoffs) -> None:
    x0, y0 = xy
    draw.text((x0, y0), "Mitoses per mm² (smoothed density)", font=_font(15, True), fill=_INK)
    y0 += 30
    ramp = colormap(np.linspace(0, 1, width))
    for i, col in enumerate(ramp):
        draw.line((x0 + i, y0, x0 + i, y0 + 16), fill=tuple(int(c) for c in col))
    draw.rectangle((x0 - 1, y0 - 1, x0 + width, y0 + 17), outline=_LINE)
    step = _nice_ceiling(vmax / 5)
    for t in np.arange(0, vmax + 1e-9, step):
        x = x0 + round(t / vmax * (width - 1))
        draw.line((x, y0 + 17, x, y0 + 22), fill=_MUTED)
        draw.text((x - 8, y0 + 24), f"{t:g}", font=_font(13), fill=_MUTED)
    marks = [c for c in (cutoffs or ()) if 0 < c < vmax]
    for c in marks:
        x = x0 + round(c / vmax * (width - 1))
        draw.polygon([(x, y0 - 1), (x - 6, y0 - 9), (x + 6, y0 - 9)], fill=_INK)
    if marks:
        tag = "▼ score cut-offs: " + " and ".join(f"{c:.1f}" for c in marks) + " /mm²"
        draw.text((x0 + width + 16, y0), tag, font=_font(13), fill=_INK)
