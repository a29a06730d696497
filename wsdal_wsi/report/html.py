"""``index.html``: one self-contained page with every slide's numbers and report.

No scripts, no external resources: inline CSS and relative links to the files
beside it (``<key>.report.png``, ``<key>.summary.json``, ``<key>.geojson``,
``counts.csv``, ``counts.xlsx``), so the folder can be moved, zipped or served
as it is. Failed slides are listed with their reason.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from wsdal_wsi import __version__
from wsdal_wsi.atomic import write_text_atomic
from wsdal_wsi.provenance import utc_now_iso
from wsdal_wsi.report.layout import COUNTS_CSV, COUNTS_XLSX, slide_files
from wsdal_wsi.report.summary import SlideSummary

__all__ = ["index_html", "write_index_html"]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2933;
background:#f5f7fa}
header{background:#1c2530;color:#fff;padding:22px 32px}header h1{margin:0;font-size:26px}
header p{margin:6px 0 0;color:#c0c8d2}main{padding:24px 32px;max-width:1900px}
a{color:#0b62c4}table{border-collapse:collapse;background:#fff;width:100%;margin:12px 0 28px}
th,td{padding:7px 10px;border-bottom:1px solid #e1e6eb;text-align:left}
th{background:#eef1f5;font-size:13px;text-transform:uppercase;letter-spacing:.03em;color:#55606e}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;min-width:22px;padding:2px 8px;border-radius:10px;color:#fff;
font-weight:600;text-align:center}.s1{background:#2ea043}.s2{background:#db8e00}
.s3{background:#cf222e}.s0{background:#7a8490}.failed{background:#cf222e}.border{background:#8250df}
section{background:#fff;border:1px solid #e1e6eb;border-radius:10px;padding:18px 22px;
margin:0 0 26px}section h2{margin:0 0 6px;font-size:21px}section p{margin:4px 0}
section img{max-width:100%;height:auto;border:1px solid #e1e6eb;margin-top:12px}
.reason{color:#a40e26;font-family:ui-monospace,monospace;white-space:pre-wrap}
.muted{color:#66717e}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _href(name: str) -> str:
    return _e(quote(name))


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _badge(s: SlideSummary) -> str:
    if not s.ok:
        return '<span class="badge failed">failed</span>'
    score = s.hotspot.score.score if s.hotspot else 0
    return f'<span class="badge s{score}">{score or "–"}</span>'


def _range(s: SlideSummary) -> str:
    """The hotspot's count range, marked when the score is borderline."""
    rng = s.hotspot_range
    if rng is None:
        return "–"
    text = _e(f"{rng.low}–{rng.high}")
    if rng.borderline:
        return f'{text} <span class="badge border">borderline</span>'
    return text


