"""``--shard K/N``: which slides a shard takes, and N shard processes writing into one OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.predict import PredictSettings, Shard, run_batch
from wsdal_wsi.qupath import open_source

REPO = Path(__file__).resolve().parents[2]


def test_parse_and_select():
    assert Shard.parse("1/3") == Shard(1, 3) and str(Shard(1, 3)) == "1/3"
    keys = ["d", "a", "c", "b", "e"]
    shards = [Shard(k, 3).select(keys, key=str) for k in range(3)]
    assert shards == [["a", "d"], ["b", "e"], ["c"]]  # every 3rd in key order, whatever the input
    assert sorted(k for shard in shards for k in shard) == sorted(keys)
    assert Shard(0, 1).select(keys, key=str) == sorted(keys)


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "1", "a/b", "1/2/3"])
def test_bad_shards_are_refused_with_the_value(text):
    with pytest.raises(ConfigError, match="--shard"):
        Shard.parse(text)


def test_write_qupath_is_refused_for_a_shard(scaleout_batch, tmp_path):
    with pytest.raises(ConfigError, match="--write-qupath cannot be used with --shard"):
        run_batch(
            open_source(scaleout_batch.folder),
            scaleout_batch.model,
            tmp_path / "OUT",
            write_qupath=True,
            shard=Shard(0, 2),
        )


@pytest.mark.slow
def test_three_shard_processes_into_one_out_give_the_outputs_of_one_run(
    scaleout_batch, builders, tmp_path
):
    """examples/slurm_predict.sbatch run as array tasks 0, 1, 2 of 3, at the same time."""
    ref = scaleout_batch
    out = tmp_path / "OUT"
    shim = tmp_path / "bin" / "wsdal"  # `wsdal` on the PATH, as in an installed environment
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m wsdal_wsi "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLURM_ARRAY_TASK_COUNT": "3",
           "PATH": f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    command = ["bash", str(REPO / "examples" / "slurm_predict.sbatch"), str(ref.folder),
               str(ref.model), str(out), *builders.SCALEOUT_ARGS]  # fmt: skip
    procs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "SLURM_ARRAY_TASK_ID": str(k)},
        )
        for k in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    # shard 0 holds broken.tiff (keys sorted: broken, synth_000, synth_001, synth_002)
    assert [p.returncode for p in procs] == [1, 0, 0], outputs

    keys = ["synth_000", "synth_001", "synth_002"]
    for key in keys:
        assert builders.detections_of(out / f"{key}.geojson") == builders.detections_of(
            ref.out / f"{key}.geojson"
        )
    assert builders.counts_rows(out / "counts.csv") == builders.counts_rows(ref.out / "counts.csv")
    state = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert state["status"] == "finished" and state["shards"] == 3
    assert {im["key"]: im["status"] for im in state["images"]} == {
        "broken": "failed", **{k: "done" for k in keys}
    }  # fmt: skip
    html = (out / "index.html").read_text(encoding="utf-8")
    assert all(k in html for k in keys) and "truncated" in html

    # the shards' OUT is a finished batch for a plain run: nothing is predicted again
    result = run_batch(
        open_source(ref.folder),
        ref.model,
        out,
        settings=PredictSettings(device="cpu", tile_size_px=512),
    )
    assert {im.key: im.status for im in result.state.images} == {
        "broken": "failed", **{k: "skipped" for k in keys}
    }  # fmt: skip


def test_shards_started_with_a_relative_and_an_absolute_source_path_share_out(
    scaleout_batch, monkeypatch
):
    """One array task may be given ``slides/``, another ``/shared/slides``: the same batch."""
    from wsdal_wsi.predict.outputs import folder_settings

    folder = Path(scaleout_batch.folder).resolve()
    monkeypatch.chdir(folder.parent)
    settings = PredictSettings(device="cpu")

    def key(path):
        src = open_source(path)
        return folder_settings(src, model_sha256="m", threshold=0.5, settings=settings)

    assert key(Path(folder.name)) == key(folder)
    assert key(Path(folder.name))["source"]["path"] == str(folder)
