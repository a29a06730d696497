"""``examples/ray_predict.py`` against a local stand-in for Ray's API.

Ray is not a dependency (nor installed in CI); the stand-in runs each ``.remote`` call
in-process, which tests everything the example does except Ray's own scheduling.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class _Remote:
    def __init__(self, fn, options=None):
        self._fn = fn
        self.options_seen = options or {}

    def options(self, **kwargs):
        return _Remote(self._fn, kwargs)

    def remote(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


def _fake_ray() -> types.ModuleType:
    ray = types.ModuleType("ray")
    ray.init_calls = []
    ray.init = lambda address=None, **kw: ray.init_calls.append(address)
    ray.remote = lambda fn: _Remote(fn)
    ray.get = lambda refs: list(refs)
    return ray


@pytest.fixture
def example(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", _fake_ray())
    path = REPO / "examples" / "ray_predict.py"
    spec = importlib.util.spec_from_file_location("ray_predict_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _two_slides(dataset, target: Path) -> Path:
    """The first two slides of the dataset with their sidecars (keeps the test short)."""
    target.mkdir()
    for slide in sorted(dataset.out_dir.glob("*.tiff"))[:2]:
        shutil.copy(slide, target / slide.name)
        shutil.copy(slide.with_suffix(".geojson"), target / f"{slide.stem}.geojson")
    return target


def _tiny_model(path: Path) -> Path:
    spec = importlib.util.spec_from_file_location(
        "_wsdal_predict_builders", REPO / "tests" / "predict" / "builders.py"
    )
    builders = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builders)
    return builders.make_tiny_model(path)


def test_predicts_every_slide_writes_the_batch_outputs_and_skips_done_ones(
    example, synth_dataset, tmp_path, capsys
):
    slides = _two_slides(synth_dataset, tmp_path / "slides")
    model = _tiny_model(tmp_path / "model.pt")
    out = tmp_path / "out"
    argv = [str(slides), "--model", str(model), "--out", str(out), "--device", "cpu"]

    assert example.main(argv) == 0
    keys = sorted(p.stem for p in slides.glob("*.tiff"))
    for key in keys:
        assert (out / f"{key}.summary.json").is_file()
        assert (out / f"{key}.geojson").is_file()
        assert (out / f"{key}.report.png").is_file()
    for name in ("counts.csv", "counts.xlsx", "index.html"):
        assert (out / name).is_file()
    assert f"{len(keys)} slides predicted" in capsys.readouterr().out

    # A second run skips the finished slides.
    assert example.main(argv) == 0
    assert f"0 slides predicted, {len(keys)} already done" in capsys.readouterr().out


def test_a_failing_slide_is_recorded_and_the_exit_code_says_so(
    example, synth_dataset, tmp_path, capsys
):
    slides = _two_slides(synth_dataset, tmp_path / "slides")
    broken = sorted(slides.glob("*.tiff"))[0]
    broken.write_bytes(broken.read_bytes()[:4000])  # truncated TIFF
    model = _tiny_model(tmp_path / "model.pt")
    out = tmp_path / "out"

    code = example.main([str(slides), "--model", str(model), "--out", str(out), "--device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"FAILED {broken.stem}" in err
    assert "truncated" in err or "not a readable slide" in err
    others = [p for p in slides.glob("*.tiff") if p != broken]
    assert all((out / f"{p.stem}.report.png").is_file() for p in others)
