"""``counts.csv`` and ``counts.xlsx``: one row per slide and one per region.

Columns (the same in both; units in the header):

======================  ==============================================================
Slide, Key              the slide's name and its output-file key
Status                  ``ok`` or ``failed``
Region, Class           ``(whole slide)`` on slide rows; the region's name and class
Area (mm²)              slide rows: tissue area; region rows: the polygon's area
Tissue area (mm²)       the tissue inside the region (the density's denominator)
Mitoses                 detections in tissue (in the region, on region rows)
Mitoses per mm²         Mitoses / tissue area
Hotspot mitoses         slide rows: detections in the hotspot window
Hotspot area (mm²)      the window's area
Hotspot mitoses per mm²
Count per 10 HPF        the hotspot count scaled to 10 HPF of the field diameter
Mitotic score           Nottingham score 1-3 (slide rows)
Count range             the hotspot's 90 % count interval from the calibrated probabilities
                        of its candidates, e.g. ``15-21``
Borderline              ``yes`` when the score differs between the ends of that range: a
                        slide for the pathologist to count themselves
To review               ``WS-DAL check`` objects written for the slide (``--review N``)
Counting window         e.g. ``2 mm² circle (score: 10 HPF Ø 0.55 mm)``
Threshold, Model, Date  probability threshold, model file (hash), when counted (UTC)
Reason                  why a slide failed, or why a done slide has no hotspot
======================  ==============================================================

CSV: UTF-8 *with* a byte-order mark (Excel needs it to read µ and ² right;
LibreOffice and Python's ``csv`` with ``encoding="utf-8-sig"`` read it as
well), comma-separated, ``.`` as the decimal mark, numbers unquoted, empty
cells for "not applicable". Where Excel's list separator is ``;`` (many
European locales), open ``counts.xlsx`` instead: its cells are typed.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from wsdal_wsi import __version__
from wsdal_wsi.atomic import atomic_open, atomic_path
from wsdal_wsi.counting.grading import SUPPORTED_FIELD_DIAMETERS_MM
from wsdal_wsi.report.summary import SlideSummary

__all__ = ["COLUMNS", "count_rows", "write_counts_csv", "write_counts_xlsx"]

#: (key, header, Excel number format or None, CSV decimals or None)
COLUMNS: tuple[tuple[str, str, str | None, int | None], ...] = (
    ("slide", "Slide", None, None),
    ("key", "Key", None, None),
    ("status", "Status", None, None),
    ("region", "Region", None, None),
    ("class", "Class", None, None),
    ("area_mm2", "Area (mm²)", "0.000", 4),
    ("tissue_area_mm2", "Tissue area (mm²)", "0.000", 4),
    ("mitoses", "Mitoses", "0", None),
    ("per_mm2", "Mitoses per mm²", "0.00", 3),
    ("hotspot_count", "Hotspot mitoses", "0", None),
    ("hotspot_area_mm2", "Hotspot area (mm²)", "0.000", 4),
    ("hotspot_per_mm2", "Hotspot mitoses per mm²", "0.00", 3),
    ("count_10hpf", "Count per 10 HPF", "0.0", 2),
    ("score", "Mitotic score", "0", None),
    ("count_range", "Count range", None, None),
    ("borderline", "Borderline", None, None),
    ("review", "To review", "0", None),
    ("window", "Counting window", None, None),
    ("threshold", "Threshold", "0.000", 4),
    ("model", "Model", None, None),
    ("date", "Date (UTC)", "yyyy-mm-dd hh:mm", None),
    ("reason", "Reason", None, None),
)

WHOLE_SLIDE = "(whole slide)"


def _date(iso: str | None) -> dt.datetime | None:
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _no_hotspot_reason(s: SlideSummary) -> str | None:
    """Why a finished slide has no hotspot (None when it has one)."""
    if s.hotspot is not None:
        return None
    tissue = "" if s.tissue_area_mm2 is None else f" ({s.tissue_area_mm2:.2f} mm²)"
    return (
        f"no hotspot: the counting window ({s.hotspot_settings.describe()}) "
        f"does not fit in the tissue{tissue}"
    )


def count_rows(summaries: Sequence[SlideSummary]) -> list[dict[str, Any]]:
    """The table's rows: per slide, its row then one per region (None = empty cell)."""
    rows: list[dict[str, Any]] = []
    for s in summaries:
        hs = s.hotspot
        rng = s.hotspot_range
        common = {
            "slide": s.slide.name,
            "key": s.key,
            "status": s.status,
            "window": s.hotspot_settings.describe() if s.ok else None,
            "threshold": s.threshold,
            "model": s.model.label if (s.model.path or s.model.sha256) else None,
            "date": _date(s.created),
        }
        rows.append(
            {
                **common,
                "region": WHOLE_SLIDE,
                "class": None,
                "area_mm2": s.tissue_area_mm2,
                "tissue_area_mm2": s.tissue_area_mm2,
                "mitoses": s.in_tissue,
                "per_mm2": s.tissue_per_mm2,
                "hotspot_count": hs.count if hs else None,
                "hotspot_area_mm2": hs.area_mm2 if hs else None,
                "hotspot_per_mm2": hs.per_mm2 if hs else None,
                "count_10hpf": hs.score.count_10hpf if hs else None,
                "score": hs.score.score if hs else None,
                "count_range": f"{rng.low}-{rng.high}" if rng else None,
                "borderline": ("yes" if rng.borderline else "no") if rng else None,
                "review": s.review if s.ok else None,
                "reason": s.reason if not s.ok else _no_hotspot_reason(s),
            }
        )
        for r in s.regions:
            rows.append(
                {
                    **common,
                    "region": r.label,
                    "class": r.class_name,
                    "area_mm2": r.area_mm2,
                    "tissue_area_mm2": r.tissue_area_mm2,
                    "mitoses": r.mitoses,
                    "per_mm2": r.per_mm2,
                    "reason": None,
                }
            )
    return rows


