"""Whole-slide prediction: the streaming engine and the batch runner.

Public API::

    predict_slide(slide, model, *, tissue=None, threshold=None, tile_size_px=None,
                  batch_size=None, reader_threads=None, progress=None) -> SlidePrediction
    run_batch(source, model_path, out_dir, *, settings=PredictSettings(), force=False,
              write_qupath=False, progress=None) -> BatchResult       # wsdal predict
    predict_image(record, model, out_dir, ...) -> SlideSummary        # one image of a batch
    predict_one(source, record, model, out_dir, *, model_info, settings) -> SlideSummary
                                         # one image, failures as failed summaries (schedulers)
    run_batch(..., executor=RayExecutor("auto"))   # wsdal predict --ray auto: a task per slide
    run_batch(..., shard=Shard.parse("0/4"))       # wsdal predict --shard 0/4 (job arrays)
    PredictSettings, BatchState (OUT/batch.json), ImageJob / ImageOutcome (the unit of work)
"""

from wsdal_wsi.predict.batch import (
    BatchResult,
    check_write_qupath,
    describe_model,
    predict_one,
    run_batch,
)
from wsdal_wsi.predict.engine import SlidePrediction, predict_slide
from wsdal_wsi.predict.image import predict_image, previous_result, regions_of
from wsdal_wsi.predict.jobs import Executor, ImageJob, ImageOutcome, LocalExecutor
from wsdal_wsi.predict.plan import (
    TilePlan,
    default_batch_size,
    default_reader_threads,
    default_tile_size,
    inference_area,
    margin_px_for,
    plan_tiles,
)
from wsdal_wsi.predict.ray_executor import RayExecutor, RayUnavailableError
from wsdal_wsi.predict.settings import ENGINE_VERSION, PredictSettings, detection_key, file_sha256
from wsdal_wsi.predict.shard import Shard
from wsdal_wsi.predict.state import BATCH_FILE, BatchState, ImageState

__all__ = [
    "BATCH_FILE",
    "ENGINE_VERSION",
    "BatchResult",
    "BatchState",
    "Executor",
    "ImageJob",
    "ImageOutcome",
    "ImageState",
    "LocalExecutor",
    "PredictSettings",
    "RayExecutor",
    "RayUnavailableError",
    "Shard",
    "SlidePrediction",
    "TilePlan",
    "check_write_qupath",
    "default_batch_size",
    "default_reader_threads",
    "default_tile_size",
    "describe_model",
    "detection_key",
    "file_sha256",
    "inference_area",
    "margin_px_for",
    "plan_tiles",
    "predict_image",
    "predict_one",
    "predict_slide",
    "previous_result",
    "regions_of",
    "run_batch",
]
