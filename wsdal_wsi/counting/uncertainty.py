"""How sure the hotspot count is, and whether the score could be another.

Each candidate in the hotspot window (the detections, and the near misses just below
the threshold) is a mitosis with its calibrated probability ``p_i``
(:mod:`wsdal_wsi.model.calibration`); treating them as independent, the number of
mitoses in the window follows a Poisson-binomial distribution. Its central interval
(90 % by default) is the **count range**; a slide is **borderline** when the Nottingham
score of the low end differs from that of the high end: the pathologist should count
that hotspot themselves. The reported count stays the number of detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wsdal_wsi.counting.grading import score_window
from wsdal_wsi.counting.hotspot import HotspotSettings
from wsdal_wsi.errors import ConfigError

__all__ = ["DEFAULT_LEVEL", "CountRange", "count_range", "poisson_binomial_pmf"]

#: The central probability of the count range.
DEFAULT_LEVEL = 0.9


def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """The distribution of the number of successes of independent Bernoulli(``p_i``) trials.

    Parameters
    ----------
    p : ndarray
        ``(N,)`` probabilities in [0, 1].

    Returns
    -------
    ndarray
        ``(N + 1,)`` float64: ``pmf[k] = P(sum = k)`` (exact recursion, O(N²)).
    """
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, 1.0)
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, q in enumerate(p, start=1):
        pmf[1 : i + 1] = pmf[1 : i + 1] * (1.0 - q) + pmf[0:i] * q
        pmf[0] *= 1.0 - q
    return pmf


@dataclass(frozen=True)
class CountRange:
    """The central interval of the hotspot's mitotic count, and the scores at its ends.

    Attributes
    ----------
    low, high : int
        The interval's ends: P(count < low) <= (1 - level) / 2 and likewise above high.
    expected : float
        The expected count (sum of the probabilities).
    level : float
        The central probability of the interval (0.9: 90 %).
    score_low, score_high : int
        The Nottingham mitotic score of ``low`` and of ``high`` (same window, same row).
    n_candidates : int
        Candidates the interval is computed from (detections and near misses in the window).
    """

    low: int
    high: int
    expected: float
    level: float
    score_low: int
    score_high: int
    n_candidates: int

    @property
    def borderline(self) -> bool:
        """The score could be another within the interval."""
        return self.score_low != self.score_high

    def describe(self) -> str:
        """E.g. ``"15-21 (90 %)"``."""
        return f"{self.low}-{self.high} ({self.level:.0%})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (with ``borderline``)."""
        return {
            "low": self.low,
            "high": self.high,
            "expected": self.expected,
            "level": self.level,
            "score_low": self.score_low,
            "score_high": self.score_high,
            "n_candidates": self.n_candidates,
            "borderline": self.borderline,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CountRange:
        """Inverse of :meth:`to_dict` (``borderline`` is derived)."""
        return cls(
            low=int(data["low"]),
            high=int(data["high"]),
            expected=float(data["expected"]),
            level=float(data["level"]),
            score_low=int(data["score_low"]),
            score_high=int(data["score_high"]),
            n_candidates=int(data.get("n_candidates", 0)),
        )


def count_range(
    probabilities: np.ndarray, *, settings: HotspotSettings, level: float = DEFAULT_LEVEL
) -> CountRange:
    """The count range of a window from its candidates' calibrated probabilities.

    Parameters
    ----------
    probabilities : ndarray
        ``(N,)`` calibrated p(mitosis) of the candidates in the window (in tissue).
    settings : HotspotSettings
        The window and the Nottingham row it is scored on.
    level : float
        Central probability of the interval, in (0, 1).

    Returns
    -------
    CountRange
    """
    if not (isinstance(level, float | int) and 0.0 < float(level) < 1.0):
        raise ConfigError(f"count range level must be in (0, 1), got {level!r}")
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    cdf = np.cumsum(poisson_binomial_pmf(p))
    tail = (1.0 - float(level)) / 2.0
    low = int(np.searchsorted(cdf, tail - 1e-12, side="left"))
    high = int(np.searchsorted(cdf, 1.0 - tail - 1e-12, side="left"))
    high = min(max(high, low), len(p))

    def score(count: int) -> int:
        return score_window(
            count,
            window_area_mm2=settings.area_mm2,
            field_diameter_mm=settings.field_diameter_mm,
        ).score

    return CountRange(
        low=low,
        high=high,
        expected=float(p.sum()),
        level=float(level),
        score_low=score(low),
        score_high=score(high),
        n_candidates=len(p),
    )
