"""Stage 3, Difficulty Level Evaluation (DLE): levels of the hard samples, validated.

Per class, the samples DMU called ``hard`` are clustered into ``levels`` (3)
difficulty levels by a Gaussian mixture on ``(forget_rate, scd_rate)``; level 0 is
the hardest (highest mean forget_rate + scd_rate), level ``levels - 1`` the
mildest, and clean samples get level ``levels`` (easy). The levels are then
validated, as the method says: a small class-balanced 3-way classifier on the DMU
network's pooled features predicts each hard sample's level out-of-fold over
``draws`` repeated 2-fold splits; a hard sample is kept only if it was predicted
as its own level in at least ``min_fraction`` of its draws. Noisy and
never-learned samples and unvalidated hard samples leave the training set.

The classifier (``DLESettings.validator``) is a network by default
(:func:`network_predict`: one hidden layer of 64 ReLU units with dropout on
standardised features, class-balanced cross-entropy, Adam for a fixed number of
steps, seeded; its size is ours) or a class-balanced logistic regression
(``"logistic"``, :func:`logistic_predict`, the only one before). On development
data (data seed 0, demo run, DLE seeds 0-4, against the injected noise) both kept
equally clean sets (96.8 % right labels; 46.0 +- 1.4 wrong labels kept by the
network, 45.8 +- 2.6 by the regression) and the network dropped fewer right labels
(141 +- 5 against 148 +- 1), so the method's network is the default
(``docs/METHOD.md``).

The pathologist's negative-class clicks (``Mitosis-like``, ``Non-mitosis``, ...)
are protected (``keep_negative_clicks``, ours): they are the explicitly labelled
look-alikes, the hard negatives the method exists for, and a network that has not
yet learnt to tell them from mitoses disagrees with them *because* they are hard,
not because they are wrong (on the benchmark's synthetic slides, where none is
wrong, DMU called 25-35 % of them noisy). They keep their place in the DMU table
and the label audit (a pathologist can review them), but never leave the set: a
noisy one joins the hard samples to get a level, and an unvalidated one is kept.

A class none of whose labels DMU learnt (not one clean sample: a network that has
not learnt the class, as on a few slides with a tiny network) is not a class of wrong
labels: none of its samples is removed (:func:`~wsdal_wsi.train.dmu_outcomes.dmu_removed`),
and they join the hard ones (ours; without it, such a run loses every mitosis and
cannot train its last stage).

Every kept sample gets a subclass ``label * (levels + 1) + level`` (2 x 4 = 8).

Outputs in ``RUN/dle/``: ``levels.csv`` (index, row, label, outcome, level,
subclass, hits, draws, kept), ``done.json``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from wsdal_wsi.train.common import SampleSet, StageDir, read_table
from wsdal_wsi.train.dmu_outcomes import dmu_removed, trusted_samples, unlearned_classes
from wsdal_wsi.train.presets import DLE_VALIDATORS as VALIDATORS
from wsdal_wsi.train.presets import DLESettings

__all__ = [
    "VALIDATORS",
    "DLESettings",
    "assign_levels",
    "logistic_predict",
    "network_predict",
    "read_levels",
    "run_dle",
    "validate_levels",
]

log = logging.getLogger(__name__)


def assign_levels(x: np.ndarray, *, levels: int = 3, seed: int = 0) -> np.ndarray:
    """Cluster ``x (n, 2)`` (forget_rate, scd_rate) into difficulty levels.

    Returns
    -------
    ndarray ``(n,)`` int64
        0 = hardest (largest component mean of forget_rate + scd_rate) ... levels-1.
        Components left empty are dropped, so fewer levels may be used.
    """
    n = len(x)
    k = min(levels, n)
    if k <= 1:
        return np.zeros(n, np.int64)
    # jitter-free but robust: a small covariance floor for degenerate (constant) columns
    gm = GaussianMixture(
        n_components=k, covariance_type="full", reg_covar=1e-4, random_state=seed, n_init=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = gm.fit_predict(x)
    used = np.unique(comp)
    difficulty = np.array([x[comp == c].sum(axis=1).mean() for c in used])
    order = used[np.argsort(-difficulty, kind="stable")]
    level = np.empty(n, np.int64)
    for lv, c in enumerate(order):
        level[comp == c] = lv
    return level


def validate_levels(
    features: np.ndarray,
    level: np.ndarray,
    *,
    draws: int = 10,
    seed: int = 0,
    validator: str = "network",
) -> np.ndarray:
    """Out-of-fold hits: how often each sample was predicted as its own level.

    Parameters
    ----------
    features : ndarray ``(n, D)``
    level : ndarray ``(n,)`` int
    draws : int
        Repeats of a stratified 2-fold split; each sample is predicted once per repeat.
    seed : int
        Seeds the splits and the network's weights, batches and dropout.
    validator : {"network", "logistic"}
        The 3-way classifier: a small network (:func:`network_predict`) or a
        logistic regression (:func:`logistic_predict`), both class-balanced, on
        standardised features.

    Returns
    -------
    ndarray ``(n,)`` int64
        Hits in ``[0, draws]``. Samples of a level with fewer than 2 members cannot
        be cross-validated and get 0 hits.

    Raises
    ------
    ValueError
        For an unknown ``validator``.
    """
    if validator not in VALIDATORS:
        raise ValueError(f"validator must be one of {', '.join(VALIDATORS)}, got {validator!r}")
    n = len(level)
    hits = np.zeros(n, np.int64)
    counts = np.bincount(level)
    ok = counts[level] >= 2
    if len(np.unique(level[ok])) < 2:
        hits[ok] = draws  # one level only: nothing to confuse it with
        return hits
    x = StandardScaler().fit_transform(features[ok].astype(np.float64))
    y = level[ok]
    idx = np.flatnonzero(ok)
    for r in range(draws):
        split_seed = seed * 7919 + r
        skf = StratifiedKFold(n_splits=2, shuffle=True, random_state=split_seed)
        for fold, (tr, te) in enumerate(skf.split(x, y)):
            if len(np.unique(y[tr])) < 2:
                continue
            if validator == "logistic":
                pred = logistic_predict(x[tr], y[tr], x[te])
            else:
                pred = network_predict(x[tr], y[tr], x[te], seed=2 * split_seed + fold)
            hits[idx[te]] += pred == y[te]
    return hits


def logistic_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Levels of ``x_test`` by a class-balanced logistic regression (C = 0.5)."""
    clf = LogisticRegression(class_weight="balanced", max_iter=500, C=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x_train, y_train)
    return clf.predict(x_test)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one CPU thread inside, as many as before after.

    The validator's steps are products of a few hundred by 64 values: a second thread
    only adds a barrier per operation, and where the cores are busy (another job, a
    Ray worker beside it) every barrier waits for a core. On the 2-core VM, 200 steps
    took 0.38 s on one thread, 1.7 s on two, and 25 s on two beside a training run
    (the same predictions each time).
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def network_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int = 0,
    hidden: int = 64,
    dropout: float = 0.2,
    steps: int = 200,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
) -> np.ndarray:
    """Levels of ``x_test`` by a small class-balanced network trained on ``x_train``.

    One hidden layer of ``hidden`` ReLU units with dropout, then a linear layer to
    the classes of ``y_train``; cross-entropy weighted by inverse class frequency
    (as ``class_weight="balanced"``); Adam for ``steps`` mini-batch steps
    (``batch_size``; the whole set when smaller), batches drawn without
    replacement, epoch by epoch. CPU, float32, one thread (:func:`_one_thread`);
    weights, batches and dropout come from a private generator seeded with ``seed``
    (the global torch RNG is not touched), so the result is the same for the same
    inputs and seed.
    """
    classes, y = np.unique(y_train, return_inverse=True)
    gen = torch.Generator().manual_seed(int(seed))
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    n, d = xt.shape
    k = len(classes)

    def uniform(*shape: int, fan_in: int) -> torch.Tensor:
        bound = 1.0 / np.sqrt(fan_in)  # torch.nn.Linear's default initialisation
        w = (torch.rand(*shape, generator=gen) * 2 - 1) * bound
        return w.requires_grad_()

    params = [uniform(d, hidden, fan_in=d), uniform(hidden, fan_in=d)]
    params += [uniform(hidden, k, fan_in=hidden), uniform(k, fan_in=hidden)]
    w1, b1, w2, b2 = params
    weight = torch.as_tensor(n / (k * np.bincount(y, minlength=k)), dtype=torch.float32)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    bs = min(batch_size, n)
    order = torch.randperm(n, generator=gen)
    pos = 0
    with torch.enable_grad(), _one_thread():
        for _ in range(steps):
            if pos + bs > n:
                order, pos = torch.randperm(n, generator=gen), 0
            b = order[pos : pos + bs]
            pos += bs
            h = torch.relu(xt[b] @ w1 + b1)
            keep = (torch.rand(h.shape, generator=gen) >= dropout).float() / (1.0 - dropout)
            loss = F.cross_entropy((h * keep) @ w2 + b2, yt[b], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        xs = torch.as_tensor(x_test, dtype=torch.float32)
        logits = torch.relu(xs @ w1 + b1) @ w2 + b2
    return classes[logits.argmax(dim=1).numpy()]


def read_levels(out_dir: Path) -> dict[str, np.ndarray]:
    """The ``levels.csv`` table of a finished DLE stage."""
    return read_table(Path(out_dir) / "levels.csv")


def kept_samples(out_dir: Path) -> tuple[SampleSet, np.ndarray]:
    """The DLE-kept samples and their subclasses ``(M,)``."""
    t = read_levels(out_dir)
    keep = t["kept"].astype(bool)
    s = SampleSet(
        t["row"][keep].astype(np.int64),
        t["label"][keep].astype(np.int64),
        t["origin"][keep].astype(object),
    )
    return s, t["subclass"][keep].astype(np.int64)


def _validated_levels(
    rates: np.ndarray, features: np.ndarray, settings: DLESettings, *, seed: int, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class's hard samples: their levels, hits, and whether each validated."""
    level = assign_levels(rates, levels=settings.levels, seed=seed)
    hits = validate_levels(
        features, level, draws=settings.draws, seed=split_seed, validator=settings.validator
    )
    return level, hits, hits >= settings.min_fraction * settings.draws


def run_dle(
    out_dir: Path,
    table: dict[str, np.ndarray],
    features: np.ndarray,
    settings: DLESettings,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the DLE stage on a DMU table and features; return its statistics."""
    stage = StageDir(out_dir)
    if (done := stage.done) is not None:
        return done
    n = len(table["label"])
    label = table["label"].astype(np.int64)
    outcome = table["outcome"].astype(object)
    never = table["never_learned"].astype(bool)
    removed = dmu_removed(table, keep_negative_clicks=settings.keep_negative_clicks)
    unlearned = unlearned_classes(table)
    for c in unlearned:
        log.warning("DMU learnt no label of class %d: none of them is removed", c)
    protected = trusted_samples(table)
    if settings.keep_negative_clicks:
        protected |= np.asarray(table["origin"]) == "negative_click"
    x = np.stack([table["forget_rate"], table["scd_rate"]], axis=1).astype(np.float64)
    level = np.full(n, -1, np.int64)
    hits = np.zeros(n, np.int64)
    draws = np.zeros(n, np.int64)
    clean = (outcome == "clean") & ~never
    level[clean] = settings.levels
    kept = clean.copy()
    per_class: dict[str, Any] = {}
    for c in (0, 1):
        # hard samples, and protected ones DMU would have removed (noisy / never learned)
        hard = np.flatnonzero((label == c) & ~clean & ~removed)
        info: dict[str, Any] = {"hard": len(hard), "protected": int(np.sum(protected[hard]))}
        info["unlearned"] = c in unlearned
        if len(hard) < settings.min_hard:
            level[hard] = settings.levels // 2
            kept[hard] = True
            info["validated"] = False
        else:
            level[hard], hits[hard], ok = _validated_levels(
                x[hard], features[hard], settings, seed=seed, split_seed=seed + c
            )
            draws[hard] = settings.draws
            stays = ok | protected[hard] | (not settings.drop_unvalidated)
            kept[hard[stays]] = True
            info["validated"] = True
            info["unvalidated"] = int(np.sum(~ok))
            info["unvalidated_dropped"] = int(np.sum(~stays))
            info["unvalidated_protected"] = int(np.sum(~ok & protected[hard]))
        info["per_level"] = {
            str(lv): int(np.sum((label == c) & (level == lv) & kept))
            for lv in range(settings.levels + 1)
        }
        per_class[f"label{c}"] = info
    subclass = np.where(kept, label * (settings.levels + 1) + level, -1)
    stage.save_table(
        "levels.csv",
        {
            "index": table["index"],
            "row": table["row"],
            "label": label,
            "origin": table["origin"],
            "outcome": outcome,
            "level": level,
            "subclass": subclass,
            "hits": hits,
            "draws": draws,
            "kept": kept.astype(np.int64),
            "protected": protected.astype(np.int64),
        },
    )
    stats = {
        "stage": "dle",
        "validator": settings.validator,
        "drop_unvalidated": settings.drop_unvalidated,
        "n_in": int(n),
        "n_kept": int(kept.sum()),
        "dropped_noisy": int(np.sum(removed)),
        "protected_negative_clicks": int(np.sum(protected & (table["origin"] == "negative_click"))),
        "protected_trusted": int(np.sum(trusted_samples(table))),
        "classes": per_class,
    }
    return stage.write_done(stats)
