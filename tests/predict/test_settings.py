"""Prediction settings: validation, the detection key, the model hash."""

from __future__ import annotations

import hashlib

import pytest

from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.predict import ENGINE_VERSION, PredictSettings, detection_key, file_sha256


def test_defaults_and_json_form():
    s = PredictSettings()
    d = s.to_dict()
    assert d["tile_size_px"] is None and d["threshold"] is None
    assert d["hotspot"] == HotspotSettings().to_dict()
    assert PredictSettings(threshold=1).threshold == 1.0
    assert "mpp" not in d  # the resolution fallback belongs to the source (open_source(mpp=))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile_size_px": 32}, "tile_size_px must be an integer >= 64, got 32"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"reader_threads": True}, "reader_threads must be a positive integer"),
        ({"threshold": 1.2}, r"--threshold must be a probability in \[0, 1\], got 1.2"),
        ({"threshold": float("nan")}, "--threshold must be a probability"),
        ({"hotspot": {"window": "circle"}}, "hotspot must be HotspotSettings"),
    ],
)
def test_bad_values_are_refused_with_the_value(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PredictSettings(**kwargs)


def test_detection_key_holds_what_decides_the_detections():
    a = detection_key(model_sha256="ab", threshold=0.5, slide_mpp=0.25, target_mpp=0.25)
    assert a == {"engine_version": ENGINE_VERSION, "model_sha256": "ab", "threshold": 0.5,
                 "slide_mpp": 0.25, "target_mpp": 0.25}  # fmt: skip
    assert a != detection_key(model_sha256="ab", threshold=0.6, slide_mpp=0.25, target_mpp=0.25)
    assert a != detection_key(model_sha256="cd", threshold=0.5, slide_mpp=0.25, target_mpp=0.25)
    assert a != detection_key(model_sha256="ab", threshold=0.5, slide_mpp=0.5, target_mpp=0.25)
    # --no-cascade enters the key (the default leaves it as it was)
    off = detection_key(model_sha256="ab", threshold=0.5, slide_mpp=0.25, target_mpp=0.25,
                        cascade=False)  # fmt: skip
    assert off == {**a, "cascade": False}


def test_cascade_setting():
    assert PredictSettings().cascade and PredictSettings().to_dict()["cascade"] is True
    assert PredictSettings(cascade=False).to_dict()["cascade"] is False
    with pytest.raises(ConfigError, match="cascade must be True or False, got 'no'"):
        PredictSettings(cascade="no")


def test_file_sha256(tmp_path):
    p = tmp_path / "m.pt"
    p.write_bytes(b"x" * 3_000_000)
    assert file_sha256(p) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
