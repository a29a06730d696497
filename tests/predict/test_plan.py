"""The tile plan: margins, the inference area, device defaults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.detect.candidates import CandidateParams
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.predict.plan import (
    default_batch_size,
    default_reader_threads,
    default_tile_size,
    engine_options,
    inference_area,
    margin_px_for,
)
from wsdal_wsi.slide import TissueMask


def test_margin_covers_half_a_patch_and_the_detector_context():
    params = CandidateParams()
    m = margin_px_for(patch_size_px=80, params=params, target_mpp=0.25)
    assert m >= 40 and m * 0.25 >= params.context_um()
    assert margin_px_for(patch_size_px=400, params=params, target_mpp=0.25) == 200


def test_inference_area_grows_the_mask_by_one_pixel():
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = True
    grown = inference_area(TissueMask(mask=mask, downsample=32.0))
    assert grown.mask.sum() == 9 and grown.downsample == 32.0
    empty = TissueMask(mask=np.zeros((3, 3), bool), downsample=8.0)
    assert inference_area(empty) is empty


def test_engine_options_take_the_device_defaults_and_check_values():
    cpu = torch.device("cpu")
    assert engine_options(
        cpu, tile_size_px=None, batch_size=None, reader_threads=None, tiles_per_step=None
    ) == (default_tile_size(cpu), default_batch_size(cpu), default_reader_threads(cpu), 1)
    assert default_tile_size("cuda") > default_tile_size(cpu)
    assert engine_options(
        cpu, tile_size_px=512, batch_size=7, reader_threads=3, tiles_per_step=2
    ) == (512, 7, 3, 2)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        engine_options(cpu, tile_size_px=None, batch_size=0, reader_threads=None,
                       tiles_per_step=None)  # fmt: skip
