"""The batch runner: outputs, resume, skipping, recounting, failures recorded and survived."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.errors import InputError, OutputError
from wsdal_wsi.predict import PredictSettings, run_batch
from wsdal_wsi.predict import image as image_mod
from wsdal_wsi.qupath import open_source, read_objects
from wsdal_wsi.report import read_summary, slide_files

SETTINGS = PredictSettings(device="cpu", tile_size_px=512, thumbnail_px=256, gallery_n=4)


@pytest.fixture(scope="module")
def slides(mini_data, tmp_path_factory) -> Path:
    """The two mini slides with their sidecars, in a folder of their own."""
    folder = tmp_path_factory.mktemp("slides")
    for s in mini_data.slides:
        shutil.copy(s.slide_path, folder)
        shutil.copy(s.annotation_path, folder)
    return folder


@pytest.fixture(scope="module")
def finished(slides, tiny_model_path, tmp_path_factory) -> tuple[Path, object]:
    """A finished batch over ``slides`` (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "OUT"
    return out, run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS)


def _copy(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished[0], tmp_path / "OUT"))


def _count_predictions(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = image_mod.predict_slide

    def counting(slide, *args, **kwargs):
        calls.append(slide.name)
        return real(slide, *args, **kwargs)

    monkeypatch.setattr(image_mod, "predict_slide", counting)
    return calls


def test_a_batch_writes_every_output(finished, tiny_model_path):
    out, result = finished
    assert [im.status for im in result.state.images] == ["done", "done"]
    assert not result.failed
    for im in result.state.images:
        files = slide_files(out, im.key)
        for p in (files.geojson, files.summary, files.tissue, files.thumbnail, files.report):
            assert p.is_file(), p
        summary = read_summary(files.summary)
        assert summary.ok and summary.detections == im.detections
        assert summary.model.sha256 == result.state.header["model"]["sha256"]
        assert summary.threshold == 0.2 and summary.detections > 0
        assert [r.class_name for r in summary.regions] == ["Region"]  # the sidecar's area
        doc = json.loads(files.geojson.read_text(encoding="utf-8"))
        prov = doc["wsdal"]
        assert prov["slide"]["key"] == im.key and prov["model"]["path"] == str(tiny_model_path)
        assert prov["settings"]["detection"]["threshold"] == 0.2
        assert prov["settings"]["engine"]["tile_size_px"] == 512
    for name in ("counts.csv", "counts.xlsx", "index.html", "batch.json"):
        assert (out / name).is_file()
    state = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert state["status"] == "finished" and state["counts"]["done"] == 2
    assert state["images"][0]["timings"]["detect_s"] >= 0


def test_a_re_run_skips_finished_slides(finished, slides, tiny_model_path, tmp_path, monkeypatch):
    out = _copy(finished, tmp_path)
    calls = _count_predictions(monkeypatch)
    result = run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS)
    assert [im.status for im in result.state.images] == ["skipped", "skipped"]
    assert calls == []
    assert [s.detections for s in result.summaries] == [
        im.detections for im in finished[1].state.images
    ]
    # other hotspot settings: recounted from the files, without the model
    other = dataclasses.replace(SETTINGS, hotspot=HotspotSettings(area_mm2=0.01))
    result = run_batch(open_source(slides), tiny_model_path, out, settings=other)
    assert [im.status for im in result.state.images] == ["recounted", "recounted"]
    assert calls == []
    assert read_summary(slide_files(out, "synth_000").summary).hotspot_settings.area_mm2 == 0.01
    # --force and another threshold predict again
    result = run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS, force=True)
    assert [im.status for im in result.state.images] == ["done", "done"] and len(calls) == 2
    higher = dataclasses.replace(SETTINGS, threshold=0.9)
    result = run_batch(open_source(slides), tiny_model_path, out, settings=higher)
    assert [im.status for im in result.state.images] == ["done", "done"] and len(calls) == 4
    assert result.state.header["settings"]["threshold_used"] == 0.9


