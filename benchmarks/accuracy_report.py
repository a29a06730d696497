"""The tables of ``benchmarks/accuracy.py``: mean, spread and paired gaps over seeds."""

from __future__ import annotations

import numpy as np


def _stats(values: list[float]) -> dict:
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": len(v),
    }


def _pm(st: dict) -> str:
    if st["mean"] is None:
        return "n/a"
    return f"{st['mean']:.3f} ± {st['std']:.3f}"


def _f(v) -> str:
    return "  n/a" if v is None else f"{v:.3f}"


def report(per_seed: dict, seeds: list[int]) -> dict:
    """Print the tables; return the aggregate (mean, std, range per method and metric)."""
    methods = list(next(iter(per_seed.values()))["scores"])
    agg: dict = {"methods": {}, "gaps": {}, "dmu_flags": {}, "costs": {}}
    print(
        f"\n{'method':<26} {'F1 (mean ± sd)':>15} {'per seed':>24} {'prec':>6} {'recall':>6} "
        f"{'FP look':>7} {'oracle F1':>10} {'thresh':>14}"
    )
    for k in methods:
        col = {
            m: [per_seed[s]["scores"][k][m] for s in seeds] for m in per_seed[seeds[0]]["scores"][k]
        }
        st = {m: _stats(v) for m, v in col.items() if m not in ("oracle_threshold",)}
        agg["methods"][k] = st
        seeds_txt = " ".join(f"{v:.3f}" for v in col["f1"])
        thr = " ".join(f"{v:.2f}" for v in col["threshold"])
        print(
            f"{k:<26} {_pm(st['f1']):>15} {seeds_txt:>24} {st['precision']['mean']:>6.3f} "
            f"{st['recall']['mean']:>6.3f} {st['fp_on_lookalikes']['mean']:>7.1f} "
            f"{_pm(st['oracle_f1']):>10} {thr:>14}"
        )
    for k in methods:
        if k == "baseline" or "baseline" not in methods:
            continue
        gaps = [
            per_seed[s]["scores"][k]["f1"] - per_seed[s]["scores"]["baseline"]["f1"] for s in seeds
        ]
        ogaps = [
            per_seed[s]["scores"][k]["oracle_f1"] - per_seed[s]["scores"]["baseline"]["oracle_f1"]
            for s in seeds
        ]
        agg["gaps"][k] = {"f1": _stats(gaps), "oracle_f1": _stats(ogaps), "per_seed": gaps}
        print(
            f"{k} - baseline F1: {_pm(_stats(gaps))} (per seed "
            f"{' '.join(f'{g:+.3f}' for g in gaps)}); oracle F1 gap {_pm(_stats(ogaps))}"
        )
    if all("dmu_flags" in per_seed[s] for s in seeds):
        print(
            f"\nDMU noisy flags vs injected noise (mean over seeds): {'group':<24} {'n':>5} "
            f"{'wrong':>5} {'flagged':>7} {'prec':>13} {'recall':>13}"
        )
        for g in per_seed[seeds[0]]["dmu_flags"]:
            rows = [per_seed[s]["dmu_flags"][g] for s in seeds]
            st = {
                m: _stats([r[m] for r in rows])
                for m in ("n", "wrong", "flagged", "precision", "recall")
            }
            agg["dmu_flags"][g] = st
            print(
                f"{'':<52}{g:<24} {st['n']['mean']:>5.0f} {st['wrong']['mean']:>5.1f} "
                f"{st['flagged']['mean']:>7.1f} {_pm(st['precision']):>13} {_pm(st['recall']):>13}"
            )
    names = sorted({n for s in seeds for n in per_seed[s]["costs"]})
    print("\ntraining cost per seed (mean over seeds): wall s / CPU s")
    for n in names:
        w = _stats([per_seed[s]["costs"].get(n, {}).get("wall_s") for s in seeds])
        c = _stats([per_seed[s]["costs"].get(n, {}).get("cpu_s") for s in seeds])
        agg["costs"][n] = {"wall_s": w, "cpu_s": c}
        print(f"  {n:<22} {_f(w['mean']):>8} / {_f(c['mean']):>8}")
    return agg
