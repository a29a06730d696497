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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from shapely.geometry import MultiPolygon, Polygon

from wsdal_wsi.report.density_map import MapView, background, draw_map, heat_map
from wsdal_wsi.report.drawing import (
    HEADER_BG,
    INK,
    LINE,
    MUTED,
    PAD,
    PAPER,
    SCORE_COLORS,
    WIDTH,
    fit_text,
    load_font,
    text_width,
)

__all__ = ["Report", "ReportText", "render_report"]

_HEADER_H, _CARDS_H = 112, 118  # header band and key-number row heights
_GALLERY_COLS, _TILE, _GAP = 4, 128, 12  # gallery columns, tile size and spacing


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
    base = background(
        thumbnail, thumbnail_downsample, tissue_mask, tissue_downsample, slide_dimensions, pts
    )
    scratch = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    top = _HEADER_H + _CARDS_H + PAD
    view = density = map_rgb = None
    vmax = 10.0
    if base is not None:
        view, density, vmax, map_rgb = heat_map(
            base, pts, tissue_mask, mpp, (PAD, top + 40), density_sigma_um
        )
    body_h, height = _page_height(text, view, len(crops), top)
    img = Image.new("RGB", (WIDTH, height), PAPER)
    draw = ImageDraw.Draw(img)
    _draw_header(draw, scratch, text)
    _draw_cards(draw, scratch, text)
    draw_map(
        img,
        draw,
        top,
        view,
        map_rgb,
        regions=regions,
        hotspot=hotspot,
        hotspot_label=hotspot_label,
        mpp=mpp,
        vmax=vmax,
        cutoffs=cutoffs_per_mm2,
    )
    _draw_gallery(img, draw, top, crops, crop_scores)
    _draw_footer(draw, scratch, text, top + body_h + PAD)
    return Report(img, view, density, vmax)


def _page_height(text: ReportText, view: MapView | None, n_crops: int, top: int) -> tuple[int, int]:
    """The body height (map or gallery, whichever is taller) and the image height (px)."""
    gallery_rows = math.ceil(n_crops / _GALLERY_COLS) if n_crops else 0
    map_h = (view.size[1] + 40 + 92) if view else 140
    body_h = max(map_h, 40 + gallery_rows * (_TILE + 30 + _GAP))
    table_h = 40 + 26 * (len(text.table_rows) + 1) if text.table_rows else 0
    height = top + body_h + PAD + table_h + 30 * len(text.notes) + 2 * PAD
    return body_h, height


def _draw_header(draw, scratch, text: ReportText) -> None:
    """The header band: title, subtitle and the score badge."""
    draw.rectangle((0, 0, WIDTH, _HEADER_H), fill=HEADER_BG)
    draw.text(
        (PAD, 18),
        fit_text(scratch, text.title, load_font(34, True), 1300),
        font=load_font(34, True),
        fill=(255, 255, 255),
    )
    draw.text(
        (PAD, 66),
        fit_text(scratch, text.subtitle, load_font(19), 1300),
        font=load_font(19),
        fill=(190, 200, 212),
    )
    bx0 = WIDTH - PAD - 330
    badge = SCORE_COLORS.get(text.score or 0, (120, 128, 140))
    draw.rounded_rectangle((bx0, 14, WIDTH - PAD, _HEADER_H - 14), radius=14, fill=badge)
    label = f"Mitotic score {text.score}" if text.score else "No hotspot"
    draw.text((bx0 + 18, 22), label, font=load_font(30, True), fill=(255, 255, 255))
    draw.text(
        (bx0 + 18, 62),
        fit_text(scratch, text.score_caption, load_font(16), 300),
        font=load_font(16),
        fill=(255, 255, 255),
    )


def _draw_cards(draw, scratch, text: ReportText) -> None:
    """The row of key numbers under the header."""
    if not text.cards:
        return
    cw = (WIDTH - 2 * PAD - (len(text.cards) - 1) * 16) / len(text.cards)
    for k, (lab, value, detail) in enumerate(text.cards):
        x0 = round(PAD + k * (cw + 16))
        box = (x0, _HEADER_H + 18, round(x0 + cw), _HEADER_H + _CARDS_H)
        draw.rounded_rectangle(box, radius=10, fill=(245, 247, 250), outline=LINE)
        draw.text((x0 + 16, box[1] + 10), lab.upper(), font=load_font(14, True), fill=MUTED)
        draw.text(
            (x0 + 16, box[1] + 32),
            fit_text(scratch, value, load_font(30, True), cw - 28),
            font=load_font(30, True),
            fill=INK,
        )
        draw.text(
            (x0 + 16, box[1] + 70),
            fit_text(scratch, detail, load_font(15), cw - 28),
            font=load_font(15),
            fill=MUTED,
        )


def _draw_gallery(img: Image.Image, draw, top: int, crops, crop_scores) -> None:
    """The gallery panel: ``crops`` (each ``(S, S, 3)`` uint8) as tiles with ``crop_scores``."""
    n_crops = len(crops)
    gx = WIDTH - PAD - _GALLERY_COLS * (_TILE + _GAP) + _GAP
    draw.text((gx, top), "Highest-scoring detections", font=load_font(22, True), fill=INK)
    if not n_crops:
        draw.text((gx, top + 50), "No detections.", font=load_font(18), fill=MUTED)
    for k in range(n_crops):
        r, c = divmod(k, _GALLERY_COLS)
        x0, y0 = gx + c * (_TILE + _GAP), top + 40 + r * (_TILE + 30 + _GAP)
        crop = Image.fromarray(np.asarray(crops[k], dtype=np.uint8)).resize((_TILE, _TILE))
        img.paste(crop, (x0, y0))
        draw.rectangle((x0 - 1, y0 - 1, x0 + _TILE, y0 + _TILE), outline=LINE)
        score = f"{crop_scores[k]:.3f}" if k < len(crop_scores) else ""
        draw.text((x0 + 2, y0 + _TILE + 5), f"#{k + 1}", font=load_font(15, True), fill=MUTED)
        draw.text(
            (x0 + _TILE - text_width(draw, score, load_font(15)) - 2, y0 + _TILE + 5),
            score,
            font=load_font(15),
            fill=INK,
        )


def _draw_footer(draw, scratch, text: ReportText, y: int) -> None:
    """The footer from ``y`` down: the region table and the notes."""
    draw.line((PAD, y - 10, WIDTH - PAD, y - 10), fill=LINE, width=2)
    if text.table_rows:
        draw.text((PAD, y), "Regions", font=load_font(22, True), fill=INK)
        y += 40
        widths = [420, 240, 180, 180, 140, 180]
        for r, row in enumerate([text.table_header, *text.table_rows]):
            x = PAD
            for c, cell in enumerate(row):
                w = widths[c] if c < len(widths) else 160
                font = load_font(16, bold=r == 0)
                draw.text(
                    (x, y),
                    fit_text(scratch, cell, font, w - 12),
                    font=font,
                    fill=MUTED if r == 0 else INK,
                )
                x += w
            y += 26
        y += 14
    for note in text.notes:
        draw.text(
            (PAD, y),
            fit_text(scratch, note, load_font(16), WIDTH - 2 * PAD),
            font=load_font(16),
            fill=MUTED,
        )
        y += 30
