"""The report's drawing kit: page width and palette, fonts, text fitting, the heat colour map."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import ImageDraw, ImageFont

WIDTH = 1800
PAD = 24
INK, MUTED, PAPER, LINE = (31, 41, 51), (96, 108, 122), (255, 255, 255), (221, 226, 232)
HEADER_BG = (28, 37, 48)
HOTSPOT_RGB = (0, 229, 255)
REGION_RGB = (0, 140, 255)
SCORE_COLORS = {1: (46, 160, 67), 2: (219, 142, 0), 3: (207, 34, 46)}
#: The heat colour map (ColorBrewer YlOrRd), light yellow (low) to dark red (high).
HEAT = (
    (255, 237, 160),
    (254, 217, 118),
    (254, 178, 76),
    (253, 141, 60),
    (252, 78, 42),
    (227, 26, 28),
    (189, 0, 38),
    (128, 0, 38),
)


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
def load_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf") if bold else ("DejaVuSans.ttf",):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
    return int(x1 - x0)


def fit_text(draw, text: str, font, width: int) -> str:
    if text_width(draw, text, font) <= width:
        return text
    while text and text_width(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"
