"""Accuracy protocol: WS-DAL against the baseline through the commands users run.

Data seeds are split once, here, into

* ``DEV_DATA_SEEDS``: development data, where settings are chosen (the label
  audit's agreement thresholds, :class:`wsdal_wsi.train.presets.AuditSettings`,
  were chosen on runs of the ``wsdal demo`` data, data seed 0);
* ``REPORT_DATA_SEEDS``: reporting data, never used to choose anything. Their
  numbers are what RESULTS.md reports.

``DEV_DATA_SEEDS`` 1 and 2 were added for the label audit's and the stain augmentation's
development runs.

Per data seed, the ``wsdal demo`` data set's settings: ``wsdal synth`` makes 4
training slides of 3072² px (220 mitoses and 220 look-alikes per mm² of tissue,
realistic click noise as the demo's: 15 % of the mitoses missed, false clicks on
look-alikes worth 15 % of the true clicks, ``Mitosis-like`` clicks on 20 % of the
other look-alikes) and 2 test slides of 8192² px (30
mitoses and 60 look-alikes per mm², data seed + 1000). Per training seed and
method: ``wsdal train --preset demo --method M --seed S``, ``wsdal predict`` on
the test slides, ``wsdal evaluate --json`` against their true mitoses (MIDOG
matching within 7.5 µm, micro-averaged). For WS-DAL runs the label audit
(``RUN/audit/review.csv``) is scored against the injected noise: a flagged
``Mitosis`` click is right when the click was false; a flagged unannotated
candidate when a missed mitosis lies within 7.5 µm.

Stain shift: the same test slides are made a second time with ``wsdal synth
--stain-shift S`` (``--stain-shift``, default 1: every slide's haematoxylin stronger
and bluer, its eosin paler, outside the training slides' range; the same figures in
the same places), and every model is scored on them too; printed per method: F1 on
the shifted slides and the paired drop (F1 on the originals - F1 on the shifted).
``--stain-jitter A`` trains with that stain augmentation (``wsdal train
--stain-jitter``) instead of the preset's; ``--stain-normalise`` /
``--no-stain-normalise`` train (and so predict) with or without stain normalisation
(``wsdal train --[no-]stain-normalise``; default: the tool's, on); use another ``--out``
per setting. Every run records the settings it ran with (``protocol.json``).
``--cascade-check`` also predicts every run with ``wsdal predict --no-cascade`` (every
candidate scored by the final network) and prints the paired F1 difference the
cascade makes.

Printed: one row per run; per method mean and sd of the test F1; the paired
difference WS-DAL - baseline (same data, same training seed) with its mean, sd and
95 % t-interval; audit precision / recall per reason, summed over the runs.

CPU here (2 cores): about 4 minutes per data seed and training seed (both methods)::

    python benchmarks/protocol.py --out bench-protocol                  # reporting seeds, seed 0
    python benchmarks/protocol.py --train-seeds 0,1,2 --out bench-protocol
    python benchmarks/protocol.py --data-seeds dev --out bench-protocol   # development data

Everything lands in ``--out``; a rerun reuses every finished step.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEV_DATA_SEEDS = (0, 1, 2)
#: 11-13 since the protocol was written; 14 and 15 added before any run on them, when the
#: interval of the first 9 pairs (3 data x 3 training seeds) was too wide to decide.
REPORT_DATA_SEEDS = (11, 12, 13, 14, 15)
METHODS = ("baseline", "wsdal")
ABLATIONS = ("ns", "ns_dmu", "ns_dmu_dle")
MATCH_UM = 7.5


def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (before
    2026-12-05 a table to 9 and 1.96 beyond, which made the 15-run intervals ~9 % narrow)."""
    from scipy.stats import t  # scikit-learn's dependency

    return float(t.ppf(0.975, df))


def _wsdal(*args: str, log: Path) -> None:
    cmd = [sys.executable, "-m", "wsdal_wsi", *args]
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)


COMMON = ["--tissue-fraction", "0.7", "--mpp", "0.25", "--negative-click-fraction", "0.2"]


