"""Tests of a run's settings file: written once, refused or named field by field on resume."""

from __future__ import annotations

import json

import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.qupath import ClassSettings
from wsdal_wsi.train.presets import get_preset
from wsdal_wsi.train.settings import (
    RunSettings,
    check_run_config,
    differing_keys,
    load_json,
    read_run_config,
    resolve_run_settings,
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


def test_resolve_run_settings_takes_given_options_then_the_runs_then_defaults(tmp_path):
    fresh = resolve_run_settings(tmp_path / "new", resume=False)
    assert fresh == RunSettings()
    run = tmp_path / "run"
    first = resolve_run_settings(
        run, resume=False, preset="tiny", seed=3, positive=["Mitotic figure"]
    )
    check_run_config(run, first, resume=False)
    again = resolve_run_settings(run, resume=True)  # nothing given: the run's own
    assert again == first and again.classes.positive == ("Mitotic figure",)
    other = resolve_run_settings(run, resume=True, seed=4, negative=["Imposter"])
    assert other.seed == 4 and other.classes.positive == ("Mitotic figure",)
    assert other.classes.negative == ("Imposter",)
    with pytest.raises(ConfigError, match="--method must be one of"):
        resolve_run_settings(run, resume=False, method="magic")


def test_a_run_started_before_classes_were_recorded_resumes_with_the_defaults(tmp_path):
    settings = RunSettings(method="wsdal", preset=get_preset("tiny"))
    check_run_config(tmp_path, settings, resume=False)
    cfg = read_run_config(tmp_path)
    del cfg["classes"]  # as an older wsdal-wsi wrote it
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    check_run_config(tmp_path, settings, resume=True)  # no "differs: classes"
    lab = RunSettings(method="wsdal", preset=get_preset("tiny"),
                      classes=ClassSettings(positive=("Mitotic figure",)))  # fmt: skip
    with pytest.raises(ConfigError, match=r"differs: classes\.positive"):
        check_run_config(tmp_path, lab, resume=True)


def test_a_run_started_before_a_preset_field_existed_resumes_with_its_default(tmp_path):
    settings = RunSettings(method="wsdal", preset=get_preset("tiny"))
    check_run_config(tmp_path, settings, resume=False)
    cfg = read_run_config(tmp_path)
    del cfg["preset"]["audit"]  # as wsdal-wsi wrote it before the audit had settings
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    check_run_config(tmp_path, settings, resume=True)  # no "differs: preset.audit..."
    stricter = RunSettings(
        method="wsdal", preset=get_preset("tiny").replace(**{"audit.candidate_min_p": 0.95})
    )
    with pytest.raises(ConfigError, match=r"differs: preset\.audit\.candidate_min_p"):
        check_run_config(tmp_path, stricter, resume=True)


def test_stain_jitter_replaces_the_presets_and_an_older_run_had_none(tmp_path):
    run = tmp_path / "run"
    first = resolve_run_settings(run, resume=False, preset="tiny", stain_jitter=0.2)
    assert first.preset.name == "tiny" and first.preset.stain_jitter == 0.2
    check_run_config(run, first, resume=False)
    assert resolve_run_settings(run, resume=True).preset.stain_jitter == 0.2
    with pytest.raises(ConfigError, match="stain_jitter must be a number in"):
        resolve_run_settings(tmp_path / "x", resume=False, stain_jitter=0.9)
    cfg = read_run_config(run)
    del cfg["preset"]["stain_jitter"]  # as a run of an older wsdal-wsi recorded it
    (run / "config.json").write_text(json.dumps(cfg))
    assert resolve_run_settings(run, resume=True).preset.stain_jitter == 0.0
    # a new run that names none trains with the preset's stain augmentation
    fresh = resolve_run_settings(tmp_path / "fresh", resume=False, preset="tiny")
    assert fresh.preset.stain_jitter == get_preset("tiny").stain_jitter > 0


def test_the_cascade_settings_are_the_presets_and_an_older_run_keeps_its_own(tmp_path):
    """The cascade's distillation is a preset setting (tiny: fewer steps, for tests); a run
    whose config.json predates it distilled from the patches as stored, for 400 steps."""
    from wsdal_wsi.train.cascade_settings import CascadeSettings

    assert get_preset("demo").cascade == CascadeSettings()
    assert CascadeSettings().appearance and CascadeSettings().min_steps == 1200
    assert get_preset("tiny").cascade.min_steps < CascadeSettings().min_steps
    run = tmp_path / "run"
    first = resolve_run_settings(run, resume=False, preset="tiny")
    check_run_config(run, first, resume=False)
    assert resolve_run_settings(run, resume=True).preset.cascade == get_preset("tiny").cascade
    cfg = read_run_config(run)
    del cfg["preset"]["cascade"]  # as a run of an older wsdal-wsi recorded it
    (run / "config.json").write_text(json.dumps(cfg))
    old = resolve_run_settings(run, resume=True).preset.cascade
    assert (old.min_steps, old.appearance) == (400, False)
    with pytest.raises(ConfigError, match="unknown preset setting"):
        get_preset("tiny").replace(**{"cascade.nonsense": 1})


def test_a_run_started_before_dle_validator_existed_resumes_with_the_network(tmp_path):
    settings = RunSettings(method="wsdal", preset=get_preset("tiny"))
    check_run_config(tmp_path, settings, resume=False)
    cfg = read_run_config(tmp_path)
    del cfg["preset"]["dle"]["validator"]  # as wsdal-wsi wrote it before the setting
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    resumed = resolve_run_settings(tmp_path, resume=True)
    assert resumed.preset.dle.validator == "network"
    check_run_config(tmp_path, resumed, resume=True)  # no "differs: preset.dle.validator"
    check_run_config(tmp_path, settings, resume=True)
    logistic = RunSettings(
        method="wsdal", preset=get_preset("tiny").replace(**{"dle.validator": "logistic"})
    )
    with pytest.raises(ConfigError, match=r"differs: preset\.dle\.validator"):
        check_run_config(tmp_path, logistic, resume=True)


def test_stain_normalisation_is_on_by_default_and_an_older_run_had_none(tmp_path):
    run = tmp_path / "run"
    default = resolve_run_settings(run, resume=False, preset="tiny")
    assert default.preset.extract.stain_normalise is True
    off = resolve_run_settings(run, resume=False, preset="tiny", stain_normalise=False)
    assert off.preset.extract.stain_normalise is False
    check_run_config(run, off, resume=False)
    assert resolve_run_settings(run, resume=True).preset.extract.stain_normalise is False
    with pytest.raises(ConfigError, match="stain_normalise"):
        check_run_config(run, default, resume=True)
    cfg = read_run_config(run)
    del cfg["preset"]["extract"]["stain_normalise"]  # as a run of an older wsdal-wsi recorded it
    (run / "config.json").write_text(json.dumps(cfg))
    resumed = resolve_run_settings(run, resume=True)
    assert resumed.preset.extract.stain_normalise is False  # its store was read as scanned
    check_run_config(run, resumed, resume=True)
    with pytest.raises(ConfigError, match="stain_normalise must be true or false"):
        get_preset("tiny").replace(**{"extract.stain_normalise": "yes"})


def test_the_one_se_threshold_rule_is_the_default_and_an_older_run_had_f1_maximising(tmp_path):
    run = tmp_path / "run"
    settings = resolve_run_settings(run, resume=False, preset="tiny")
    assert settings.preset.threshold_se == 1.0
    check_run_config(run, settings, resume=False)
    cfg = read_run_config(run)
    del cfg["preset"]["threshold_se"]  # as a run of an older wsdal-wsi recorded it
    (run / "config.json").write_text(json.dumps(cfg))
    resumed = resolve_run_settings(run, resume=True)
    assert resumed.preset.threshold_se == 0.0
    check_run_config(run, resumed, resume=True)
    for bad in (-1.0, "1", True, 11.0):
        with pytest.raises(
            ConfigError, match=f"threshold_se must be a number in \\[0, 10\\], got {bad!r}"
        ):
            get_preset("tiny").replace(threshold_se=bad)


def test_dle_keeps_unvalidated_samples_by_default_and_an_older_run_dropped_them(tmp_path):
    run = tmp_path / "run"
    settings = resolve_run_settings(run, resume=False, preset="tiny")
    assert settings.preset.dle.drop_unvalidated is False
    check_run_config(run, settings, resume=False)
    cfg = read_run_config(run)
    del cfg["preset"]["dle"]["drop_unvalidated"]  # as a run of an older wsdal-wsi recorded it
    (run / "config.json").write_text(json.dumps(cfg))
    resumed = resolve_run_settings(run, resume=True)
    assert resumed.preset.dle.drop_unvalidated is True
    check_run_config(run, resumed, resume=True)
    with pytest.raises(ConfigError, match=r"dle\.drop_unvalidated must be true or false, got 'no'"):
        get_preset("tiny").replace(**{"dle.drop_unvalidated": "no"})


def test_csdgl_starts_from_dmu_by_default_and_an_older_run_did_not(tmp_path):
    run = tmp_path / "run"
    settings = resolve_run_settings(run, resume=False, preset="tiny")
    assert settings.preset.csdgl.init == "dmu"
    check_run_config(run, settings, resume=False)
    cfg = read_run_config(run)
    del cfg["preset"]["csdgl"]["init"]  # as a run of an older wsdal-wsi recorded it
    (run / "config.json").write_text(json.dumps(cfg))
    resumed = resolve_run_settings(run, resume=True)
    assert resumed.preset.csdgl.init == "pretrained"
    check_run_config(run, resumed, resume=True)
