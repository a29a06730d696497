from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.stain.conftest import SHIFTED, reference_look
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.stain import StainEstimate, estimate_stains, normalise_rgb, stain_matrix
from wsdal_wsi.stain.transform import MAX_STRENGTH_RATIO
from wsdal_wsi.synth.stain import od_to_rgb

EST = StainEstimate((0.6, 0.7, 0.3), (0.1, 0.9, 0.4), 0.8, 0.5)


def test_a_slide_that_matches_the_reference_is_left_as_it_is():
    assert np.allclose(stain_matrix(EST, EST), np.eye(3), atol=1e-12)
    rgb = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    assert normalise_rgb(rgb, np.eye(3)) is rgb
    # a near-identity matrix through the full path changes no pixel by more than 1 level
    out = normalise_rgb(rgb, np.eye(3) + 1e-7)
    assert (out.int() - rgb.int()).abs().max() <= 1


def test_a_shifted_slide_is_mapped_onto_the_reference(concentrations):
    """The same tissue, stained by another lab, comes back to the reference's colours."""
    ref_rgb = od_to_rgb(*concentrations, reference_look())
    shifted_rgb = od_to_rgb(*concentrations, reference_look(**SHIFTED))
    ref, src = estimate_stains(ref_rgb), estimate_stains(shifted_rgb)
    out = normalise_rgb(torch.from_numpy(shifted_rgb), stain_matrix(src, ref)).numpy()
    before = np.abs(shifted_rgb.astype(int) - ref_rgb).mean(axis=(0, 1))
    after = np.abs(out.astype(int) - ref_rgb).mean(axis=(0, 1))
    assert before.max() > 15  # the shift is large ...
    assert after.max() < 0.35 * before.max()  # ... and mostly undone, in every channel
    assert out.shape == shifted_rgb.shape and out.dtype == np.uint8


def test_strength_ratios_are_bounded():
    pale = StainEstimate(EST.haematoxylin, EST.eosin, 0.01, 0.5)
    m = stain_matrix(pale, EST)
    # pure haematoxylin of the slide becomes at most MAX_STRENGTH_RATIO x as much
    h = np.asarray(EST.haematoxylin)
    assert np.linalg.norm(m @ h) == pytest.approx(MAX_STRENGTH_RATIO, rel=1e-6)


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="uint8"):
        normalise_rgb(torch.zeros((4, 4, 3), dtype=torch.float32), np.eye(3))
    with pytest.raises(ConfigError, match="uint8"):
        normalise_rgb(torch.zeros((4, 3, 4), dtype=torch.uint8), np.eye(3))
    with pytest.raises(ConfigError, match="3 x 3"):
        normalise_rgb(torch.zeros((4, 4, 3), dtype=torch.uint8), np.eye(2))
    with pytest.raises(ConfigError, match="3 x 3"):
        normalise_rgb(torch.zeros((4, 4, 3), dtype=torch.uint8), np.full((3, 3), np.nan))
