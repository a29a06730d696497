from __future__ import annotations

import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.synth.params import AnnotationNoise, SynthParams, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2048x1536", (2048, 1536)), ("20kx20k", (20000, 20000)), (" 40000 X 30000 ", (40000, 30000))],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["10x", "abc", "2048", "2048x-5", "1.5x2048", "100x100", "300kx1k"]
)
def test_parse_size_rejects_with_the_value(text):
    with pytest.raises(ConfigError, match="size") as info:
        parse_size(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("width_px", 100),
        ("mpp", 0.0),
        ("mpp", float("nan")),
        ("tumour_fraction", 1.5),
        ("tissue_fraction", 0.0),
        ("mitoses_per_mm2", -1.0),
        ("jpeg_quality", 20),
        ("tile_px", 100),
        ("stain_variation", 3.0),
        ("stain_shift", -0.5),
        ("stain_shift", 4.0),
        ("lookalike_mix", (0.0, 0.0, 0.0)),
    ],
)
def test_synth_params_reject_bad_values(field, value):
    with pytest.raises(ConfigError, match=field.split("_")[0]) as info:
        SynthParams(**{field: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("missed_fraction", 1.2),
        ("false_click_fraction", -0.1),
        ("click_offset_um", 50.0),
        ("negative_click_fraction", 2.0),
        ("regions", 1.5),
        ("negative_class", "a:b"),
        ("negative_class", ""),
    ],
)
def test_annotation_noise_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        AnnotationNoise(**{field: value})


def test_params_round_trip_to_dict():
    params = SynthParams(width_px=1024, height_px=768, mitoses_per_mm2=5.0)
    again = SynthParams(**{**params.to_dict(), "lookalike_mix": tuple(params.lookalike_mix)})
    assert again == params
    assert params.size_px == (1024, 768)
    assert AnnotationNoise(regions=2).to_dict()["regions"] == 2
