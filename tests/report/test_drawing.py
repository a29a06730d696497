"""The report's drawing kit: the heat colour map and text fitting."""

import numpy as np
from PIL import Image, ImageDraw

from wsdal_wsi.report.drawing import HEAT, colormap, fit_text, load_font, text_width


def test_colormap_runs_from_the_first_anchor_to_the_last_and_clips():
    rgb = colormap(np.array([-1.0, 0.0, 0.5, 1.0, 7.0]))
    assert rgb.shape == (5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1]) == HEAT[0] and tuple(rgb[3]) == HEAT[-1]
    assert (rgb[0] == rgb[1]).all() and (rgb[4] == rgb[3]).all()  # clipped to [0, 1]
    assert colormap(np.zeros((4, 6))).shape == (4, 6, 3)


def test_fit_text_keeps_short_text_and_cuts_long_text_with_an_ellipsis():
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = load_font(18)
    assert fit_text(draw, "Slide 1", font, 500) == "Slide 1"
    long = "A very long slide name " * 20
    cut = fit_text(draw, long, font, 200)
    assert cut.endswith("…") and len(cut) < len(long)
    assert text_width(draw, cut, font) <= 200
