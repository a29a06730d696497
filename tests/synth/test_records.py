from __future__ import annotations

from pathlib import Path

import pytest

from wsdal_wsi.errors import InputError
from wsdal_wsi.synth.records import MANIFEST_NAME, SynthSlide, load_dataset


def _slide(base: Path) -> SynthSlide:
    return SynthSlide(
        name="s",
        seed=7,
        slide_path=base / "s.tiff",
        annotation_path=base / "s.geojson",
        truth_path=base / "truth" / "s.geojson",
        noise_path=base / "truth" / "s.noise.json",
        width_px=1024,
        height_px=768,
        mpp=0.25,
        level_count=3,
        tissue_area_mm2=0.03,
        counts={"mitoses": 4, "lookalikes": 5},
        look={"jpeg_quality": 88},
    )


def test_record_round_trip_with_relative_paths(tmp_path):
    slide = _slide(tmp_path)
    d = slide.to_dict(relative_to=tmp_path)
    assert d["slide"] == "s.tiff" and d["truth"] == "truth/s.geojson"
    assert SynthSlide.from_dict(d, base=tmp_path) == slide
    assert slide.n_mitoses == 4 and slide.n_lookalikes == 5


def test_load_dataset_reads_the_manifest(synth_dataset):
    again = load_dataset(synth_dataset.out_dir)
    assert again.slides == synth_dataset.slides
    assert all(s.slide_path.is_file() for s in again.slides)


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "not found"), ("{", "not a readable"), ('{"slides": [{"name": 1}]}', "not a readable")],
)
def test_load_dataset_errors_name_the_file(tmp_path, content, match):
    if content is not None:
        (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(InputError, match=match) as info:
        load_dataset(tmp_path)
    assert MANIFEST_NAME in str(info.value)
