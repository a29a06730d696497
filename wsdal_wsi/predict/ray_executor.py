"""``wsdal predict --ray ADDRESS``: one Ray task per slide, on all the GPUs and nodes of a cluster.

:class:`RayExecutor` is an :class:`~wsdal_wsi.predict.jobs.Executor` for
:func:`~wsdal_wsi.predict.batch.run_batch`: the batch (the *driver*) decides what is
finished, records every outcome in ``batch.json``, shows the batch's progress bar
and writes the spreadsheets and index as slides finish; Ray runs the rest.

- **Cluster.** ``address="local"`` starts a Ray instance on this machine for the
  batch, serving this machine only (it listens on 127.0.0.1) and stopped after it;
  ``"auto"`` joins the cluster started on this node with ``ray start --head``;
  ``"HOST:PORT"`` joins that one. A process already connected to Ray
  (``ray.init`` by the caller) uses its connection.
- **Tasks.** One per slide to predict, each given ``gpus_per_slide`` GPUs
  (default: 1 where the cluster has GPUs, else 0; fractions share a GPU) and
  ``cpus_per_slide`` CPUs (default: the cluster's CPUs per GPU times the task's
  GPUs, 1 to 16; 1 on a CPU cluster), which set the task's torch threads and, unless
  ``--reader-threads`` is given, its tile readers. A task gets the
  :class:`~wsdal_wsi.predict.jobs.ImageJob` (the slide's record: the source is never
  opened again on a worker) and runs :func:`~wsdal_wsi.predict.jobs.predict_job`,
  the code a plain run uses, so its results are the same.
- **Model.** The model file is read once by the driver and put in Ray's object
  store; a worker fetches it once and keeps the built network for its next tasks.
- **Failures.** A slide that fails is a failed outcome with its reason (as in a
  plain run). A task whose worker process dies (out of memory, a crash in a
  library) is retried once by Ray on a fresh worker; if that one dies too, the
  slide is recorded failed with the reason.

Ray is optional (``pip install "wsdal-wsi[ray]"``): it is imported only here, inside
the functions that need it. Every worker must have wsdal-wsi installed and see the
slides, the model and OUT at the same paths (shared storage).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from wsdal_wsi.errors import ConfigError, ModelFileError, WsdalError
from wsdal_wsi.model import load_model_bytes, resolve_device
from wsdal_wsi.model.file import ModelSpec
from wsdal_wsi.predict.jobs import ImageJob, ImageOutcome, failed_outcome, predict_job
from wsdal_wsi.predict.plan import default_reader_threads
from wsdal_wsi.progress import Progress

__all__ = ["RAY_MISSING", "RayExecutor", "RayUnavailableError"]

log = logging.getLogger(__name__)

#: What to do when Ray is not installed.
RAY_MISSING = 'Ray is not installed: pip install "wsdal-wsi[ray]"'
#: Most CPUs a slide task asks for by default.
MAX_DEFAULT_CPUS = 16


class RayUnavailableError(WsdalError):
    """``--ray`` was asked for and Ray is not installed, or the cluster cannot be reached."""


def _import_ray() -> Any:
    # ray: optional dependency (the [ray] extra), imported only where it is used
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--ray: {RAY_MISSING} ({exc})") from exc
    return ray


def _connect(address: str, *, num_cpus: int | None) -> tuple[Any, bool]:
    """Connect to (or start) Ray; return the module and whether we started it."""
    if address == "local":
        # A local instance serves this machine only: Ray's single-machine mode binds it
        # to 127.0.0.1 (read when ray is first imported in this process).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
        else:
            ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = " (start one with 'ray start --head', or use --ray local)" if address else ""
        raise RayUnavailableError(f"--ray {address}: cannot connect to Ray{hint}: {exc}") from exc
    return ray, True


#: The model of this worker process (one at a time), reused across its tasks.
_WORKER_MODEL: dict[str, Any] = {}


def _cached_model(model_refs: list[Any], *, path: str, sha256: str, device: str) -> Any:
    """The worker's model: fetched from the object store and built once per process."""
    key = (sha256, device)
    cached = _WORKER_MODEL.get("key")
    if cached != key:
        ray = _import_ray()
        _WORKER_MODEL.clear()
        data = ray.get(model_refs[0])
        _WORKER_MODEL.update(key=key, model=load_model_bytes(data, path=path, device=device))
    return _WORKER_MODEL["model"]


def _predict_remote(job: ImageJob, model_refs: list[Any], cpus: int) -> ImageOutcome:
    """The Ray task: predict one slide on this worker (its CPUs and, if given, its GPU)."""
    torch.set_num_threads(max(1, cpus))
    try:
        device = resolve_device(job.settings.device)
        if job.settings.reader_threads is None:
            threads = default_reader_threads(device, cores=cpus)
            job = dataclasses.replace(
                job, settings=dataclasses.replace(job.settings, reader_threads=threads)
            )
        model = _cached_model(
            model_refs,
            path=job.model_info.path or "model.pt",
            sha256=job.model_info.sha256 or "",
            device=str(device),
        )
    except WsdalError as exc:  # e.g. --device cuda on a worker without a GPU
        return failed_outcome(job, f"on a Ray worker: {exc}")
    return predict_job(job, model)


