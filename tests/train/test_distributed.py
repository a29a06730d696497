"""``torchrun -m wsdal_wsi train``: two gloo processes on the loopback address train together.

What the processes must agree on is checked in the files rank 0 writes: DMU's memory
holds every sample's statuses (each process saw half of every epoch), the features and
candidate scores have every row (computed in halves, gathered), the metrics count the
samples of both processes, and the run resumes after a stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from wsdal_wsi.model.file import load_model
from wsdal_wsi.train.common import read_table
from wsdal_wsi.train.distributed import (
    barrier,
    fill_across_ranks,
    is_distributed,
    is_main_process,
    on_main,
    world_size,
)
from wsdal_wsi.train.presets import get_preset


def test_alone_every_helper_is_the_single_process_path():
    assert not is_distributed() and world_size() == 1 and is_main_process()
    barrier()  # no-op
    assert on_main(lambda: 42) == 42
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert fill_across_ranks(rows, 3) is rows


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "wsdal_wsi", "train", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """Three synthetic slides of 1536 x 1536 px (0.25 µm/px), dense, noisy clicks: a
    third of ``synth_dataset``'s pixels, so two processes train in seconds."""
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset

    out = tmp_path_factory.mktemp("ddp_data")
    params = SynthParams(width_px=1536, height_px=1536, mpp=0.25, mitoses_per_mm2=220.0,
                         lookalikes_per_mm2=220.0, tissue_fraction=0.7)  # fmt: skip
    noise = AnnotationNoise(missed_fraction=0.15, false_click_fraction=0.15,
                            click_offset_um=1.5, negative_click_fraction=0.2)  # fmt: skip
    generate_dataset(out, n_slides=3, params=params, noise=noise, seed=1127, workers=1)
    return out


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_stop_and_resume(small_dataset, tmp_path):
    run = tmp_path / "run"
    args = [str(small_dataset), "--out", str(run), "--device", "cpu"]
    first = _torchrun(*args, "--preset", "tiny", "--val-fraction", "0.34", "--stop-after", "dmu")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("Stopped after dmu") == 1  # rank 0 prints, the other does not
    assert (run / "store" / "store.json").is_file()  # extracted once, by rank 0

    dmu = get_preset("tiny").dmu
    table = read_table(run / "dmu" / "table.csv")
    seen = table["clean"] + table["hard"] + table["noisy"]
    assert (seen == dmu.epochs - dmu.warmup_epochs).all()  # both processes' halves merged
    feats = np.load(run / "dmu" / "features.npy")
    assert len(feats) == len(seen) and (np.abs(feats).sum(axis=1) > 0).all()  # gathered
    scores = read_table(run / "ns" / "candidate_scores.csv")["p_mitosis"]
    assert (scores > 0).all()
    ns_rows = read_table(run / "ns" / "metrics.csv")
    ns = get_preset("tiny").ns
    assert (ns_rows["samples"] % ns.batch_size == 0).all()  # the global batches, not halves
    assert not list(run.rglob(".*.tmp"))  # no half-written file of a second writer

    second = _torchrun(*args, "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("Model        ") == 1
    assert "cpu x 2 processes (DDP)" in second.stdout
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["processes"] == 2 and summary["stages"]["dmu"]["n"] == len(seen)
    model = load_model(run / "model.pt")
    assert model.spec.threshold == summary["threshold"]
    assert json.loads((run / "csdgl" / "done.json").read_text())["reclusters"] >= 1
