"""Fixtures of the fault-injection suite: small synthetic slides, a tiny model, how to run
the CLI in a separate process (to kill it), and fingerprints of a folder's files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.predict import builders

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One CPU thread, as the subprocesses get (OMP_NUM_THREADS=1): the same arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> Path:
    """Three synthetic slides (1536 x 1536 px at 0.25 µm/px, dense enough for the tiny preset)
    with noisy clicks beside them (``<name>.geojson``) and ``truth/``."""
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset

    out = tmp_path_factory.mktemp("rel_data") / "slides"
    params = SynthParams(
        width_px=1536,
        height_px=1536,
        mpp=0.25,
        mitoses_per_mm2=300.0,
        lookalikes_per_mm2=300.0,
        tissue_fraction=0.7,
    )
    noise = AnnotationNoise(
        missed_fraction=0.15,
        false_click_fraction=0.15,
        click_offset_um=1.5,
        negative_click_fraction=0.2,
        regions=1,
        region_area_mm2=0.05,
    )
    generate_dataset(out, n_slides=3, params=params, noise=noise, seed=7, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny model file (deterministic scores)."""
    return builders.make_tiny_model(tmp_path_factory.mktemp("rel_model") / "model.pt")


def cli_process(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    """``python -m wsdal_wsi ARGS`` in its own process (so it can be killed), one thread.

    Ctrl-C (SIGINT) reaches it as it would a command typed in a terminal, even when the
    suite itself runs as a background job (``... &``), whose children inherit SIGINT
    ignored and so never see a KeyboardInterrupt.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "wsdal_wsi", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default action."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fingerprints(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (by relative path), except paths under ``skip``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not any(rel == s or rel.startswith(s + "/") for s in skip):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def copy_slides(src: Path, dst: Path) -> Path:
    """The slides and sidecars of ``src`` (not ``truth/``) copied into ``dst``."""
    import shutil

    dst.mkdir(parents=True)
    for p in sorted(src.iterdir()):
        if p.is_file() and p.suffix in (".tiff", ".geojson"):
            shutil.copy(p, dst / p.name)
    return dst