def test_an_interrupted_batch_resumes(slides, tiny_model_path, tmp_path, monkeypatch):
    out = tmp_path / "OUT"

    def stop_after_first(im):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS,
                  on_image_done=stop_after_first)  # fmt: skip
    state = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert state["status"] == "interrupted"
    assert [im["status"] for im in state["images"]] == ["done", "pending"]
    calls = _count_predictions(monkeypatch)
    result = run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS)
    assert [im.status for im in result.state.images] == ["skipped", "done"]
    assert calls == ["synth_001"]


def test_failing_slides_are_recorded_and_the_batch_goes_on(
    slides, tiny_model_path, tmp_path, monkeypatch, builders
):
    folder = Path(shutil.copytree(slides, tmp_path / "slides"))
    builders.corrupt_copy(folder / "synth_000.tiff", folder / "broken.tiff")
    real = image_mod.predict_slide

    def flaky(slide, *args, **kwargs):
        if slide.name == "synth_001":
            raise RuntimeError("CUDA error: an illegal memory access")
        return real(slide, *args, **kwargs)

    monkeypatch.setattr(image_mod, "predict_slide", flaky)
    out = tmp_path / "OUT"
    result = run_batch(open_source(folder), tiny_model_path, out, settings=SETTINGS)
    status = {im.key: im for im in result.state.images}
    assert status["synth_000"].status == "done"
    assert status["broken"].status == "failed"
    assert "broken.tiff" in status["broken"].reason and "truncated" in status["broken"].reason
    assert status["synth_001"].status == "failed"
    assert status["synth_001"].reason == (
        "unexpected error: RuntimeError: CUDA error: an illegal memory access"
    )
    assert "Traceback" in status["synth_001"].traceback
    failed = read_summary(slide_files(out, "broken").summary)
    assert failed.status == "failed" and "truncated" in failed.reason
    assert len(result.failed) == 2 and len(result.summaries) == 3
    assert "broken" in (out / "counts.csv").read_text(encoding="utf-8-sig")
    # the failed ones are tried again on a re-run, the done one is not
    monkeypatch.setattr(image_mod, "predict_slide", real)
    calls = _count_predictions(monkeypatch)
    result = run_batch(open_source(folder), tiny_model_path, out, settings=SETTINGS)
    assert {im.key: im.status for im in result.state.images} == {
        "broken": "failed", "synth_000": "skipped", "synth_001": "done"
    }  # fmt: skip
    assert calls == ["synth_001"]


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_slide_folder_as_out_is_refused_and_nothing_is_written(
    slides, tiny_model_path, tmp_path
):
    """Finding 1: ``--out`` = the slide folder replaced the pathologist's sidecars."""
    folder = Path(shutil.copytree(slides, tmp_path / "slides"))
    before = _digests(folder)
    with pytest.raises(OutputError, match=r"would write synth_000\.geojson over the input"):
        run_batch(open_source(folder), tiny_model_path, folder, settings=SETTINGS)
    assert _digests(folder) == before  # not one file added or changed
    one_slide = open_source(folder / "synth_001.tiff")
    with pytest.raises(OutputError, match=r"synth_001\.geojson"):
        run_batch(one_slide, tiny_model_path, folder, settings=SETTINGS)
    assert _digests(folder) == before


def test_full_disk_at_the_batch_files_stops_with_a_clear_error(
    slides, tiny_model_path, tmp_path, monkeypatch
):
    """Finding 8: batch-level writes on a full disk behave like per-slide ones."""
    out = tmp_path / "OUT"
    real = os.replace

    def full_at_counts(src, dst):
        if Path(dst).name == "counts.csv":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full_at_counts)
    with pytest.raises(OutputError, match=r"counts\.csv: cannot write: no space left"):
        run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS)
    state = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert state["status"] == "interrupted"
    assert [im["status"] for im in state["images"]] == ["done", "done"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file
    for im in state["images"]:
        assert read_summary(slide_files(out, im["key"]).summary).ok
    monkeypatch.setattr(os, "replace", real)  # space freed: the re-run finishes the batch
    result = run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS)
    assert [im.status for im in result.state.images] == ["skipped", "skipped"]
    assert (out / "counts.csv").is_file() and result.state.status == "finished"


