from __future__ import annotations

from pathlib import Path

import pytest

from wsdal_wsi.errors import SlideError
from wsdal_wsi.slide._diagnose import check_slide_file, explain_unsupported, find_tiff_damage


def test_check_slide_file(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="no such file"):
        check_slide_file(tmp_path / "x.svs")
    with pytest.raises(SlideError, match="is a directory"):
        check_slide_file(tmp_path)
    empty = tmp_path / "e.svs"
    empty.touch()
    with pytest.raises(SlideError, match="empty file"):
        check_slide_file(empty)
    good = tmp_path / "g.svs"
    good.write_bytes(b"x")
    check_slide_file(good)


def test_intact_tiff_has_no_damage(pattern_slide_path: Path) -> None:
    assert find_tiff_damage(pattern_slide_path) is None


def test_truncated_tiff_damage_says_where(truncated_tiff_path: Path) -> None:
    damage = find_tiff_damage(truncated_tiff_path)
    assert damage is not None and "truncated" in damage


def test_explanations(text_svs_path: Path, tmp_path: Path) -> None:
    assert "text file" in explain_unsupported(text_svs_path, Exception("unsupported"))
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\x02\x03garbage")
    reason = explain_unsupported(binary, Exception("unsupported"))
    assert "not a whole-slide image format" in reason and "\\x00" in reason


def test_truncation_only_ignores_what_tifffile_cannot_parse(tmp_path: Path) -> None:
    path = tmp_path / "odd.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 64)  # a TIFF header pointing nowhere
    assert find_tiff_damage(path) is not None
    assert find_tiff_damage(path, truncation_only=True) is None
