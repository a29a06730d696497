"""DLE with and without the removal of the hard samples it cannot validate.

The method removes a hard sample whose difficulty level the out-of-fold 3-way check does not
confirm; ``DLESettings.drop_unvalidated`` (off by default) keeps it with its level. This
script measures the two on the finished WS-DAL runs of a ``benchmarks/protocol.py`` folder:
each run's training folder is copied up to its DMU stage (patch store linked, NS, DMU and the
label audit as they are), ``dle.drop_unvalidated`` set to true and to false in its
``config.json``, and the copy resumed with ``wsdal train --resume`` (DLE, CSDGL, threshold,
cascade, model file), then scored with ``wsdal predict`` and ``wsdal evaluate`` on the data
seed's test slides and, where the protocol made them, its stain-shifted ones. Printed: one row
per run, the means, and the paired difference keep - drop with its 95 % t-interval.

Run it on development data only (the default was chosen there)::

    python benchmarks/protocol.py --data-seeds dev --train-seeds 0,1,2 --out bench-dev
    python benchmarks/dle_drop.py --out bench-dev --data-seeds 0,1,2 --train-seeds 0,1,2

About 2.5 minutes per run and setting on the 2-core VM. A rerun reuses finished runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from protocol import _evaluate, _wsdal, t95

#: What ``wsdal train --resume`` makes again after DMU (and the protocol's ablations).
AFTER_DMU = {"dle", "csdgl", "threshold.json", "cascade", "model.pt", "summary.json"}


def prepare(run: Path, dst: Path, *, drop: bool) -> None:
    """``dst/train``: ``run/train`` up to its DMU stage, with ``dle.drop_unvalidated = drop``."""
    if dst.exists():
        return
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    for item in (run / "train").iterdir():
        if item.name in AFTER_DMU or item.name.startswith("ablation-"):
            continue
        if item.name == "store":
            (tmp / "train" / "store").symlink_to(item.resolve())
        elif item.is_dir():
            shutil.copytree(item, tmp / "train" / item.name)
        else:
            shutil.copy2(item, tmp / "train" / item.name)
    cfg_path = tmp / "train" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["preset"]["dle"]["drop_unvalidated"] = drop
    cfg.pop("store", None)  # written again on resume: the linked store
    cfg_path.write_text(json.dumps(cfg, indent=2))
    tmp.rename(dst)


def score(data: Path, dst: Path, log: Path) -> dict:
    """Resume, predict and evaluate one copy (reused when done)."""
    result_path = dst / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if not (dst / "train" / "model.pt").is_file():
        _wsdal("train", str(data / "train"), "--out", str(dst / "train"), "--resume", "--device",
               "cpu", log=log)  # fmt: skip
    result = {}
    for key, test in (("f1", data / "test"), ("shifted", data / "test-shift1")):
        if not (test / "synth.json").is_file():
            continue
        pred = dst / ("predict" if key == "f1" else "predict-shifted")
        shutil.rmtree(pred, ignore_errors=True)
        _wsdal("predict", str(test), "--model", str(dst / "train" / "model.pt"), "--out",
               str(pred), "--device", "cpu", log=log)  # fmt: skip
        result[key] = _evaluate(pred, test)["f1"]
    dle = json.loads((dst / "train" / "dle" / "done.json").read_text())
    result["unvalidated"] = sum(c.get("unvalidated", 0) for c in dle["classes"].values())
    result["dropped"] = sum(c.get("unvalidated_dropped", 0) for c in dle["classes"].values())
    result_path.write_text(json.dumps(result, indent=2))
    return result


def _interval(diffs: list[float]) -> str:
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return f"{mean:+.3f}"
    sd = statistics.stdev(diffs)
    half = t95(len(diffs) - 1) * sd / len(diffs) ** 0.5
    return f"{mean:+.3f} ± {sd:.3f} ({mean - half:+.3f} .. {mean + half:+.3f}), n = {len(diffs)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="a benchmarks/protocol.py folder")
    ap.add_argument("--data-seeds", default="0,1,2")
    ap.add_argument("--train-seeds", default="0")
    args = ap.parse_args()
    log = args.out / "commands.log"
    rows = []
    for seed in (int(s) for s in args.data_seeds.split(",")):
        data = args.out / f"data{seed}"
        for train_seed in (int(s) for s in args.train_seeds.split(",")):
            run = data / f"wsdal-seed{train_seed}"
            if not (run / "train" / "dmu" / "done.json").is_file():
                sys.exit(f"{run}: no finished WS-DAL run (run benchmarks/protocol.py first)")
            out = {}
            for name, drop in (("drop", True), ("keep", False)):
                dst = data / f"dle-{name}-seed{train_seed}"
                prepare(run, dst, drop=drop)
                out[name] = score(data, dst, log)
            rows.append((seed, train_seed, out["drop"], out["keep"]))
            print(f"data {seed} seed {train_seed}: drop {out['drop']} keep {out['keep']}",
                  file=sys.stderr, flush=True)  # fmt: skip
    print("| data seed | train seed | unvalidated | drop (method) | keep | drop, shifted | keep, "
          "shifted |\n|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for seed, train_seed, drop, keep in rows:
        print(f"| {seed} | {train_seed} | {drop['unvalidated']} | {drop['f1']:.3f} | "
              f"{keep['f1']:.3f} | {drop.get('shifted', float('nan')):.3f} | "
              f"{keep.get('shifted', float('nan')):.3f} |")  # fmt: skip
    for key in ("f1", "shifted"):
        pairs = [(d[key], k[key]) for _, _, d, k in rows if key in d and key in k]
        if not pairs:
            continue
        mean_d = statistics.mean(p[0] for p in pairs)
        mean_k = statistics.mean(p[1] for p in pairs)
        diff = _interval([k - d for d, k in pairs])
        wins = sum(k > d for d, k in pairs)
        print(f"{key}: drop {mean_d:.3f}, keep {mean_k:.3f}; keep - drop {diff}; "
              f"keep better in {wins} of {len(pairs)}")  # fmt: skip


if __name__ == "__main__":
    main()
