import csv
import datetime as dt

import pytest
from openpyxl import load_workbook

from wsdal_wsi.report import read_summary, slide_files
from wsdal_wsi.report.spreadsheet import COLUMNS

HEADERS = [h for _, h, _, _ in COLUMNS]


def test_xlsx_opens_with_the_expected_rows(out_dir):
    wb = load_workbook(out_dir / "counts.xlsx")
    assert wb.sheetnames == ["Counts", "About"]
    ws = wb["Counts"]
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == HEADERS
    table = [dict(zip(HEADERS, r, strict=True)) for r in rows[1:]]
    # alpha: slide + 2 regions; beta: slide; gamma: failed slide
    assert [(r["Key"], r["Region"]) for r in table] == [
        ("alpha", "(whole slide)"),
        ("alpha", "Tumour 1"),
        ("alpha", "Rest"),
        ("beta", "(whole slide)"),
        ("gamma", "(whole slide)"),
    ]
    alpha = read_summary(slide_files(out_dir, "alpha").summary)
    slide_row, region_row = table[0], table[1]
    assert slide_row["Slide"] == "alpha slide µ²"
    assert slide_row["Hotspot mitoses"] == alpha.hotspot.count
    assert isinstance(slide_row["Hotspot mitoses"], int)
    assert slide_row["Mitotic score"] == alpha.hotspot.score.score
    assert slide_row["Mitoses"] == alpha.in_tissue
    assert slide_row["Mitoses per mm²"] == pytest.approx(alpha.tissue_per_mm2)
    assert isinstance(slide_row["Date (UTC)"], dt.datetime)
    assert slide_row["Model"].startswith("wsdal.pt")
    assert "0.2 mm² circle" in slide_row["Counting window"]
    assert region_row["Mitoses"] == alpha.regions[0].mitoses
    assert region_row["Area (mm²)"] == pytest.approx(alpha.regions[0].area_mm2)
    assert region_row["Hotspot mitoses"] is None and region_row["Mitotic score"] is None
    gamma = table[4]
    assert gamma["Status"] == "failed" and "truncated" in gamma["Reason"]
    assert gamma["Mitoses"] is None
    assert ws.freeze_panes == "C2" and ws.auto_filter.ref
    assert ws["F2"].number_format == "0.000"


def test_csv_parses_back_with_numbers(out_dir):
    raw = (out_dir / "counts.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    with open(out_dir / "counts.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) == HEADERS
    assert len(rows) == 5
    alpha = read_summary(slide_files(out_dir, "alpha").summary)
    assert rows[0]["Slide"] == "alpha slide µ²"
    assert int(rows[0]["Hotspot mitoses"]) == alpha.hotspot.count
    assert float(rows[0]["Hotspot mitoses per mm²"]) == pytest.approx(alpha.hotspot.per_mm2, 1e-3)
    assert float(rows[1]["Area (mm²)"]) == pytest.approx(alpha.regions[0].area_mm2, abs=1e-4)
    assert rows[1]["Mitotic score"] == ""
    assert rows[4]["Status"] == "failed" and rows[4]["Mitoses"] == ""
    dt.datetime.strptime(rows[0]["Date (UTC)"], "%Y-%m-%d %H:%M:%S")


def test_a_done_slide_without_hotspot_says_why(out_dir):
    import dataclasses

    from wsdal_wsi.report.spreadsheet import count_rows

    alpha = read_summary(slide_files(out_dir, "alpha").summary)
    small = dataclasses.replace(alpha, counts=dataclasses.replace(alpha.counts, hotspot=None))
    row = count_rows([small])[0]
    assert row["hotspot_count"] is None and row["score"] is None
    assert row["reason"].startswith("no hotspot: the counting window (0.2 mm² circle")
    assert f"({alpha.tissue_area_mm2:.2f} mm²)" in row["reason"]
    assert count_rows([alpha])[0]["reason"] is None  # with a hotspot: nothing to explain
