import pytest

from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.errors import ConfigError, InputError, OutputError
from wsdal_wsi.lock import FolderLock
from wsdal_wsi.report import read_summary, recount_folder, slide_files


def test_recount_folder_recounts_every_ok_slide(out_dir):
    settings = HotspotSettings(window="rect", area_mm2=0.5, min_tissue_fraction=0.8)
    result = recount_folder(out_dir, settings=settings)
    assert result.recounted == ["alpha", "beta"] and result.failed_now == []
    assert [s.key for s in result.summaries] == ["alpha", "beta", "gamma"]
    for key in ("alpha", "beta"):
        s = read_summary(slide_files(out_dir, key).summary)
        assert s.hotspot_settings == settings and s.hotspot.window == "rect"
        assert s.hotspot.tissue_fraction >= 0.8
    assert read_summary(slide_files(out_dir, "gamma").summary).status == "failed"
    assert set(result.outputs) == {"csv", "xlsx", "html"}
    assert "0.5 mm² 4:3 rectangle" in (out_dir / "counts.csv").read_text(encoding="utf-8-sig")


def test_a_broken_slide_is_reported_and_the_others_go_on(out_dir):
    broken = slide_files(out_dir, "beta").geojson
    broken.write_text("{truncated", encoding="utf-8")
    before = slide_files(out_dir, "beta").summary.read_bytes()
    result = recount_folder(out_dir, settings=HotspotSettings(area_mm2=0.3))
    assert result.recounted == ["alpha"] and result.failed_now == ["beta"]
    beta = next(s for s in result.summaries if s.key == "beta")
    assert beta.status == "failed" and "beta.geojson: not valid JSON" in beta.reason
    assert slide_files(out_dir, "beta").summary.read_bytes() == before  # left as it was
    assert "beta.geojson: not valid JSON" in (out_dir / "index.html").read_text(encoding="utf-8")


def test_unreadable_summary_is_a_failed_slide(out_dir):
    slide_files(out_dir, "alpha").summary.write_text("{", encoding="utf-8")
    result = recount_folder(out_dir, settings=HotspotSettings())
    assert result.failed_now == ["alpha"] and result.recounted == ["beta"]


def test_not_a_prediction_folder(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        recount_folder(tmp_path / "nope", settings=HotspotSettings())
    with pytest.raises(InputError, match=r"not a wsdal prediction output folder \(no"):
        recount_folder(tmp_path, settings=HotspotSettings())


def test_threshold_below_the_prediction_is_refused_before_writing(out_dir):
    before = (out_dir / "counts.csv").read_bytes()
    with pytest.raises(ConfigError, match=r"below 0\.6"):
        recount_folder(out_dir, settings=HotspotSettings(), threshold=0.3)
    assert (out_dir / "counts.csv").read_bytes() == before


def test_a_count_while_a_prediction_writes_the_folder_is_refused(out_dir):
    before = (out_dir / "counts.csv").read_bytes()
    running = {"command": "wsdal predict", "model_sha256": "abc", "threshold": 0.6}
    with FolderLock(out_dir, settings=running, command="wsdal predict"):
        with pytest.raises(OutputError, match=r"wsdal predict \(process .* other settings"):
            recount_folder(out_dir, settings=HotspotSettings(area_mm2=0.3))
    assert (out_dir / "counts.csv").read_bytes() == before
    assert recount_folder(out_dir, settings=HotspotSettings(area_mm2=0.3)).recounted