def _test_slides(test: Path, seed: int, log: Path, *extra: str) -> Path:
    """The 2 test slides of one data seed in ``test`` (generated once); ``extra``: more
    ``wsdal synth`` options (the stain shift)."""
    if not (test / "synth.json").is_file():
        _wsdal("synth", str(test), "--slides", "2", "--seed", str(seed + 1000), "--size",
               "8192x8192", "--mitoses-per-mm2", "30", "--lookalikes-per-mm2", "60", "--prefix",
               "test_", *extra, *COMMON, log=log)  # fmt: skip
    return test


def make_shifted(root: Path, seed: int, shift: float, log: Path) -> Path:
    """The test slides of one data seed again, recoloured by ``--stain-shift shift``."""
    test = root / f"data{seed}" / f"test-shift{shift:g}"
    return _test_slides(test, seed, log, "--stain-shift", f"{shift:g}")


def make_data(root: Path, seed: int, log: Path) -> tuple[Path, Path]:
    """The training and test folders of one data seed (generated once)."""
    train = root / f"data{seed}" / "train"
    if not (train / "synth.json").is_file():
        _wsdal("synth", str(train), "--slides", "4", "--seed", str(seed), "--size", "3072x3072",
               "--mitoses-per-mm2", "220", "--lookalikes-per-mm2", "220", "--prefix", "train_",
               *COMMON, log=log)  # fmt: skip
    return train, _test_slides(root / f"data{seed}" / "test", seed, log)


def _config(run: Path) -> dict:
    """The run's resolved training settings (``wsdal train``'s ``config.json``)."""
    return json.loads((run / "train" / "config.json").read_text())


def run_one(
    root: Path,
    seed: int,
    train_seed: int,
    method: str,
    log: Path,
    *,
    stain_jitter: float | None = None,
    stain_normalise: bool | None = None,
    shift: float = 0.0,
) -> dict:
    """Train, predict, evaluate one method: its F1 and times (reused when done); with
    ``shift``, its F1 on the stain-shifted test slides too."""
    train, test = make_data(root, seed, log)
    run = root / f"data{seed}" / f"{method}-seed{train_seed}"
    result_path = run / "protocol.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result.get("stain_jitter") != stain_jitter:
            sys.exit(f"{run} was trained with --stain-jitter {result.get('stain_jitter')}")
        done = result.get("stain_normalise", False)
        if stain_normalise is not None and done != stain_normalise:
            sys.exit(f"{run} was trained with stain normalisation {done}")
        return _with_shift(result, run, root, seed, shift, log)
    t0 = time.perf_counter()
    resume = ["--resume"] if (run / "train" / "config.json").is_file() else []
    jitter = [] if stain_jitter is None else ["--stain-jitter", f"{stain_jitter:g}"]
    if stain_normalise is not None:
        jitter += ["--stain-normalise" if stain_normalise else "--no-stain-normalise"]
    _wsdal("train", str(train), "--out", str(run / "train"), "--preset", "demo", "--method",
           method, "--seed", str(train_seed), "--device", "cpu", *jitter, *resume,
           log=log)  # fmt: skip
    t1 = time.perf_counter()
    _wsdal("predict", str(test), "--model", str(run / "train" / "model.pt"), "--out",
           str(run / "predict"), "--device", "cpu", log=log)  # fmt: skip
    t2 = time.perf_counter()
    preset = _config(run)["preset"]  # the settings the run resolved and ran with
    result = {
        "data_seed": seed,
        "train_seed": train_seed,
        "method": method,
        "stain_jitter": stain_jitter,  # the flag (None: the preset's); what ran:
        "stain_jitter_resolved": preset.get("stain_jitter", 0.0),
        "stain_normalise": preset["extract"].get("stain_normalise", False),
        "threshold_se": preset.get("threshold_se", 0.0),
        **_evaluate(run / "predict", test),
        "train_s": round(t1 - t0, 1),
        "predict_s": round(t2 - t1, 1),
    }
    if method == "wsdal":
        result["audit"] = score_audit(run / "train", train)
    result_path.write_text(json.dumps(result, indent=2))
    return _with_shift(result, run, root, seed, shift, log)


