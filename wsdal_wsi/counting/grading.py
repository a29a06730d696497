"""The Nottingham (Elston-Ellis) mitotic score, for a count in a counting window.

Pure functions, no I/O. The table is the one in ``grading.md`` (counts per
10 high-power fields (HPF) for a microscope field diameter):

=========  ==========  =======  ========  =======
Ø (mm)     HPF (mm²)   score 1  score 2   score 3
=========  ==========  =======  ========  =======
0.40       0.126       <= 4     5-9       >= 10
0.44       0.152       <= 5     6-11      >= 12
0.50       0.196       <= 7     8-14      >= 15
0.55       0.238       <= 8     9-17      >= 18
0.59       0.274       <= 9     10-19     >= 20
0.63       0.312       <= 11    12-22     >= 23
0.69       0.374       <= 13    14-27     >= 28
=========  ==========  =======  ========  =======

Only these field diameters are accepted: the cut-offs of other microscopes are
not a linear function of the field area (they were set per microscope in the
published tables), so interpolating between rows would produce cut-offs no
pathologist uses. Any other diameter raises :class:`~wsdal_wsi.errors.ConfigError`
naming the value and the supported ones.

How a score is derived
----------------------
*10-HPF mode* (the window *is* 10 fields of diameter ``d``, area
``10 π (d/2)²``): the count in the window is looked up in the row of ``d``.

*Area mode* (a window of any area ``A`` mm², e.g. 2 mm²): the count is scaled
to the 10-HPF area of the chosen diameter, ``count × 10 π (d/2)² / A``,
rounded to the nearest whole mitosis (halves up), and looked up in the row of
``d``. That is the same as comparing the density (mitoses per mm²) with the
per-area cut-offs ``(s1 + 0.5) / A10`` and ``(s3 - 0.5) / A10`` (``s1`` the
largest score-1 count, ``s3`` the smallest score-3 count, ``A10`` the 10-HPF
area): for the default 0.55 mm field these are 3.58 and 7.37 mitoses/mm²,
the "roughly 3.5 and 7.5 per mm²" of the current (WHO) guidance. When
``A`` equals the 10-HPF area the two modes agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wsdal_wsi.errors import ConfigError

__all__ = [
    "DEFAULT_FIELD_DIAMETER_MM",
    "NOTTINGHAM_TABLE",
    "SUPPORTED_FIELD_DIAMETERS_MM",
    "MitoticScore",
    "NottinghamRow",
    "check_field_diameter",
    "hpf_area_mm2",
    "mitotic_score",
    "nottingham_row",
    "per_mm2_cutoffs",
    "score_window",
    "ten_hpf_area_mm2",
]

#: The default microscope field diameter (mm): eyepiece field number 22 / 40x objective.
DEFAULT_FIELD_DIAMETER_MM: float = 0.55


@dataclass(frozen=True)
class NottinghamRow:
    """One row of the Nottingham table.

    Attributes
    ----------
    field_diameter_mm : float
        Microscope field diameter (mm).
    score1_max : int
        Largest count per 10 HPF that scores 1.
    score3_min : int
        Smallest count per 10 HPF that scores 3 (counts in between score 2).
    verified : bool
        Whether ``grading.md`` marks the row as verified against the source.
    """

    field_diameter_mm: float
    score1_max: int
    score3_min: int
    verified: bool

    @property
    def hpf_area_mm2(self) -> float:
        """Area of one field (mm²): ``π (d/2)²``."""
        return math.pi * (self.field_diameter_mm / 2.0) ** 2

    @property
    def ten_hpf_area_mm2(self) -> float:
        """Area of 10 fields (mm²)."""
        return 10.0 * self.hpf_area_mm2


#: The rows of ``grading.md``, by field diameter.
NOTTINGHAM_TABLE: tuple[NottinghamRow, ...] = (
    NottinghamRow(0.40, 4, 10, False),
    NottinghamRow(0.44, 5, 12, False),
    NottinghamRow(0.50, 7, 15, False),
    NottinghamRow(0.55, 8, 18, True),
    NottinghamRow(0.59, 9, 20, True),
    NottinghamRow(0.63, 11, 23, False),
    NottinghamRow(0.69, 13, 28, False),
)

#: The field diameters (mm) the table has a row for.
SUPPORTED_FIELD_DIAMETERS_MM: tuple[float, ...] = tuple(
    r.field_diameter_mm for r in NOTTINGHAM_TABLE
)

_DIAMETER_TOLERANCE_MM = 1e-6


def _supported_text() -> str:
    return ", ".join(f"{d:.2f}" for d in SUPPORTED_FIELD_DIAMETERS_MM)


def nottingham_row(field_diameter_mm: float) -> NottinghamRow:
    """Return the table row of a field diameter.

    Parameters
    ----------
    field_diameter_mm : float
        Microscope field diameter (mm); must be one of
        :data:`SUPPORTED_FIELD_DIAMETERS_MM` (within 1e-6 mm).

    Raises
    ------
    ConfigError
        For any other value (the message names it and the supported ones).
    """
    try:
        d = float(field_diameter_mm)
    except (TypeError, ValueError):
        raise ConfigError(
            f"field diameter must be a number of mm, got {field_diameter_mm!r}; "
            f"supported field diameters (mm): {_supported_text()}"
        ) from None
    for row in NOTTINGHAM_TABLE:
        if math.isfinite(d) and abs(row.field_diameter_mm - d) <= _DIAMETER_TOLERANCE_MM:
            return row
    raise ConfigError(
        f"no Nottingham cut-offs for a field diameter of {field_diameter_mm!r} mm; "
        f"supported field diameters (mm): {_supported_text()}"
    )


def check_field_diameter(field_diameter_mm: float) -> float:
    """Return the supported field diameter (mm) matching ``field_diameter_mm``, else raise.

    Raises
    ------
    ConfigError
        If the table has no row for it.
    """
    return nottingham_row(field_diameter_mm).field_diameter_mm


def hpf_area_mm2(field_diameter_mm: float) -> float:
    """Area (mm²) of one high-power field of diameter ``field_diameter_mm``: ``π (d/2)²``.

    Any positive diameter is accepted (this is geometry, not the table).
    """
    d = float(field_diameter_mm)
    if not math.isfinite(d) or d <= 0:
        raise ConfigError(
            f"field diameter must be a positive number of mm, got {field_diameter_mm!r}"
        )
    return math.pi * (d / 2.0) ** 2


def ten_hpf_area_mm2(field_diameter_mm: float) -> float:
    """Area (mm²) of 10 high-power fields of diameter ``field_diameter_mm``."""
    return 10.0 * hpf_area_mm2(field_diameter_mm)


def mitotic_score(count_10hpf: int, *, field_diameter_mm: float = DEFAULT_FIELD_DIAMETER_MM) -> int:
    """The Nottingham mitotic score (1, 2 or 3) of a count per 10 HPF.

    Parameters
    ----------
    count_10hpf : int
        Mitoses counted in 10 fields of diameter ``field_diameter_mm`` (>= 0).
    field_diameter_mm : float
        One of :data:`SUPPORTED_FIELD_DIAMETERS_MM`.

    Returns
    -------
    int
        1 if ``count <= score1_max``, 3 if ``count >= score3_min``, else 2.

    Raises
    ------
    ConfigError
        For an unsupported diameter or a negative / non-integer count.
    """
    if isinstance(count_10hpf, bool) or int(count_10hpf) != count_10hpf or count_10hpf < 0:
        raise ConfigError(f"a mitotic count must be a whole number >= 0, got {count_10hpf!r}")
    row = nottingham_row(field_diameter_mm)
    count = int(count_10hpf)
    if count <= row.score1_max:
        return 1
    if count >= row.score3_min:
        return 3
    return 2


def per_mm2_cutoffs(field_diameter_mm: float = DEFAULT_FIELD_DIAMETER_MM) -> tuple[float, float]:
    """The density cut-offs (mitoses/mm²) equivalent to a table row.

    Returns
    -------
    (low, high) : tuple of float
        Score 1 below ``low``, score 3 at or above ``high``, score 2 in between:
        ``low = (score1_max + 0.5) / A10``, ``high = (score3_min - 0.5) / A10``
        with ``A10`` the 10-HPF area (mm²). For 0.55 mm: (3.58, 7.37).
    """
    row = nottingham_row(field_diameter_mm)
    a10 = row.ten_hpf_area_mm2
    return ((row.score1_max + 0.5) / a10, (row.score3_min - 0.5) / a10)


@dataclass(frozen=True)
class MitoticScore:
    """The score of a counting window and how it was derived.

    Attributes
    ----------
    score : int
        Nottingham mitotic score, 1, 2 or 3.
    count : int
        Mitoses in the window.
    window_area_mm2 : float
        Area of the window (mm²).
    field_diameter_mm : float
        The table row used.
    ten_hpf_area_mm2 : float
        Area of 10 fields of that diameter (mm²).
    count_10hpf : float
        The count scaled to the 10-HPF area (equal to ``count`` in 10-HPF mode).
    count_10hpf_rounded : int
        ``count_10hpf`` rounded to the nearest whole mitosis (halves up); the
        value looked up in the table.
    per_mm2 : float
        ``count / window_area_mm2``.
    cutoffs_per_mm2 : (float, float)
        :func:`per_mm2_cutoffs` of the row.
    mode : {"hpf", "area"}
        Whether the window was 10 HPF of the diameter or an area.
    """

    score: int
    count: int
    window_area_mm2: float
    field_diameter_mm: float
    ten_hpf_area_mm2: float
    count_10hpf: float
    count_10hpf_rounded: int
    per_mm2: float
    cutoffs_per_mm2: tuple[float, float]
    mode: str

    @property
    def basis(self) -> str:
        """One sentence saying how the score was derived (for reports)."""
        d = f"{self.field_diameter_mm:.2f} mm"
        if self.mode == "hpf":
            return (
                f"{self.count} mitoses in 10 HPF (field Ø {d}, "
                f"{self.ten_hpf_area_mm2:.2f} mm²) -> score {self.score}"
            )
        lo, hi = self.cutoffs_per_mm2
        return (
            f"{self.count} mitoses in {self.window_area_mm2:g} mm² = {self.per_mm2:.2f}/mm², "
            f"scaled to 10 HPF of Ø {d} ({self.ten_hpf_area_mm2:.2f} mm²): "
            f"{self.count_10hpf_rounded} -> score {self.score} "
            f"(cut-offs {lo:.2f} and {hi:.2f} /mm²)"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {
            "score": self.score,
            "count": self.count,
            "window_area_mm2": self.window_area_mm2,
            "field_diameter_mm": self.field_diameter_mm,
            "ten_hpf_area_mm2": self.ten_hpf_area_mm2,
            "count_10hpf": self.count_10hpf,
            "count_10hpf_rounded": self.count_10hpf_rounded,
            "per_mm2": self.per_mm2,
            "cutoffs_per_mm2": list(self.cutoffs_per_mm2),
            "mode": self.mode,
            "basis": self.basis,
        }

    @classmethod
    def from_dict(cls, data: dict) -> MitoticScore:
        """Inverse of :meth:`to_dict` (``basis`` is derived, not read)."""
        lo, hi = data["cutoffs_per_mm2"]
        return cls(
            score=int(data["score"]),
            count=int(data["count"]),
            window_area_mm2=float(data["window_area_mm2"]),
            field_diameter_mm=float(data["field_diameter_mm"]),
            ten_hpf_area_mm2=float(data["ten_hpf_area_mm2"]),
            count_10hpf=float(data["count_10hpf"]),
            count_10hpf_rounded=int(data["count_10hpf_rounded"]),
            per_mm2=float(data["per_mm2"]),
            cutoffs_per_mm2=(float(lo), float(hi)),
            mode=str(data["mode"]),
        )


def score_window(
    count: int,
    *,
    window_area_mm2: float | None = None,
    field_diameter_mm: float = DEFAULT_FIELD_DIAMETER_MM,
) -> MitoticScore:
    """Score the count of a counting window (see the module docstring).

    Parameters
    ----------
    count : int
        Mitoses in the window (>= 0).
    window_area_mm2 : float, optional
        Area of the window (mm²). ``None``: the window is 10 HPF of
        ``field_diameter_mm`` (10-HPF mode, no scaling).
    field_diameter_mm : float
        The table row; one of :data:`SUPPORTED_FIELD_DIAMETERS_MM`.

    Returns
    -------
    MitoticScore

    Raises
    ------
    ConfigError
        For an unsupported diameter, a negative count or a non-positive area.
    """
    if isinstance(count, bool) or int(count) != count or count < 0:
        raise ConfigError(f"a mitotic count must be a whole number >= 0, got {count!r}")
    count = int(count)
    row = nottingham_row(field_diameter_mm)
    a10 = row.ten_hpf_area_mm2
    if window_area_mm2 is None:
        mode, area, scaled = "hpf", a10, float(count)
    else:
        area = float(window_area_mm2)
        if not math.isfinite(area) or area <= 0:
            raise ConfigError(
                f"window area must be a positive number of mm², got {window_area_mm2!r}"
            )
        mode = "area"
        # 1e-9 keeps an exact half (e.g. 8.5 computed as 8.4999999999) rounding up.
        scaled = float(count) if area == a10 else count * a10 / area
    rounded = math.floor(scaled + 0.5 + 1e-9)
    return MitoticScore(
        score=mitotic_score(rounded, field_diameter_mm=row.field_diameter_mm),
        count=count,
        window_area_mm2=area,
        field_diameter_mm=row.field_diameter_mm,
        ten_hpf_area_mm2=a10,
        count_10hpf=scaled,
        count_10hpf_rounded=rounded,
        per_mm2=count / area,
        cutoffs_per_mm2=per_mm2_cutoffs(row.field_diameter_mm),
        mode=mode,
    )
