"""Paired development comparison of stage settings, resumed from a finished run.

Each finished WS-DAL run of a ``benchmarks/protocol.py`` folder (``DATA/<base>-seedT``) is
copied once per variant up to the stage given by ``--redo-from`` (patch store linked, the
stages before it as they are), the variant's settings written into the copy's
``config.json``, and the copy resumed with ``wsdal train --resume`` (that stage and the
ones after it, threshold, cascade, model file), then scored with ``wsdal predict`` and
``wsdal evaluate`` on the data seed's test slides and, where the protocol made them, its
stain-shifted ones. Printed: one row per run, the means per variant, and each variant's
paired difference from the first one with its 95 % t-interval.

Run it on development data only: it is how defaults are chosen. The two comparisons in
``benchmarks/RESULTS.md``::

    python benchmarks/protocol.py --data-seeds dev --train-seeds 0,1,2 --out bench-dev
    # DLE: remove the hard samples it cannot validate (the method) or keep them (default)
    python benchmarks/variants.py --out bench-dev --data-seeds 0,1,2 --train-seeds 0,1,2 \\
        --redo-from dle --variant dle-drop:dle.drop_unvalidated=true \\
        --variant dle-keep:dle.drop_unvalidated=false
    # CSDGL: start from random / pretrained weights (the method) or DMU's trunk (default)
    python benchmarks/variants.py --out bench-dev --data-seeds 0,1,2 --train-seeds 0,1,2 \\
        --redo-from csdgl --variant csdgl-method:csdgl.init=pretrained \\
        --variant csdgl-dmu:csdgl.init=dmu

A variant ``NAME:stage.key=value[,stage.key=value...]`` lands in ``DATA/NAME-seedT``; values
are JSON (``true``, ``0.2``) or else strings. About 2.5 minutes per run and variant on the
2-core VM when redoing from DLE. A rerun reuses finished runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from protocol import _evaluate, _wsdal, t95

#: A training folder's stages in order, and what every resume from one of them makes again.
STAGES = ("ns", "dmu", "dle", "csdgl")
FINAL = {"threshold.json", "cascade", "model.pt", "summary.json"}


def parse_variant(text: str) -> tuple[str, dict[str, dict]]:
    """``"NAME:stage.key=value,..."`` -> ``(NAME, {stage: {key: value}})``."""
    name, _, spec = text.partition(":")
    if not name or not spec:
        raise SystemExit(f"--variant {text!r}: expected NAME:stage.key=value[,...]")
    changes: dict[str, dict] = {}
    for item in spec.split(","):
        key, eq, raw = item.partition("=")
        stage, dot, field = key.partition(".")
        if not eq or not dot:
            raise SystemExit(f"--variant {text!r}: {item!r} is not stage.key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes.setdefault(stage, {})[field] = value
    return name, changes


def prepare(run: Path, dst: Path, *, redo_from: str, changes: dict[str, dict]) -> None:
    """``dst/train``: ``run/train`` before stage ``redo_from``, with ``changes`` in its config."""
    if dst.exists():
        return
    redo = set(STAGES[STAGES.index(redo_from) :]) | FINAL
    if redo_from in ("ns", "dmu"):
        redo.add("audit")
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    for item in (run / "train").iterdir():
        if item.name in redo or item.name.startswith("ablation-"):
            continue
        if item.name == "store":
            (tmp / "train" / "store").symlink_to(item.resolve())
        elif item.is_dir():
            shutil.copytree(item, tmp / "train" / item.name)
        else:
            shutil.copy2(item, tmp / "train" / item.name)
    cfg_path = tmp / "train" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for stage, values in changes.items():
        if stage not in cfg["preset"] or not isinstance(cfg["preset"][stage], dict):
            raise SystemExit(f"{cfg_path}: no stage {stage!r} in the preset")
        cfg["preset"][stage].update(values)
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
    result_path.write_text(json.dumps(result, indent=2))
    return result


def interval(diffs: list[float]) -> str:
    """Mean ± sd (95 % t-interval), n of paired differences."""
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return f"{mean:+.3f}"
    sd = statistics.stdev(diffs)
    half = t95(len(diffs) - 1) * sd / len(diffs) ** 0.5
    return f"{mean:+.3f} ± {sd:.3f} ({mean - half:+.3f} .. {mean + half:+.3f}), n = {len(diffs)}"


def report(rows: list[tuple[int, int, dict[str, dict]]], names: list[str]) -> None:
    """The per-run table, the means and the paired differences from ``names[0]``."""
    head = " | ".join(names + [f"{n}, shifted" for n in names])
    print(f"| data seed | train seed | {head} |\n|---:|---:|" + "---:|" * (2 * len(names)))
    for seed, train_seed, out in rows:
        cells = [f"{out[n]['f1']:.3f}" for n in names]
        cells += [f"{out[n].get('shifted', float('nan')):.3f}" for n in names]
        print(f"| {seed} | {train_seed} | " + " | ".join(cells) + " |")
    first = names[0]
    for key in ("f1", "shifted"):
        have = [out for _, _, out in rows if all(key in out[n] for n in names)]
        if not have:
            continue
        means = ", ".join(f"{n} {statistics.mean(o[n][key] for o in have):.3f}" for n in names)
        print(f"{key}: {means}")
        for n in names[1:]:
            diffs = [o[n][key] - o[first][key] for o in have]
            wins = sum(d > 0 for d in diffs)
            print(f"  {n} - {first}: {interval(diffs)}; better in {wins} of {len(diffs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="a benchmarks/protocol.py folder")
    ap.add_argument("--data-seeds", default="0,1,2")
    ap.add_argument("--train-seeds", default="0")
    ap.add_argument("--base", default="wsdal", help="the runs copied: DATA/<base>-seedT")
    ap.add_argument("--redo-from", choices=STAGES[1:], required=True)
    ap.add_argument("--variant", action="append", required=True, help="NAME:stage.key=value")
    args = ap.parse_args()
    variants = dict(parse_variant(v) for v in args.variant)
    log = args.out / "commands.log"
    rows = []
    for seed in (int(s) for s in args.data_seeds.split(",")):
        data = args.out / f"data{seed}"
        for train_seed in (int(s) for s in args.train_seeds.split(",")):
            run = data / f"{args.base}-seed{train_seed}"
            before = STAGES[STAGES.index(args.redo_from) - 1]
            if not (run / "train" / before / "done.json").is_file():
                sys.exit(f"{run}: no finished {before} stage (run benchmarks/protocol.py first)")
            out = {}
            for name, changes in variants.items():
                dst = data / f"{name}-seed{train_seed}"
                prepare(run, dst, redo_from=args.redo_from, changes=changes)
                out[name] = score(data, dst, log)
            rows.append((seed, train_seed, out))
            print(f"data {seed} seed {train_seed}: {out}", file=sys.stderr, flush=True)
    report(rows, list(variants))


if __name__ == "__main__":
    main()