def _with_shift(result: dict, run: Path, root: Path, seed: int, shift: float, log: Path) -> dict:
    """``result`` with ``shift{S}``: the model's F1 on the stain-shifted test slides."""
    key = f"shift{shift:g}"
    if shift <= 0 or key in result:
        return result
    test = make_shifted(root, seed, shift, log)
    return _score_again(result, run, test, key, log)


def _score_again(result: dict, run: Path, test: Path, key: str, log: Path, *extra: str) -> dict:
    """``result`` with ``key``: the run's model predicted on ``test`` into
    ``RUN/predict-{key}`` (``wsdal predict`` with ``extra`` options) and evaluated."""
    _wsdal("predict", str(test), "--model", str(run / "train" / "model.pt"), "--out",
           str(run / f"predict-{key}"), *extra, "--device", "cpu", log=log)  # fmt: skip
    result[key] = _evaluate(run / f"predict-{key}", test)
    (run / "protocol.json").write_text(json.dumps(result, indent=2))
    return result


def with_full_scoring(result: dict, run: Path, root: Path, seed: int, log: Path) -> dict:
    """``result`` with ``no_cascade``: the model's F1 on the test slides with every
    candidate scored by the final network (``wsdal predict --no-cascade``)."""
    if "no_cascade" in result:
        return result
    _, test = make_data(root, seed, log)
    return _score_again(result, run, test, "no_cascade", log, "--no-cascade")


def report_cascade(results: list[dict]) -> None:
    """Per method: F1 with the cascade (what ``wsdal predict`` does) less without it."""
    for m in METHODS:
        rs = [r for r in results if r["method"] == m and "no_cascade" in r]
        if rs:
            diffs = [r["f1"] - r["no_cascade"]["f1"] for r in rs]
            print(f"{m}: F1 with the cascade - without (paired): {_ci(diffs)}")


def run_ablations(root: Path, seed: int, train_seed: int, log: Path) -> list[dict]:
    """The stage ablations of a finished WS-DAL run: cross-entropy on the NS set, on the NS
    set without DMU's removals, on DLE's kept set (``train_ablation``, the same settings as
    the baseline), each predicted and evaluated by the commands users run."""
    _, test = make_data(root, seed, log)
    run = root / f"data{seed}" / f"wsdal-seed{train_seed}"
    out = []
    for variant in ABLATIONS:
        path = run / f"ablation-{variant}.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
            continue
        code = (
            "from wsdal_wsi.train.run import train_ablation; "
            f"train_ablation({str(run / 'train')!r}, {variant!r}, device='cpu')"
        )
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        t1 = time.perf_counter()
        model = run / "train" / f"ablation-{variant}" / "model.pt"
        _wsdal("predict", str(test), "--model", str(model), "--out",
               str(run / f"predict-{variant}"), "--device", "cpu", log=log)  # fmt: skip
        t2 = time.perf_counter()
        ev = _evaluate(run / f"predict-{variant}", test)
        result = {"data_seed": seed, "train_seed": train_seed, "method": f"ablation {variant}",
                  **ev, "train_s": round(t1 - t0, 1), "predict_s": round(t2 - t1, 1)}  # fmt: skip
        path.write_text(json.dumps(result, indent=2))
        out.append(result)
    return out