def _csv_cell(value: Any, decimals: int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.{decimals}f}" if decimals is not None else repr(value)
    return str(value)


def write_counts_csv(path: str | os.PathLike[str], summaries: Sequence[SlideSummary]) -> int:
    """Write ``counts.csv`` atomically (see the module docstring); returns the number of rows."""
    rows = count_rows(summaries)
    with atomic_open(path, "w", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow([header for _, header, _, _ in COLUMNS])
        for row in rows:
            writer.writerow([_csv_cell(row.get(k), dec) for k, _, _, dec in COLUMNS])
    return len(rows)


def write_counts_xlsx(path: str | os.PathLike[str], summaries: Sequence[SlideSummary]) -> int:
    """Write ``counts.xlsx`` atomically: a typed "Counts" sheet and an "About" sheet."""
    rows = count_rows(summaries)
    wb = Workbook()
    ws = wb.active
    ws.title = "Counts"
    ws.append([header for _, header, _, _ in COLUMNS])
    bold = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor="1C2530")
    for cell in ws[1]:
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    failed = PatternFill("solid", fgColor="FDE2E1")
    slide_row = Font(bold=True)
    for row in rows:
        ws.append([row.get(k) for k, _, _, _ in COLUMNS])
        cells = ws[ws.max_row]
        for cell, (_, _, fmt, _) in zip(cells, COLUMNS, strict=True):
            if fmt and cell.value is not None:
                cell.number_format = fmt
            if row["status"] != "ok":
                cell.fill = failed
            if row["region"] == WHOLE_SLIDE:
                cell.font = slide_row
    for idx, (key, header, _, _) in enumerate(COLUMNS, start=1):
        longest = max([len(header) * 0.8] + [len(_csv_cell(r.get(key), 2)) for r in rows])
        ws.column_dimensions[get_column_letter(idx)].width = min(60, max(9, longest + 2))
    ws.freeze_panes = "C2"
    ws.auto_filter.ref = ws.dimensions
    about = wb.create_sheet("About")
    lines = [
        ("Made by", f"wsdal-wsi {__version__}"),
        ("Rows", "One row per slide ('(whole slide)') and one per region annotation."),
        ("Mitoses", "Detections in tissue (inside the region, on region rows)."),
        ("Per mm²", "Mitoses divided by the tissue area (of the region, on region rows)."),
        ("Hotspot", "The counting window with the most detections in tissue."),
        ("Score", "Nottingham score of the hotspot count scaled to 10 HPF of the field."),
        ("Field diameters", ", ".join(f"{d:.2f}" for d in SUPPORTED_FIELD_DIAMETERS_MM) + " mm"),
        ("Reason", "Why a slide failed, or why a finished slide has no hotspot."),
        ("Dates", "UTC."),
    ]  # fmt: skip
    for label, text in lines:
        about.append([label, text])
        about.cell(about.max_row, 1).font = Font(bold=True)
    about.column_dimensions["A"].width = 18
    about.column_dimensions["B"].width = 100
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return len(rows)
