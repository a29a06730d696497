"""Tests of a run's settings file: written once, refused or named field by field on resume."""

from __future__ import annotations

import json

import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.train.presets import get_preset
from wsdal_wsi.train.settings import (
    RunSettings,
    check_run_config,
    differing_keys,
    load_json,
    read_run_config,
)


def test_differing_keys_are_dotted_and_say_new_and_gone():
    old = {"seed": 0, "preset": {"ns": {"epochs": 2, "lr": 1e-3}, "old_field": 1}}
    new = {"seed": 0, "preset": {"ns": {"epochs": 3, "lr": 1e-3}, "new_field": 2}}
    assert differing_keys(old, new) == [
        "preset.ns.epochs",
        "preset.new_field (new)",
        "preset.old_field (gone)",
    ]
    assert differing_keys(old, old) == []
    assert differing_keys(1, 2) == ["settings"]


def test_config_written_once_then_checked(tmp_path):
    run = tmp_path / "run"
    settings = RunSettings(method="wsdal", preset=get_preset("tiny"), seed=3)
    check_run_config(run, settings, resume=False)  # a new folder: config.json written
    cfg = read_run_config(run)
    assert cfg["seed"] == 3 and cfg["preset"]["name"] == "tiny" and "created_by" in cfg
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        check_run_config(run, settings, resume=False)
    check_run_config(run, settings, resume=True)  # same settings: fine
    other = RunSettings(method="wsdal", preset=get_preset("tiny").replace(**{"dmu.lr": 0.5}))
    with pytest.raises(ConfigError, match=r"differs: preset\.dmu\.lr, seed\)"):
        check_run_config(run, other, resume=True)
    # a folder with other files (not a run) is refused
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="is not empty"):
        check_run_config(tmp_path / "mine", settings, resume=False)


def test_load_json_missing_or_broken_is_none(tmp_path):
    assert load_json(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{")
    assert load_json(tmp_path / "bad.json") is None
    (tmp_path / "ok.json").write_text(json.dumps({"a": 1}))
    assert load_json(tmp_path / "ok.json") == {"a": 1}
    assert read_run_config(tmp_path) is None
