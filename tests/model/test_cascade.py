"""Tests of the cascade entry of a model file: the threshold table, saving and loading."""

from __future__ import annotations

import json
import math

import pytest
import torch

from wsdal_wsi.errors import ConfigError, ModelFileError
from wsdal_wsi.model.cascade import CascadeSpec
from wsdal_wsi.model.file import load_model, save_model
from wsdal_wsi.model.nets import CascadeNet, ProjNet

from .test_file import _spec

TABLE = (
    {"final_threshold": 0.3, "first_threshold": -2.0, "detections": 40, "kept": 40},
    {"final_threshold": 0.6, "first_threshold": -1.0, "detections": 20, "kept": 20},
    {"final_threshold": 0.9, "first_threshold": 0.5, "detections": 9, "kept": 9},
)


def _cascade_spec(**kw) -> CascadeSpec:
    base = dict(
        arch="cascade_cnn",
        arch_kwargs={"width": 4, "downsample": 2},
        table=TABLE,
        keep_fraction=0.995,
        provenance={"n_train": 10},
    )
    return CascadeSpec(**{**base, **kw})


def test_first_threshold_is_the_row_at_or_below_the_detection_threshold():
    spec = _cascade_spec()
    assert spec.first_threshold(0.1) is None  # below the table: no cascade
    assert spec.first_threshold(0.3) == -2.0
    assert spec.first_threshold(0.75) == -1.0  # between rows: the lower, safer cut
    assert spec.first_threshold(0.99) == 0.5
    assert spec.row_for(0.95)["detections"] == 9
    assert CascadeSpec.from_dict(json.loads(spec.to_json())) == spec


@pytest.mark.parametrize(
    "table",
    [(), (TABLE[1], TABLE[0]), ({"final_threshold": 0.5, "first_threshold": math.inf},)],
)
def test_bad_tables_are_refused(table):
    with pytest.raises(ConfigError, match="cascade table"):
        _cascade_spec(table=table)


@pytest.fixture
def with_cascade(tmp_path):
    torch.manual_seed(0)
    net = ProjNet(width=4, proj_dim=8).eval()
    first = CascadeNet(width=4).eval()
    path = save_model(tmp_path / "m.pt", net, _spec(), cascade=(first, _cascade_spec()))
    return path, net, first


def test_round_trip_with_a_cascade(with_cascade):
    path, net, first = with_cascade
    model = load_model(path)
    assert model.cascade is not None and model.cascade.spec == _cascade_spec()
    assert model.first_threshold(0.42) == -2.0 and model.first_threshold(0.2) is None
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    # pooled before normalising (the file's fast path) = normalised before pooling
    ref = first.logit((x.float() / 255 - 0.5) / 0.25)
    torch.testing.assert_close(model.first_stage_logits(x), ref, rtol=1e-4, atol=1e-5)
    assert model.first_stage_logits(x[:0]).shape == (0,)
    # the final network is untouched by the cascade
    ref_p = torch.softmax(net((x.float() / 255 - 0.5) / 0.25), dim=1)[:, 1]
    torch.testing.assert_close(model.predict_proba(x), ref_p, rtol=1e-5, atol=1e-6)


def test_a_file_without_cascade_has_none(tmp_path):
    path = save_model(tmp_path / "plain.pt", ProjNet(width=4, proj_dim=8), _spec())
    assert "cascade" not in torch.load(path, weights_only=True)
    model = load_model(path)
    assert model.cascade is None and model.first_threshold(0.5) is None
    with pytest.raises(ValueError, match="has no cascade"):
        model.first_stage_logits(torch.zeros((1, 3, 32, 32), dtype=torch.uint8))


def test_a_damaged_cascade_entry_names_the_file(with_cascade, tmp_path):
    payload = torch.load(with_cascade[0], weights_only=True)
    payload["cascade"]["state_dict"].pop(next(iter(payload["cascade"]["state_dict"])))
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(ModelFileError, match=r"bad\.pt: the cascade entry is malformed"):
        load_model(bad)
