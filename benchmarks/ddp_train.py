"""Benchmark: torchrun DDP training against one process, on the demo data set, by F1.

The demo's data (``wsdal_wsi.demo.DEMO``: 4 training slides of 3072 x 3072 px, 2
held-out test slides of 8192 x 8192 px at realistic densities, realistic click noise),
generated once in ``--work``, is trained on twice per seed with the ``demo`` preset,
through the commands users run:

``single``  ``wsdal train TRAIN --out RUN --preset demo --seed S``
``ddp``     ``torchrun --standalone --nproc-per-node N -m wsdal_wsi train ...`` (the same)

Each model then predicts the test slides (``wsdal predict``) and is scored against
their ground truth (``wsdal evaluate``: MIDOG matching within 7.5 µm). Printed per
seed: F1 of both, their difference, and the training wall time of both; then the
mean difference and its spread. Target: |F1(ddp) - F1(single)| <= 0.03.

DDP with N processes splits every global batch N ways (same batch size, same steps),
so the runs differ by batch-norm statistics over a part of each batch, per-process
augmentation streams, and reduction order; not by schedule. On a CPU, N processes
share the cores: the time column says what it costs here, not what N GPUs gain.

Usage::

    python benchmarks/ddp_train.py --seeds 0            # minutes on a 2-core CPU per seed
    python benchmarks/ddp_train.py --seeds 0,1,2 --nproc 2 --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def demo_data(work: Path) -> tuple[Path, Path]:
    """The demo's training and test slide folders (generated once)."""
    from wsdal_wsi.demo import DEMO
    from wsdal_wsi.synth import REALISTIC_NOISE, SynthParams, generate_dataset

    folders = []
    for name, n, size, mit, look, seed in (
        ("train", DEMO.train_slides, DEMO.size_px, DEMO.mitoses_per_mm2,
         DEMO.lookalikes_per_mm2, DEMO.seed),
        ("test", DEMO.test_slides, DEMO.test_size_px, DEMO.test_mitoses_per_mm2,
         DEMO.test_lookalikes_per_mm2, DEMO.seed + 1000),
    ):  # fmt: skip
        folder = work / "data" / name
        folders.append(folder)
        if (folder / "synth.json").is_file():
            continue
        _log(f"generating the demo's {name} slides ...")
        params = SynthParams(width_px=size[0], height_px=size[1], mpp=0.25, mitoses_per_mm2=mit,
                             lookalikes_per_mm2=look, tissue_fraction=0.7)  # fmt: skip
        generate_dataset(folder, n_slides=n, params=params, noise=REALISTIC_NOISE, seed=seed,
                         prefix=f"{name}_", workers=min(4, os.cpu_count() or 1))  # fmt: skip
    return folders[0], folders[1]


def _run(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run a command (output to ``log``); its wall seconds; exit on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise SystemExit(f"failed ({rc}): {' '.join(command)}; see {log}")
    return time.perf_counter() - t0


def train_and_score(
    kind: str, seed: int, train: Path, test: Path, work: Path, args: argparse.Namespace
) -> dict[str, float]:
    """Train (``single`` or ``ddp``), predict the test slides, evaluate: F1 and times."""
    py = sys.executable
    run = work / f"{kind}-seed{seed}"
    wsdal = [py, "-m", "wsdal_wsi"]
    if kind == "ddp":
        launcher = [py, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", str(args.nproc), "-m", "wsdal_wsi"]  # fmt: skip
    else:
        launcher = wsdal
    model = run / "train" / "model.pt"
    train_s = float("nan")
    if not model.is_file():
        run.mkdir(parents=True, exist_ok=True)
        _log(f"{kind} seed {seed}: training ...")
        resume = ["--resume"] if (run / "train" / "config.json").is_file() else []
        train_s = _run(
            [*launcher, "train", str(train), "--out", str(run / "train"), "--preset", "demo",
             "--seed", str(seed), "--device", args.device, *resume],
            run / "train.log",
        )  # fmt: skip
    pred = run / "predict"
    _log(f"{kind} seed {seed}: predicting the test slides ...")
    _run([*wsdal, "predict", str(test), "--model", str(model), "--out", str(pred),
          "--device", args.device, "--tile-size", "1024"], run / "predict.log")  # fmt: skip
    out = subprocess.run(
        [*wsdal, "evaluate", str(pred), str(test / "truth"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ev = json.loads(out.stdout)
    summary = json.loads((run / "train" / "summary.json").read_text(encoding="utf-8"))
    return {
        "f1": float(ev["f1"]),
        "precision": float(ev["precision"]),
        "recall": float(ev["recall"]),
        "train_s": train_s,
        "val_f1": float(summary.get("val_f1") or float("nan")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/wsdal-bench/ddp", help="data, runs and logs")
    p.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (DDP: one GPU per process)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train, test = demo_data(work)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        single = train_and_score("single", seed, train, test, work, args)
        ddp = train_and_score("ddp", seed, train, test, work, args)
        rows.append((seed, single, ddp))
    print(f"# DDP ({args.nproc} processes, {args.device}) vs one process, demo preset and data")
    print(f"# {platform.node()}, {os.cpu_count()} cores; test: 2 slides of 8192 x 8192 px")
    print("| seed | F1 single | F1 DDP | DDP - single | P/R single | P/R DDP "
          "| train s single | train s DDP |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    diffs = []
    for seed, a, b in rows:
        diffs.append(b["f1"] - a["f1"])
        print(
            f"| {seed} | {a['f1']:.3f} | {b['f1']:.3f} | {diffs[-1]:+.3f} "
            f"| {a['precision']:.3f}/{a['recall']:.3f} | {b['precision']:.3f}/{b['recall']:.3f} "
            f"| {a['train_s']:.0f} | {b['train_s']:.0f} |"
        )
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    verdict = "within" if abs(mean) <= 0.03 else "NOT within"
    print(f"mean F1 difference {mean:+.3f} (sd {sd:.3f} over {len(diffs)} seed(s)): "
          f"{verdict} 0.03")  # fmt: skip


if __name__ == "__main__":
    main()