def _row(s: SlideSummary) -> str:
    hs = s.hotspot
    cells = [
        f'<td><a href="#{_href(s.key)}">{_e(s.slide.name)}</a></td>',
        f"<td>{_badge(s)}</td>",
        f'<td class="n">{_e(s.detections if s.detections is not None else "–")}</td>',
        f'<td class="n">{_e(hs.count if hs else "–")}</td>',
        f"<td>{_range(s)}</td>",
        f'<td class="n">{_num(hs.per_mm2 if hs else None, 2)}</td>',
        f'<td class="n">{_num(s.tissue_area_mm2, 1)}</td>',
        f'<td class="n">{_num(s.tissue_per_mm2, 2)}</td>',
        f"<td>{_e(s.model.label if s.ok else '')}</td>",
        f'<td class="reason">{_e(s.reason or "")}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _section(s: SlideSummary, out_dir: Path) -> str:
    files = slide_files(out_dir, s.key)
    parts = [f'<section id="{_e(s.key)}"><h2>{_e(s.slide.name)} {_badge(s)}</h2>']
    parts.append(f'<p class="muted">key {_e(s.key)} · {_e(s.slide.path or "")}</p>')
    if not s.ok:
        parts.append(f'<p class="reason">{_e(s.reason)}</p></section>')
        return "".join(parts)
    hs = s.hotspot
    if hs:
        parts.append(
            f"<p><b>Hotspot:</b> {hs.count} mitoses in {hs.area_mm2:.2f} mm² "
            f"({hs.per_mm2:.2f} per mm²) · <b>mitotic score {hs.score.score}</b> · "
            f"{_e(hs.score.basis)}</p>"
        )
        rng = s.hotspot_range
        if rng is not None:
            verdict = (
                f"<b>borderline</b>: the score is {rng.score_low} at the low end and "
                f"{rng.score_high} at the high end; count this hotspot yourself"
                if rng.borderline
                else f"the score is {rng.score_low} throughout"
            )
            parts.append(
                f"<p><b>Count range</b> {rng.low}–{rng.high} ({rng.level:.0%}, from the "
                f"calibrated probabilities of {rng.n_candidates} candidates) · {verdict}</p>"
            )
        if s.review:
            parts.append(
                f"<p><b>To review:</b> {s.review} decisions as <code>WS-DAL check</code> "
                "objects in the results GeoJSON (least certain first, hotspot first)</p>"
            )
    else:
        parts.append("<p><b>Hotspot:</b> no counting window fits the tissue.</p>")
    parts.append(
        f"<p><b>Detections:</b> {s.detections} ({s.in_tissue} in tissue) · <b>tissue</b> "
        f"{_num(s.tissue_area_mm2, 2)} mm² · {_num(s.tissue_per_mm2, 2)} per mm² · "
        f"<b>window</b> {_e(s.hotspot_settings.describe())}</p>"
    )
    if s.regions:
        rows = "".join(
            f"<tr><td>{_e(r.label)}</td><td>{_e(r.class_name or '')}</td>"
            f'<td class="n">{_num(r.area_mm2, 3)}</td><td class="n">'
            f'{_num(r.tissue_area_mm2, 3)}</td><td class="n">{r.mitoses}</td>'
            f'<td class="n">{_num(r.per_mm2, 2)}</td></tr>'
            for r in s.regions
        )
        parts.append(
            "<table><tr><th>Region</th><th>Class</th><th>Area (mm²)</th><th>Tissue (mm²)</th>"
            f"<th>Mitoses</th><th>Per mm²</th></tr>{rows}</table>"
        )
    links = [
        (files.summary.name, "summary (JSON)"),
        (s.geojson or files.geojson.name, "detections and hotspot (QuPath GeoJSON)"),
    ]
    parts.append(
        "<p>"
        + " · ".join(
            f'<a href="{_href(n)}">{_e(label)}</a>' for n, label in links if (out_dir / n).exists()
        )
        + "</p>"
    )
    report = s.assets.report or files.report.name
    if (out_dir / report).exists():
        parts.append(
            f'<a href="{_href(report)}"><img src="{_href(report)}" loading="lazy" '
            f'alt="report of {_e(s.slide.name)}"></a>'
        )
    parts.append("</section>")
    return "".join(parts)


def index_html(
    summaries: Sequence[SlideSummary],
    *,
    out_dir: str | os.PathLike[str],
    title: str = "wsdal-wsi results",
) -> str:
    """The page's HTML text (links only to files that exist in ``out_dir``)."""
    out = Path(out_dir)
    n_failed = sum(not s.ok for s in summaries)
    downloads = " · ".join(
        f'<a href="{_href(n)}">{n}</a>' for n in (COUNTS_CSV, COUNTS_XLSX) if (out / n).exists()
    )
    head = (
        "<tr><th>Slide</th><th>Score</th><th>Detections</th><th>Hotspot</th><th>Count range</th>"
        "<th>Hotspot per mm²</th><th>Tissue (mm²)</th><th>Per mm² (tissue)</th>"
        "<th>Model</th><th>Reason</th></tr>"
    )
    failed_note = f", <b>{n_failed} failed</b>" if n_failed else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{len(summaries)} slides{failed_note} · "
        f"made {_e(utc_now_iso())} by wsdal-wsi {_e(__version__)}</p></header><main>"
        f"<p>{downloads}</p>"
        f"<table>{head}{''.join(_row(s) for s in summaries)}</table>"
        f"{''.join(_section(s, out) for s in summaries)}"
        "</main></body></html>\n"
    )


def write_index_html(
    path: str | os.PathLike[str],
    summaries: Sequence[SlideSummary],
    *,
    title: str = "wsdal-wsi results",
) -> None:
    """Write ``index.html`` atomically (links relative to its folder)."""
    p = Path(path)
    write_text_atomic(p, index_html(summaries, out_dir=p.parent, title=title))
