"""Calibrated probabilities: what a detection's score says about how often it is a mitosis.

A network's p(mitosis) ranks candidates well but is not a frequency: of the candidates
scored 0.8, far more or far fewer than 80 % may be mitoses. Platt scaling on the
validation slides fixes that with one monotone map, ``p_cal = sigmoid(a * logit(p) + b)``
(``a > 0``; temperature scaling is the case ``b = 0``): the ranking and therefore the
detections do not change, only what their probabilities mean. Calibrated probabilities
give the count interval of the hotspot (:mod:`wsdal_wsi.counting.uncertainty`) and rank
the review list. The fit is stored in the model file with the expected calibration error
(ECE, 10 equal-width bins) before and after.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Calibration", "expected_calibration_error", "fit_calibration"]

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(q) - np.log1p(-q)


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the network's p(mitosis) to a calibrated probability.

    Attributes
    ----------
    a, b : float
        ``p_cal = sigmoid(a * logit(p) + b)``; ``a > 0``. The identity is ``(1, 0)``.
    n, n_positive : int
        Validation candidates the map was fitted on, and how many were mitoses.
    ece_before, ece_after : float or None
        Expected calibration error of the raw and the calibrated probabilities on those
        candidates (in-sample: the fit has two parameters).
    """

    a: float = 1.0
    b: float = 0.0
    n: int = 0
    n_positive: int = 0
    ece_before: float | None = None
    ece_after: float | None = None

    @property
    def is_identity(self) -> bool:
        """True when the map changes nothing (no fit, or too little data)."""
        return self.a == 1.0 and self.b == 0.0

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of ``p`` (any shape, float64 out)."""
        p = np.asarray(p, dtype=np.float64)
        if self.is_identity:
            return p.copy()
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the model file's ``calibration``)."""
        return {"method": "platt", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        """Inverse of :meth:`to_dict`; the identity for None or an empty dict (older models)."""
        if not data:
            return cls()
        known = ("a", "b", "n", "n_positive", "ece_before", "ece_after")
        return cls(**{k: data[k] for k in known if k in data})


def expected_calibration_error(p: np.ndarray, y: np.ndarray, *, bins: int = 10) -> float | None:
    """ECE: the mean |observed frequency - mean probability| over equal-width bins, weighted.

    Parameters
    ----------
    p : ndarray
        ``(N,)`` probabilities.
    y : ndarray
        ``(N,)`` 0/1 outcomes.
    bins : int
        Equal-width bins over [0, 1].

    Returns
    -------
    float or None
        None for no data.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if p.size == 0:
        return None
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(float(y[m].mean()) - float(p[m].mean()))
    return float(total / p.size)


def fit_calibration(p: np.ndarray, y: np.ndarray, *, min_positive: int = 5) -> Calibration:
    """Fit Platt scaling of ``p`` to the outcomes ``y`` (validation candidates).

    Parameters
    ----------
    p : ndarray
        ``(N,)`` the network's p(mitosis) of validation candidates.
    y : ndarray
        ``(N,)`` 1 where the candidate is an annotated mitosis, else 0.
    min_positive : int
        Fewer mitoses (or fewer non-mitoses) than this: the identity, recorded with
        its ECE (a two-parameter fit on a handful of points would be noise).

    Returns
    -------
    Calibration
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.int64).ravel()
    n_pos = int(y.sum())
    before = expected_calibration_error(p, y)
    if n_pos < min_positive or (len(y) - n_pos) < min_positive:
        return Calibration(n=len(y), n_positive=n_pos, ece_before=before, ece_after=before)
    a, b = _logistic_fit(_logit(p), y)
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
        return Calibration(n=len(y), n_positive=n_pos, ece_before=before, ece_after=before)
    cal = Calibration(a=a, b=b, n=len(y), n_positive=n_pos, ece_before=before)
    return Calibration(
        a=a,
        b=b,
        n=len(y),
        n_positive=n_pos,
        ece_before=before,
        ece_after=expected_calibration_error(cal.apply(p), y),
    )


def _logistic_fit(z: np.ndarray, y: np.ndarray, *, prior: float = 1.0) -> tuple[float, float]:
    """Maximum a-posteriori ``(a, b)`` of ``P(y=1) = sigmoid(a z + b)`` by damped Newton.

    ``z``: ``(N,)`` float64 log-odds; ``y``: ``(N,)`` 0/1. A Gaussian prior of strength
    ``prior`` centred on the identity ``(1, 0)`` keeps the fit finite when the
    validation candidates are (nearly) separable, where the plain maximum likelihood
    runs off to infinity; with hundreds of candidates it moves the fit very little.
    """
    x = np.column_stack([z, np.ones_like(z)])
    centre = np.array([1.0, 0.0])
    w = centre.copy()

    def loss(v: np.ndarray) -> float:
        t = x @ v
        return float(np.sum(np.logaddexp(0.0, t) - y * t) + 0.5 * prior * np.sum((v - centre) ** 2))

    current = loss(w)
    for _ in range(100):
        q = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -500, 500)))
        grad = x.T @ (q - y) + prior * (w - centre)
        hess = (x * (q * (1 - q))[:, None]).T @ x + prior * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6 and loss(w - scale * step) > current:
            scale /= 2
        w = w - scale * step
        new = loss(w)
        if abs(current - new) < 1e-10 * max(1.0, abs(current)):
            break
        current = new
    return float(w[0]), float(w[1])
