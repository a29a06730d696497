"""Fixtures of the prediction tests: a tiny untrained model and small synthetic slides."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.predict import builders as _builders


@pytest.fixture(scope="session")
def builders():
    """The builder functions of ``tests/predict/builders.py``."""
    return _builders


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One CPU thread: tiny networks are per-op overhead, and 2 threads on a shared 2-core
    machine are often slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """An untrained tiny model file (patch 32 px, threshold 0.2: about half its scores)."""
    return _builders.make_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory):
    """Two synthetic slides of 1024 x 768 px (0.25 µm/px) with clicks, a Region and truth."""
    return _builders.make_dataset(tmp_path_factory.mktemp("mini_data"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from wsdal_wsi.model.file import load_model

    return load_model(tiny_model_path, device="cpu")


@pytest.fixture(scope="session")
def trained_cascade_run(synth_dataset, tmp_path_factory):
    """``wsdal train`` (tiny preset, baseline method) on the synthetic dataset: a run folder
    whose model file carries a cascade distilled from its final network."""
    from wsdal_wsi.train.presets import get_preset
    from wsdal_wsi.train.run import RunSettings, train_run

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("cascade_run") / "run"
        # the cascade's checks need a first stage distilled longer than the tiny preset's
        preset = get_preset("tiny").replace(**{"cascade.min_steps": 300})
        settings = RunSettings(method="baseline", preset=preset, val_fraction=0.25)
        summary = train_run(synth_dataset.out_dir, run, settings, device="cpu")
    finally:
        torch.set_num_threads(before)
    return run, summary


@pytest.fixture(scope="session")
def scaleout_batch(tmp_path_factory):
    """Three synthetic slides (1024 x 768 px) and a truncated fourth, ``broken.tiff``,
    predicted by a plain sequential run: ``.folder``, ``.model``, ``.out``, ``.result``.

    The reference for the Ray and shard runs (CLI defaults but tiles of 512 px on the
    CPU, as ``--device cpu --tile-size 512`` gives).
    """
    from wsdal_wsi.predict import PredictSettings, run_batch
    from wsdal_wsi.qupath import open_source

    root = tmp_path_factory.mktemp("scaleout")
    data = _builders.make_dataset(root / "data", n_slides=3)
    folder = _builders.batch_folder(data, root / "slides")
    out = root / "sequential"
    model = _builders.make_tiny_model(root / "model.pt")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = PredictSettings(device="cpu", tile_size_px=512)
        result = run_batch(open_source(folder), model, out, settings=settings)
    finally:
        torch.set_num_threads(before)
    return SimpleNamespace(folder=folder, model=model, out=out, result=result)