def _evaluate(pred: Path, test: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "wsdal_wsi", "evaluate", str(pred), str(test / "truth"), "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    ev = json.loads(out.stdout)
    total = ev.get("total", ev)
    return {k: total[k] for k in ("f1", "precision", "recall")}


def score_audit(run: Path, data: Path) -> dict:
    """Per reason: flagged, right, and how many wrong annotations of that kind there were."""
    with open(run / "audit" / "review.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    by_key: dict[str, tuple] = {}
    for noise_path in sorted((data / "truth").glob("*.noise.json")):
        noise = json.loads(noise_path.read_text())
        key = noise_path.name[: -len(".noise.json")]
        cxy = np.array([[c["x"], c["y"]] for c in noise["clicks"]]).reshape(-1, 2)
        bad = np.array([c["kind"] in ("false", "mislabelled") for c in noise["clicks"]], bool)
        missed = np.array([[m["x"], m["y"]] for m in noise["missed"]]).reshape(-1, 2)
        by_key[key] = (cxy, bad, missed)
    radius_px = MATCH_UM / 0.25
    train_keys = _train_keys(run)
    for reason, wrong_total in (
        ("click with no mitosis under it", sum(int(by_key[k][1].sum()) for k in train_keys)),
        ("likely mitosis not annotated", sum(len(by_key[k][2]) for k in train_keys)),
    ):
        mine = [r for r in rows if r["reason"] == reason]
        right = 0
        for r in mine:
            cxy, bad, missed = by_key[r["image_key"]]
            xy = np.array([float(r["x_level0"]), float(r["y_level0"])])
            if reason.startswith("click") and len(cxy):
                right += bool(bad[np.argmin(np.linalg.norm(cxy - xy, axis=1))])
            elif len(missed):
                right += bool(np.linalg.norm(missed - xy, axis=1).min() <= radius_px)
        out[reason] = {"flagged": len(mine), "right": right, "wrong_in_data": wrong_total}
    return out


def redo_audit(run: Path, data: Path) -> dict:
    """Rerun the label audit stage of a finished WS-DAL run (``run/train``) with the code
    of today, from its stored DMU outputs, and score it again (the old audit is kept in
    ``audit-before``). The stage is deterministic given DMU's outputs: the same as a
    fresh ``wsdal train`` with today's code would write."""
    import shutil

    import torch

    from wsdal_wsi.train.audit import write_audit
    from wsdal_wsi.train.audit_lookalike import click_lookalike
    from wsdal_wsi.train.common import StageContext
    from wsdal_wsi.train.dmu import read_dmu_table
    from wsdal_wsi.train.presets import Preset
    from wsdal_wsi.train.settings import read_run_config
    from wsdal_wsi.train.store import PatchStore

    train = run / "train"
    before = train / "audit-before"
    if not before.exists():
        shutil.move(train / "audit", before)
    shutil.rmtree(train / "audit", ignore_errors=True)
    preset = Preset.from_dict(read_run_config(train)["preset"])
    store, table = PatchStore(train / "store"), read_dmu_table(train / "dmu")
    ctx = StageContext(store=store, device=torch.device("cpu"), width=preset.width)
    write_audit(
        train / "audit", table, store, settings=preset.audit,
        click_lookalike=lambda: click_lookalike(ctx, train / "dmu", table, settings=preset.audit),
    )  # fmt: skip
    return score_audit(train, data)


def _train_keys(run: Path) -> list[str]:
    """The training-split image keys of a run (the audit covers those only)."""
    with open(run / "store" / "images.csv", encoding="utf-8") as fh:
        return [r["key"] for r in csv.DictReader(fh) if r["split"] == "train"]


def _ci(values: list[float]) -> str:
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return f"{mean:+.3f} (one run)"
    sd = statistics.stdev(values)
    half = t95(n - 1) * sd / math.sqrt(n)
    return f"{mean:+.3f} ± {sd:.3f} (95 % CI {mean - half:+.3f} .. {mean + half:+.3f}, n={n})"


def report_shift(results: list[dict], shift: float) -> None:
    """Per method: F1 on the stain-shifted test slides and the paired drop."""
    key = f"shift{shift:g}"
    for m in METHODS:
        rs = [r for r in results if r["method"] == m and key in r]
        if not rs:
            continue
        f1 = [r[key]["f1"] for r in rs]
        drop = [r["f1"] - r[key]["f1"] for r in rs]
        sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
        print(f"{m}, stain shift {shift:g}: F1 {statistics.fmean(f1):.3f} ± {sd:.3f}; "
              f"drop (original - shifted) {_ci(drop)}")  # fmt: skip
    by = {(r["data_seed"], r["train_seed"], r["method"]): r for r in results if key in r}
    diffs = [by[(d, s, "wsdal")][key]["f1"] - by[(d, s, "baseline")][key]["f1"]
             for (d, s, m) in by if m == "wsdal" and (d, s, "baseline") in by]  # fmt: skip
    if diffs:
        print(f"WS-DAL - baseline on the shifted slides (paired): {_ci(diffs)}")


def report_pairs(results: list[dict], shift: float) -> None:
    """One row per data and training seed: both methods' F1, their difference, and on the
    stain-shifted slides."""
    key = f"shift{shift:g}"
    by = {(r["data_seed"], r["train_seed"], r["method"]): r for r in results}
    pairs = sorted({(d, s) for d, s, m in by if m == "wsdal" and (d, s, "baseline") in by})
    if not pairs:
        return
    print("\n| data seed | train seed | baseline F1 | WS-DAL F1 | difference "
          "| baseline F1, shifted | WS-DAL F1, shifted |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for d, s in pairs:
        b, w = by[(d, s, "baseline")], by[(d, s, "wsdal")]
        shifted = [f"{r[key]['f1']:.3f}" if key in r else "" for r in (b, w)]
        print(f"| {d} | {s} | {b['f1']:.3f} | {w['f1']:.3f} | {w['f1'] - b['f1']:+.3f} | "
              + " | ".join(shifted) + " |")  # fmt: skip


def report(results: list[dict], seeds_name: str) -> None:
    print(f"# Accuracy protocol ({seeds_name} data seeds), demo preset, CPU")
    print(f"# {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| data seed | train seed | method | F1 | precision | recall | train s | predict s |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        scores = [f"{r[k]:.3f}" for k in ("f1", "precision", "recall")]
        cells = [r["data_seed"], r["train_seed"], r["method"], *scores]
        cells += [r["train_s"], r["predict_s"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    by = {(r["data_seed"], r["train_seed"], r["method"]): r for r in results}
    for m in METHODS:
        f1 = [r["f1"] for r in results if r["method"] == m]
        if f1:
            sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
            print(f"{m}: F1 {statistics.fmean(f1):.3f} ± {sd:.3f} over {len(f1)} runs")
    diffs = [by[(d, s, "wsdal")]["f1"] - by[(d, s, "baseline")]["f1"]
             for (d, s, m) in by if m == "wsdal" and (d, s, "baseline") in by]  # fmt: skip
    if diffs:
        print(f"WS-DAL - baseline (paired): {_ci(diffs)}")
    audit: dict[str, list[int]] = {}
    for r in results:
        for reason, a in (r.get("audit") or {}).items():
            t = audit.setdefault(reason, [0, 0, 0])
            t[0] += a["flagged"]
            t[1] += a["right"]
            t[2] += a["wrong_in_data"]
    for reason, (flagged, right, wrong) in audit.items():
        p = right / flagged if flagged else float("nan")
        print(f"audit '{reason}': {flagged} flagged, {right} right: precision {p:.2f}, "
              f"recall {right / max(wrong, 1):.2f} (of {wrong} in the data)")  # fmt: skip


def report_ablations(results: list[dict], ablations: list[dict]) -> None:
    """Each stage against the one before it, paired by data and training seed."""
    f1 = {(r["data_seed"], r["train_seed"], r["method"]): r["f1"] for r in results + ablations}
    steps = ["baseline", *(f"ablation {v}" for v in ABLATIONS), "wsdal"]
    pairs = sorted({(d, s) for d, s, m in f1 if m.startswith("ablation")})
    print("\n| data seed | train seed | " + " | ".join(steps) + " |")
    print("|---:|---:|" + "---:|" * len(steps))
    for d, s in pairs:
        cells = [f"{f1[(d, s, m)]:.3f}" if (d, s, m) in f1 else "" for m in steps]
        print(f"| {d} | {s} | " + " | ".join(cells) + " |")
    for before, after in itertools.pairwise(steps):
        diffs = [f1[(d, s, after)] - f1[(d, s, before)] for d, s in pairs
                 if (d, s, after) in f1 and (d, s, before) in f1]  # fmt: skip
        if diffs:
            print(f"{after} - {before}: {_ci(diffs)}")


def finished(
    root: Path, seeds: tuple[int, ...], train_seeds: str, methods: str
) -> tuple[list[dict], list[dict]]:
    """The results and ablations already in ``root`` for these seeds (nothing is run)."""
    results, ablations = [], []
    for seed in seeds:
        for train_seed in (int(s) for s in train_seeds.split(",")):
            for method in methods.split(","):
                run = root / f"data{seed}" / f"{method}-seed{train_seed}"
                if (run / "protocol.json").is_file():
                    results.append(json.loads((run / "protocol.json").read_text()))
                if method == "wsdal":
                    for variant in ABLATIONS:
                        path = run / f"ablation-{variant}.json"
                        if path.is_file():
                            ablations.append(json.loads(path.read_text()))
    return results, ablations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-seeds", default="report", help="'report', 'dev' or a comma list")
    ap.add_argument("--train-seeds", default="0")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=Path("bench-protocol"))
    ap.add_argument(
        "--ablations", action="store_true", help="also the stage ablations of each WS-DAL run"
    )
    ap.add_argument("--redo-audit", action="store_true",
                    help="rerun the label audit of the finished WS-DAL runs with today's code, "
                    "then report")  # fmt: skip
    ap.add_argument("--report-only", action="store_true",
                    help="print the tables of the finished runs in --out; run nothing")  # fmt: skip
    ap.add_argument(
        "--stain-shift",
        type=float,
        default=1.0,
        help="score every model on the test slides shifted by this (0: not)",
    )
    ap.add_argument("--stain-jitter", type=float, default=None,
                    help="wsdal train --stain-jitter (default: the preset's)")  # fmt: skip
    ap.add_argument("--stain-normalise", action=argparse.BooleanOptionalAction, default=None,
                    help="wsdal train --[no-]stain-normalise (default: the tool's)")  # fmt: skip
    ap.add_argument("--cascade-check", action="store_true",
                    help="also predict every run with --no-cascade and report the "
                    "difference the cascade makes")  # fmt: skip
    args = ap.parse_args()
    named = {"report": REPORT_DATA_SEEDS, "dev": DEV_DATA_SEEDS}
    if args.data_seeds in named:
        seeds = named[args.data_seeds]
    else:
        seeds = tuple(int(s) for s in args.data_seeds.split(","))
        if set(seeds) & set(REPORT_DATA_SEEDS) and set(seeds) - set(REPORT_DATA_SEEDS):
            sys.exit("mix of reporting and other data seeds: report them apart")
    if args.redo_audit:
        for seed in seeds:
            for train_seed in (int(s) for s in args.train_seeds.split(",")):
                run = args.out / f"data{seed}" / f"wsdal-seed{train_seed}"
                path = run / "protocol.json"
                result = json.loads(path.read_text())
                result["audit"] = redo_audit(run, args.out / f"data{seed}" / "train")
                path.write_text(json.dumps(result, indent=2))
                print(f"audit redone: {run}", file=sys.stderr, flush=True)
        args.report_only = True
    if args.report_only:
        results, ablations = finished(args.out, seeds, args.train_seeds, args.methods)
        report(results, args.data_seeds)
        report_shift(results, args.stain_shift)
        report_pairs(results, args.stain_shift)
        report_cascade(results)
        if ablations:
            report_ablations(results, ablations)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "commands.log"
    results: list[dict] = []
    ablations: list[dict] = []
    for seed in seeds:
        for train_seed in (int(s) for s in args.train_seeds.split(",")):
            for method in args.methods.split(","):
                print(f"data seed {seed}, training seed {train_seed}, {method} ...",
                      file=sys.stderr, flush=True)  # fmt: skip
                result = run_one(args.out, seed, train_seed, method, log,
                                 stain_jitter=args.stain_jitter,
                                 stain_normalise=args.stain_normalise,
                                 shift=args.stain_shift)  # fmt: skip
                if args.cascade_check:
                    run = args.out / f"data{seed}" / f"{method}-seed{train_seed}"
                    result = with_full_scoring(result, run, args.out, seed, log)
                results.append(result)
            if args.ablations and "wsdal" in args.methods.split(","):
                ablations.extend(run_ablations(args.out, seed, train_seed, log))
    (args.out / "results.json").write_text(json.dumps(results + ablations, indent=2))
    report(results, args.data_seeds)
    report_shift(results, args.stain_shift)
    report_pairs(results, args.stain_shift)
    report_cascade(results)
    if ablations:
        report_ablations(results, ablations)


if __name__ == "__main__":
    main()
