"""DMU's verdicts from its memory counts: outcomes, what leaves the set, forget and SCD rates.

Pure numpy functions of the per-sample counts that :class:`wsdal_wsi.train.dmu.DMUMemory`
keeps (``wsdal-method.md`` §4 and our readings, marked * in :mod:`wsdal_wsi.train.dmu`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "dmu_removed",
    "forget_rate",
    "grouped_outcomes",
    "sample_outcomes",
    "scd_rates",
    "unlearned_classes",
]


def sample_outcomes(
    n_clean: np.ndarray,
    n_hard: np.ndarray,
    n_noisy: np.ndarray,
    *,
    noisy_min_fraction: float,
    clean_min_fraction: float,
) -> np.ndarray:
    """Outcome per sample from its status counts: ``(M,)`` str in clean / hard / noisy."""
    total = np.maximum(n_clean + n_hard + n_noisy, 1)
    out = np.full(len(total), "hard", dtype=object)
    clean = n_clean / total >= clean_min_fraction
    noisy = n_noisy / total >= noisy_min_fraction
    out[clean] = "clean"
    out[noisy] = "noisy"
    return out


def grouped_outcomes(
    group: np.ndarray,
    n_clean: np.ndarray,
    n_hard: np.ndarray,
    n_noisy: np.ndarray,
    ever_correct: np.ndarray,
    *,
    noisy_min_fraction: float,
    clean_min_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One outcome per annotation: the members of a group share it.

    Parameters
    ----------
    group : ndarray ``(M,)`` int
        Annotation of each sample (a click and its jittered copies share one).
    n_clean, n_hard, n_noisy : ndarray ``(M,)`` int
        Each sample's status counts over the post-warm-up epochs.
    ever_correct : ndarray ``(M,)`` bool
        Whether the sample's fused prediction was ever right.
    noisy_min_fraction, clean_min_fraction : float
        As :func:`sample_outcomes`, applied to the group's summed counts.

    Returns
    -------
    outcome : ndarray ``(M,)`` str
        The group's outcome (clean / hard / noisy) for every member.
    never_learned : ndarray ``(M,)`` bool
        True for every member of a group none of whose members was ever right.
    """
    _, g = np.unique(np.asarray(group), return_inverse=True)
    k = int(g.max()) + 1 if len(g) else 0

    def total(v: np.ndarray) -> np.ndarray:
        return np.bincount(g, weights=np.asarray(v, np.float64), minlength=k)

    out = sample_outcomes(
        total(n_clean),
        total(n_hard),
        total(n_noisy),
        noisy_min_fraction=noisy_min_fraction,
        clean_min_fraction=clean_min_fraction,
    )
    never = total(np.asarray(ever_correct, bool)) == 0
    return out[g], never[g]


def dmu_removed(table: dict[str, np.ndarray], *, keep_negative_clicks: bool = True) -> np.ndarray:
    """Samples of a DMU table that leave the training set: ``(M,)`` bool.

    Noisy or never-learned samples, except negative-class clicks when
    ``keep_negative_clicks`` (the pathologist's explicit look-alike labels are
    audited, not removed), never a trusted sample (the pathologist's answer to the
    tool; tables written before the ``trusted`` column have none), and none of a class
    DMU learnt no label of (:func:`unlearned_classes`).
    """
    bad = (np.asarray(table["outcome"]) == "noisy") | np.asarray(table["never_learned"]).astype(
        bool
    )
    if keep_negative_clicks:
        bad &= np.asarray(table["origin"]) != "negative_click"
    label = np.asarray(table["label"]).astype(np.int64)
    for c in unlearned_classes(table):
        bad &= label != c
    return bad & ~trusted_samples(table)


def unlearned_classes(table: dict[str, np.ndarray]) -> list[int]:
    """Labels of which DMU called not one sample clean (ascending).

    A network that agrees with no label of a class has not learnt the class (a tiny
    network on a few slides), so its verdicts on those labels are no evidence that
    they are wrong: removing them all would leave the class empty.
    """
    label = np.asarray(table["label"]).astype(np.int64)
    clean = (np.asarray(table["outcome"]) == "clean") & ~np.asarray(table["never_learned"]).astype(
        bool
    )
    return [int(c) for c in np.unique(label) if not np.any(clean & (label == c))]


def trusted_samples(table: dict[str, np.ndarray]) -> np.ndarray:
    """``(M,)`` bool: the samples of a DMU table that carry a pathologist's answer."""
    if "trusted" not in table:
        return np.zeros(len(table["outcome"]), bool)
    return np.asarray(table["trusted"]).astype(np.int64).astype(bool)


def forget_rate(n_learn: np.ndarray, n_forget: np.ndarray) -> np.ndarray:
    """forget / (forget + learn), 0 where both are 0."""
    tot = n_learn + n_forget
    return np.where(tot > 0, n_forget / np.maximum(tot, 1), 0.0)


def scd_rates(
    features: np.ndarray, labels: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sample-to-class-centre distance, raw and min-max normalised per class.

    Parameters
    ----------
    features : ndarray ``(M, D)``
    labels : ndarray ``(M,)``
    reference : ndarray ``(M,)`` bool
        Samples that define each class centre (all of the class when none is set).

    Returns
    -------
    scd, scd_rate : ndarray ``(M,)`` float64
    """
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    scd = np.zeros(len(f))
    rate = np.zeros(len(f))
    for c in np.unique(labels):
        m = labels == c
        ref = m & reference if np.any(m & reference) else m
        centre = f[ref].mean(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        d = np.linalg.norm(f[m] - centre, axis=1)
        scd[m] = d
        span = d.max() - d.min()
        rate[m] = (d - d.min()) / span if span > 0 else 0.0
    return scd, rate
