import numpy as np
import pytest

from wsdal_wsi.errors import InputError
from wsdal_wsi.report import find_summaries, read_tissue_png, slide_files, write_tissue_png


def test_slide_files_follow_the_layout(tmp_path):
    f = slide_files(tmp_path, "S1")
    assert [p.name for p in (f.geojson, f.summary, f.tissue, f.thumbnail, f.gallery, f.report)] == [
        "S1.geojson",
        "S1.summary.json",
        "S1.tissue.png",
        "S1.thumb.jpg",
        "S1.gallery.png",
        "S1.report.png",
    ]
    for bad in ("", "a/b", "..", "a\\b"):
        with pytest.raises(InputError, match="bad slide key"):
            slide_files(tmp_path, bad)


def test_tissue_png_round_trip(tmp_path):
    mask = np.random.default_rng(0).random((37, 53)) < 0.4
    write_tissue_png(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_tissue_png(tmp_path / "m.png"), mask)
    with pytest.raises(InputError, match="tissue mask not found"):
        read_tissue_png(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"junk\.png: cannot read the tissue mask"):
        read_tissue_png(tmp_path / "junk.png")


def test_find_summaries(out_dir):
    assert [p.name for p in find_summaries(out_dir)] == [
        "alpha.summary.json",
        "beta.summary.json",
        "gamma.summary.json",
    ]
