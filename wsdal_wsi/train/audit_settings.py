"""What the label audit shows the pathologist: its settings (a preset's ``audit``).

Kept apart from :mod:`wsdal_wsi.train.presets` (which re-exports it) because it is
about the review, not about training a stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsdal_wsi.errors import ConfigError

__all__ = ["AuditSettings"]


@dataclass(frozen=True)
class AuditSettings:
    """What the label audit shows the pathologist (``RUN/audit/``, see
    :mod:`wsdal_wsi.train.audit`).

    An annotation is shown when DMU called it noisy (or never learned) in at
    least ``noisy_min_fraction`` of its patches **and** DMU's network agrees
    firmly: a ``Mitosis`` click only when its p(mitosis) is below
    ``click_max_p``, an unannotated candidate or a negative-class click only when
    its p(mitosis) is at least ``candidate_min_p``.

    Attributes
    ----------
    noisy_min_fraction : float
        DMU's verdict (0.5: most of the annotation's patches).
    click_max_p, candidate_min_p : float
        The agreement required (chosen on development data, see Notes).
    lookalike_min_p : float
        A ``Mitosis`` click is shown when the look-alike classifier
        (:mod:`wsdal_wsi.train.audit_lookalike`) gives it at least this p(look-alike)
        (0.45), instead of DMU's rule for clicks.
    lookalike_min_negatives : int
        Negative-class clicks the classifier needs (20); with fewer, clicks are
        judged by DMU's rule (``click_max_p``).
    lookalike_c : float
        Inverse L2 strength of the classifier's logistic regression (0.03).

    Notes
    -----
    Chosen on the development data (8 demo-preset runs on the ``wsdal demo`` data,
    data seed 0, against the injected noise; ``benchmarks/RESULTS.md``): DMU's
    verdict alone was right 45 % of the time for both kinds. Unannotated
    candidates at p >= 0.9: precision 0.92, recall 0.38 (0.85: 0.80 / 0.50).
    ``Mitosis`` clicks: DMU's network has fitted most wrong clicks (it trained on
    them), so its p separates them poorly: p < 0.1 gives precision 0.85 at recall
    0.04. The look-alike classifier (7 development runs on data seeds 0-2):
    precision 0.84 at recall 0.56 at p(look-alike) >= 0.45.
    """

    noisy_min_fraction: float = 0.5
    click_max_p: float = 0.1
    candidate_min_p: float = 0.9
    lookalike_min_p: float = 0.45
    lookalike_min_negatives: int = 20
    lookalike_c: float = 0.03

    def __post_init__(self) -> None:
        for name in ("noisy_min_fraction", "click_max_p", "candidate_min_p", "lookalike_min_p"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"audit.{name} must be within [0, 1], got {v!r}")
        n = self.lookalike_min_negatives
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"audit.lookalike_min_negatives must be an integer >= 0, got {n!r}")
        c = self.lookalike_c
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0:
            raise ConfigError(f"audit.lookalike_c must be a number > 0, got {c!r}")