def test_full_disk_before_the_first_write(slides, tiny_model_path, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match=r"batch\.json: cannot write: no space left"):
        run_batch(open_source(slides), tiny_model_path, tmp_path / "OUT", settings=SETTINGS)
    assert not [p for p in (tmp_path / "OUT").iterdir() if p.is_file()]


def test_a_run_with_other_settings_is_refused_while_one_runs(slides, tiny_model_path, tmp_path):
    """Finding 9: two runs into one folder with other settings: the second is refused."""
    out = tmp_path / "OUT"
    other = dataclasses.replace(SETTINGS, threshold=0.9)
    refused = []

    def second_run(im):
        if not refused:
            with pytest.raises(OutputError) as info:
                run_batch(open_source(slides), tiny_model_path, out, settings=other)
            refused.append(str(info.value))

    first = run_batch(
        open_source(slides), tiny_model_path, out, settings=SETTINGS, on_image_done=second_run
    )
    (msg,) = refused
    assert "wsdal predict" in msg and "other settings" in msg and "differs: threshold" in msg
    assert first.state.status == "finished"
    # what is on disk is what the first run reported
    for im in first.state.images:
        assert read_summary(slide_files(out, im.key).summary).detections == im.detections
    # afterwards the other settings are welcome
    later = run_batch(open_source(slides), tiny_model_path, out, settings=other)
    assert [im.status for im in later.state.images] == ["done", "done"]


def test_two_runs_with_the_same_settings_share_the_slides(
    slides, tiny_model_path, tmp_path, monkeypatch
):
    """The same settings twice at once: each slide is predicted once, both runs end complete."""
    out = tmp_path / "OUT"
    real = image_mod.predict_slide
    calls: list[tuple[str, str]] = []
    second_done = threading.Event()
    results = {}

    def second():
        results["second"] = run_batch(
            open_source(slides),
            tiny_model_path,
            out,
            settings=SETTINGS,
            on_image_done=lambda im: im.status == "done" and second_done.set(),
        )

    def predicting(slide, *args, **kwargs):
        who = threading.current_thread().name
        calls.append((who, slide.name))
        if who == "MainThread" and len(calls) == 1:  # the first run holds synth_000
            thread = threading.Thread(target=second, name="second")
            results["thread"] = thread
            thread.start()
            assert second_done.wait(120), "the second run did not predict the other slide"
        return real(slide, *args, **kwargs)

    monkeypatch.setattr(image_mod, "predict_slide", predicting)
    first = run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS)
    results["thread"].join(120)
    second_result = results["second"]
    assert sorted(calls) == [("MainThread", "synth_000"), ("second", "synth_001")]
    assert [im.status for im in first.state.images] == ["done", "skipped"]
    assert [im.status for im in second_result.state.images] == ["skipped", "done"]
    for run in (first, second_result):
        assert [s.detections for s in run.summaries] == [
            read_summary(slide_files(out, k).summary).detections for k in ("synth_000", "synth_001")
        ]


def test_a_foreign_batch_json_is_not_overwritten(slides, tiny_model_path, tmp_path):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "batch.json").write_text('{"my": "data"}')
    with pytest.raises(InputError, match="not a wsdal-wsi batch file"):
        run_batch(open_source(slides), tiny_model_path, out, settings=SETTINGS)
    assert (out / "batch.json").read_text() == '{"my": "data"}'


def test_a_project_gets_the_exchange_results(mini_data, tiny_model_path, tmp_path, builders):
    slides = [s.slide_path for s in mini_data.slides]
    sidecars = [s.annotation_path for s in mini_data.slides]
    missing = tmp_path / "gone" / "moved.tiff"
    qpproj = builders.make_project(tmp_path / "project", [*slides, missing], sidecars)
    out = tmp_path / "OUT"
    result = run_batch(open_source(qpproj), tiny_model_path, out, settings=SETTINGS)
    status = {im.key: im for im in result.state.images}
    assert [status[k].status for k in ("1", "2")] == ["done", "done"]
    assert status["3"].status == "failed" and "moved.tiff" in status["3"].reason
    for key in ("1", "2"):
        exchange = tmp_path / "project" / "wsdal" / "results" / f"{key}.geojson"
        assert exchange.is_file()
        objects = read_objects(exchange)
        assert sum(o.object_type == "detection" for o in objects) == status[key].detections
        summary = read_summary(slide_files(out, key).summary)
        assert summary.geojson_copies == [str(exchange.resolve())]
        assert summary.slide.name == slides[int(key) - 1].name


