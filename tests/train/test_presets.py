"""Tests of the presets."""

from __future__ import annotations

import json

import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.train.presets import PRESETS, Preset, get_preset


def test_presets_are_complete_and_round_trip():
    assert set(PRESETS) == {"paper", "fast", "demo", "tiny"}
    for name, p in PRESETS.items():
        back = Preset.from_dict(json.loads(json.dumps(p.to_dict())))
        assert back == p, name
        assert p.extract.patch_px == 80 and p.extract.context_px >= p.extract.patch_px
        assert p.dmu.warmup_epochs < p.dmu.epochs
    paper = get_preset("paper")
    assert (paper.ns.epochs, paper.dmu.epochs, paper.dmu.batch_size, paper.dmu.warmup_epochs) == (
        25,
        100,
        512,
        5,
    )
    assert paper.width == 64 and get_preset("tiny").width < get_preset("demo").width < 64


def test_replace_and_errors():
    p = get_preset("tiny").replace(**{"ns.epochs": 7, "width": 4})
    assert p.ns.epochs == 7 and p.width == 4 and p.dmu == get_preset("tiny").dmu
    with pytest.raises(ConfigError, match=r"unknown preset setting 'ns\.nope'"):
        get_preset("tiny").replace(**{"ns.nope": 1})
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        get_preset("huge")
