"""The unit of work of a batch: what a Ray worker receives, and failures as outcomes."""

from __future__ import annotations

import pickle

import pytest

from wsdal_wsi.model import load_model
from wsdal_wsi.predict import PredictSettings
from wsdal_wsi.predict.batch import _make_job, describe_model
from wsdal_wsi.predict.jobs import predict_job, reuse_previous
from wsdal_wsi.qupath import open_source
from wsdal_wsi.report import read_summary, slide_files


@pytest.fixture(scope="module")
def model(scaleout_batch):
    return load_model(scaleout_batch.model, device="cpu")


def test_a_job_travels_by_pickle_with_its_record_and_predicts_the_same(
    scaleout_batch, model, tmp_path
):
    source = open_source(scaleout_batch.folder)
    record = next(r for r in source.images() if r.key == "synth_000")
    settings = PredictSettings(device="cpu", tile_size_px=512)
    info = describe_model(scaleout_batch.model, model)
    job = _make_job(0, record, source, tmp_path, model_info=info, settings=settings,
                    spec=model.spec)  # fmt: skip
    shipped = pickle.loads(pickle.dumps(job))  # what Ray does; the source is not in it
    assert shipped.record.annotations.points_per_class() == record.annotations.points_per_class()
    outcome = predict_job(shipped, model)
    assert outcome.status == "done" and outcome.wall_s > 0
    reference = read_summary(slide_files(scaleout_batch.out, "synth_000").summary)
    assert outcome.summary.detections == reference.detections
    assert reuse_previous(job, force=False).status == "skipped"  # finished: not predicted again
    assert reuse_previous(job, force=True) is None


def test_a_slide_that_cannot_be_read_is_a_failed_outcome_with_its_summary(
    scaleout_batch, model, tmp_path
):
    source = open_source(scaleout_batch.folder)
    record = next(r for r in source.images() if r.key == "broken")
    info = describe_model(scaleout_batch.model, model)
    job = _make_job(3, record, source, tmp_path, model_info=info,
                    settings=PredictSettings(device="cpu"), spec=model.spec)  # fmt: skip
    outcome = predict_job(job, model)
    assert outcome.status == "failed" and "broken.tiff" in outcome.reason
    written = read_summary(slide_files(tmp_path, "broken").summary)
    assert written.status == "failed" and written.reason == outcome.reason