def test_a_slide_without_resolution_fails_until_mpp_is_given(mini_data, tiny_model_path, tmp_path):
    import numpy as np
    import tifffile

    folder = tmp_path / "slides"
    folder.mkdir()
    tifffile.imwrite(folder / "nores.tiff", np.full((512, 512, 3), 235, np.uint8),
                     tile=(256, 256), photometric="rgb")  # fmt: skip
    known = mini_data.slides[0].slide_path  # records 0.25 µm/px
    shutil.copy(known, folder)
    out = tmp_path / "OUT"
    result = run_batch(open_source(folder), tiny_model_path, out, settings=SETTINGS)
    by_key = {im.key: im for im in result.state.images}
    assert by_key["nores"].status == "failed"
    assert "does not record its resolution" in by_key["nores"].reason
    assert "--mpp" in by_key["nores"].reason
    assert by_key[known.stem].status == "done"
    # a batch-wide --mpp serves the slide without one and never rescales the other
    result = run_batch(open_source(folder, mpp=0.5), tiny_model_path, out, settings=SETTINGS)
    # (the known slide's result does not depend on --mpp: finished, so skipped)
    assert {im.key: im.status for im in result.state.images} == {
        "nores": "done",
        known.stem: "skipped",
    }
    summary = read_summary(slide_files(out, "nores").summary)
    assert summary.slide.mpp == 0.5 and summary.slide.mpp_source == "user (--mpp)"
    own = read_summary(slide_files(out, known.stem).summary)
    assert own.slide.mpp == pytest.approx(0.25) and own.slide.mpp_source != "user (--mpp)"


def test_the_sources_mpp_serves_when_the_settings_have_none(tiny_model_path, tmp_path):
    import numpy as np
    import tifffile

    folder = tmp_path / "slides"
    folder.mkdir()
    tifffile.imwrite(folder / "nores.tiff", np.full((512, 512, 3), 235, np.uint8),
                     tile=(256, 256), photometric="rgb")  # fmt: skip
    # e.g. a scheduler that opened the source with --mpp and kept the default settings
    result = run_batch(open_source(folder, mpp=0.5), tiny_model_path, tmp_path / "OUT",
                       settings=SETTINGS)  # fmt: skip
    (im,) = result.state.images
    assert im.status == "done", im.reason
    summary = read_summary(slide_files(tmp_path / "OUT", "nores").summary)
    assert summary.slide.mpp == 0.5 and summary.slide.mpp_source == "user (--mpp)"


def test_predict_one_gives_the_batch_result_and_records_failures(
    slides, finished, tiny_model_path, tmp_path
):
    from wsdal_wsi.model.file import load_model
    from wsdal_wsi.predict import describe_model, predict_one

    source = open_source(slides)
    model = load_model(tiny_model_path, device="cpu")
    info = describe_model(tiny_model_path, model)
    record = source.images()[0]
    out = tmp_path / "one"
    summary = predict_one(source, record, model, out, model_info=info, settings=SETTINGS)
    assert summary.status == "ok"
    batch = read_summary(slide_files(finished[0], record.key).summary)
    assert summary.detections == batch.detections
    assert summary.hotspot == batch.hotspot
    assert read_summary(slide_files(out, record.key).summary).status == "ok"

    # A slide that cannot be read: a failed summary with the reason, no exception.
    broken = tmp_path / "broken"
    broken.mkdir()
    first = sorted(slides.glob("*.tiff"))[0]
    (broken / first.name).write_bytes(first.read_bytes()[:4000])
    bad_source = open_source(broken)
    bad = predict_one(
        bad_source, bad_source.images()[0], model, out, model_info=info, settings=SETTINGS
    )
    assert bad.status == "failed"
    assert first.name in bad.reason
    assert read_summary(slide_files(out, first.stem).summary).status == "failed"