class RayExecutor:
    """Predict the slides of a batch on a Ray cluster, one task per slide.

    Parameters
    ----------
    address : str
        ``"local"`` (start one for the batch), ``"auto"`` (the cluster of this
        node) or ``"HOST:PORT"``.
    gpus_per_slide : float, optional
        GPUs per task, 0 to 1 (fractions share a GPU). Default: 1 where the
        cluster has GPUs, else 0.
    cpus_per_slide : int, optional
        CPUs per task (torch threads and tile readers). Default: the cluster's
        CPUs per GPU times ``gpus_per_slide`` (1 to 16); 1 without GPUs.
    local_cpus : int, optional
        CPUs of a ``local`` instance (default: the machine's).
    """

    parallel = True

    def __init__(
        self,
        address: str = "local",
        *,
        gpus_per_slide: float | None = None,
        cpus_per_slide: int | None = None,
        local_cpus: int | None = None,
    ) -> None:
        if not address or not isinstance(address, str):
            raise ConfigError(f"--ray: expected local, auto or HOST:PORT, got {address!r}")
        if gpus_per_slide is not None and not 0 <= float(gpus_per_slide) <= 1:
            raise ConfigError(
                f"--gpus-per-slide must be between 0 and 1 (fractions share a GPU), "
                f"got {gpus_per_slide}"
            )
        if cpus_per_slide is not None and (
            isinstance(cpus_per_slide, bool) or int(cpus_per_slide) != cpus_per_slide
            or cpus_per_slide < 1
        ):  # fmt: skip
            raise ConfigError(f"--cpus-per-slide must be a positive integer, got {cpus_per_slide}")
        self.address = address
        self.gpus_per_slide = gpus_per_slide
        self.cpus_per_slide = cpus_per_slide
        self.local_cpus = local_cpus
        self._ray: Any = None
        self._started = False
        self._model_ref: Any = None
        self._info: dict[str, Any] = {"kind": "ray", "address": address}

    def prepare(self, model_path: Path) -> ModelSpec:
        """Check the model, connect to Ray, decide the task resources, ship the model."""
        try:
            data = Path(model_path).read_bytes()
        except OSError as exc:
            raise ModelFileError(f"{model_path}: cannot read the model file ({exc})") from exc
        spec = load_model_bytes(data, path=model_path, device="cpu").spec  # fails here, not N times
        self._ray, self._started = _connect(self.address, num_cpus=self.local_cpus)
        gpus, cpus = self._resources()
        self.gpus_per_slide, self.cpus_per_slide = gpus, cpus
        self._model_ref = self._ray.put(data)
        return spec

    def _resources(self) -> tuple[float, int]:
        """The GPUs and CPUs each task asks for, checked against the cluster's nodes."""
        ray = self._ray
        total = ray.cluster_resources()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        n_gpu, n_cpu = float(total.get("GPU", 0)), float(total.get("CPU", 0))
        gpus = self.gpus_per_slide
        if gpus is None:
            gpus = 1.0 if n_gpu > 0 else 0.0
        cpus = self.cpus_per_slide
        if cpus is None:
            per_gpu = n_cpu / n_gpu if n_gpu else 1.0
            cpus = int(min(MAX_DEFAULT_CPUS, max(1, math.floor(per_gpu * gpus)))) if gpus else 1
        fits = [
            n
            for n in nodes
            if float(n.get("CPU", 0)) >= cpus and float(n.get("GPU", 0)) >= (gpus or 0)
        ]
        if not fits:
            raise ConfigError(
                f"--ray {self.address}: no node of the cluster has {cpus} CPU(s) and {gpus:g} "
                f"GPU(s) for a slide (cluster: {n_cpu:g} CPUs, {n_gpu:g} GPUs); "
                "lower --cpus-per-slide / --gpus-per-slide"
            )
        self._info.update(
            cluster={"CPU": n_cpu, "GPU": n_gpu, "nodes": len(nodes)},
            node_addresses=sorted({str(n.get("NodeManagerAddress")) for n in ray.nodes()}),
            gpus_per_slide=gpus,
            cpus_per_slide=cpus,
            started_here=self._started,
        )
        return gpus, cpus

    def run(
        self,
        jobs: Sequence[ImageJob],
        *,
        progress: Progress,
        on_start: Callable[[ImageJob], None],
    ) -> Iterator[tuple[ImageJob, ImageOutcome]]:
        """Submit one task per job; yield each job with its outcome as it finishes."""
        ray = self._ray
        task = ray.remote(_predict_remote).options(
            num_cpus=self.cpus_per_slide,
            num_gpus=self.gpus_per_slide,
            max_retries=1,  # a dead worker: once more on a fresh one
            retry_exceptions=False,
        )
        pending = {task.remote(job, [self._model_ref], self.cpus_per_slide): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    yield job, self._outcome(ref, job)
        finally:
            for ref in pending:  # interrupted: do not leave work running on the cluster
                ray.cancel(ref, force=True)

    def _outcome(self, ref: Any, job: ImageJob) -> ImageOutcome:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            died = (
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError,
                ray.exceptions.OutOfMemoryError,
            )
            if isinstance(exc, died):
                reason = "the Ray worker predicting it died, and again when retried"
            else:
                reason = "the Ray task failed"
            return failed_outcome(job, f"{reason} ({type(exc).__name__}: {first})")

    def describe(self) -> dict[str, Any]:
        return dict(self._info)

    def close(self) -> None:
        """Drop the model from the object store; stop Ray if this executor started it."""
        if self._ray is None:
            return
        self._model_ref = None
        if self._started:
            self._ray.shutdown()
        self._ray, self._started = None, False
