"""What every stage shares: its folder, its sample set, and the resumable epoch loop.

A stage folder (``RUN/ns``, ``RUN/dmu``, ...) holds ``checkpoint.pt`` (one dict:
model, optimizer, scheduler, epoch, config and the stage's own state, written
atomically after every epoch), ``metrics.csv`` (one row per epoch) and, written
last, ``done.json`` with the stage's statistics. A stage with ``done.json`` is
finished and is never redone by ``--resume``; a stage with only a checkpoint
continues from the epoch after it.

With several processes (torchrun; :mod:`wsdal_wsi.train.distributed`) the context
knows this process's ``rank`` among ``world``, :func:`fit` trains through
DistributedDataParallel, and :class:`StageDir` writes only on rank 0 (every process
reads).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from wsdal_wsi.atomic import atomic_open, atomic_path, make_dirs, write_json_atomic
from wsdal_wsi.errors import TrainingError
from wsdal_wsi.model.device import prepare_model
from wsdal_wsi.model.nets import load_trunk_weights
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.provenance import utc_now_iso
from wsdal_wsi.train.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentParams,
    matched_shifts,
    with_stain_jitter,
)
from wsdal_wsi.train.data import PatchBatches
from wsdal_wsi.train.distributed import is_main_process, sync_buffers, wrap_ddp
from wsdal_wsi.train.engine import (
    LossFn,
    make_optimizer,
    make_scheduler,
    train_one_epoch,
)
from wsdal_wsi.train.store import PatchStore

__all__ = ["SampleSet", "StageContext", "StageDir", "fit", "read_table", "write_table"]

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    """What a stage needs besides its own settings.

    Attributes
    ----------
    store : PatchStore
    device : torch.device
    seed : int
    width : int
        ResNet-18 trunk width.
    pretrained : Path or None
        ResNet-18 weights (torchvision layout) to start every trunk from.
    progress : Progress
    cache_bytes : int or None
        Device cache budget for :class:`PatchBatches` (None: default).
    mean, std : tuple of float
        Input normalisation.
    negative_jitter_px, negative_jitter_prob : float
        Offsets of the negatives matched to the positives' jitter
        (:func:`~wsdal_wsi.train.augment.matched_shifts`; 0: none).
    stain_jitter : float
        HED jitter amplitude every training view gets at least (the preset's
        ``stain_jitter``; 0: the views as defined).
    rank, world : int
        This process among ``world`` training together (torchrun; 0 of 1 alone).
    """

    store: PatchStore
    device: torch.device
    seed: int = 0
    width: int = 64
    pretrained: Path | None = None
    progress: Progress = field(default_factory=lambda: NULL_PROGRESS)
    cache_bytes: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    negative_jitter_px: float = 0.0
    negative_jitter_prob: float = 0.0
    stain_jitter: float = 0.0
    rank: int = 0
    world: int = 1

    def seed_augmentations(self, generator: torch.Generator, *, epoch: int, stage: int) -> None:
        """Seed a stage's augmentation ``generator`` for ``epoch`` (each process its own
        stream; rank 0's is the single-process one)."""
        generator.manual_seed(self.seed * 100_003 + 11 * epoch + stage + self.rank * 1_000_003)

    def shifts(self, labels: Tensor, generator: torch.Generator) -> Tensor | None:
        """Per-sample offsets of a batch (see ``negative_jitter_px``), or None."""
        if self.negative_jitter_px <= 0 or self.negative_jitter_prob <= 0:
            return None
        return matched_shifts(
            labels,
            radius_px=self.negative_jitter_px,
            prob=self.negative_jitter_prob,
            generator=generator,
        )

    def view(self, params: AugmentParams) -> AugmentParams:
        """A stage's augmentation view with the run's stain jitter."""
        return with_stain_jitter(params, self.stain_jitter)

    @property
    def patch_px(self) -> int:
        return self.store.patch_px

    def batches(
        self,
        rows: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        mode: str,
        seed_offset: int = 0,
        drop_last: bool = False,
        groups: np.ndarray | None = None,
    ) -> PatchBatches:
        """:class:`PatchBatches` over ``rows`` of the store on the stage's device."""
        return PatchBatches(
            self.store.patches,
            rows,
            labels,
            batch_size=batch_size,
            device=self.device,
            mode=mode,
            seed=self.seed * 1000 + seed_offset,
            drop_last=drop_last,
            cache_bytes=self.cache_bytes,
            groups=groups,
            rank=self.rank,
            world=self.world,
        )

    def init_trunks(self, *trunks: nn.Module) -> str:
        """Load the pretrained weights into ``trunks``; return what was used."""
        if self.pretrained is None:
            return "random init"
        for t in trunks:
            load_trunk_weights(t, self.pretrained)
        return str(self.pretrained)

    def fit_stage(
        self,
        model: nn.Module,
        batches: PatchBatches,
        *,
        stage: StageDir,
        settings: Any,
        name: str,
        description: str,
        compute_loss: LossFn,
        n: int | None = None,
        begin_epoch: Callable[[int], None] | None = None,
        end_epoch: Callable[[int], Mapping[str, Any]] | None = None,
        get_state: Callable[[], dict[str, Any]] | None = None,
        set_state: Callable[[dict[str, Any]], None] | None = None,
        unused_parameters: bool = False,
    ) -> list[dict[str, Any]]:
        """:func:`fit` a stage's network on this context, then save its ``weights.pt``.

        ``settings`` is the stage's settings dataclass (``epochs``, ``lr``,
        ``weight_decay`` and the rest go into the checkpoint's config with ``name``,
        the seed, the width and ``n``, the number of samples, when given).
        ``unused_parameters``: the loss does not use every parameter (DDP must look).
        """
        config: dict[str, Any] = {
            "stage": name,
            **asdict(settings),
            "seed": self.seed,
            "width": self.width,
        }
        if n is not None:
            config["n"] = n
        metrics = fit(
            model,
            batches,
            stage=stage,
            device=self.device,
            epochs=settings.epochs,
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            compute_loss=compute_loss,
            config=config,
            progress=self.progress,
            description=description,
            begin_epoch=begin_epoch,
            end_epoch=end_epoch,
            get_state=get_state,
            set_state=set_state,
            unused_parameters=unused_parameters,
        )
        stage.save_weights(model)
        return metrics


@dataclass
class SampleSet:
    """A stage's training samples.

    Attributes
    ----------
    rows : ndarray ``(M,)`` int64
        Store rows.
    labels : ndarray ``(M,)`` int64
        Training label (0/1).
    origin : ndarray ``(M,)`` str
        Why the sample is in the set (``click``, ``jitter``, ``negative_click``,
        ``random_negative``, ``mined_negative``).
    """

    rows: np.ndarray
    labels: np.ndarray
    origin: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> SampleSet:
        """The samples where ``keep`` (bool ``(M,)`` or positions) selects."""
        return SampleSet(self.rows[keep], self.labels[keep], self.origin[keep])

    def save(self, path: Path) -> None:
        write_table(path, {"row": self.rows, "label": self.labels, "origin": self.origin})

    @classmethod
    def load(cls, path: Path) -> SampleSet:
        t = read_table(path)
        return cls(
            t["row"].astype(np.int64), t["label"].astype(np.int64), t["origin"].astype(object)
        )


def write_table(path: Path, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
    """Write equal-length columns as a CSV file atomically (floats with 6 digits)."""
    names = list(columns)
    cols = [np.asarray(columns[n]) for n in names]
    n = len(cols[0]) if cols else 0
    with atomic_open(path) as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(n):
            w.writerow(
                [f"{c[i]:.6g}" if isinstance(c[i], (float, np.floating)) else c[i] for c in cols]
            )


def read_table(path: Path) -> dict[str, np.ndarray]:
    """Read a CSV written by :func:`write_table`; numeric columns become arrays of numbers."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise TrainingError(f"{path}: empty table")
    header, body = rows[0], rows[1:]
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        vals = [r[j] for r in body]
        for dtype in (np.int64, np.float64):
            try:
                out[name] = np.array(vals, dtype=dtype) if vals else np.zeros(0, dtype)
                break
            except ValueError:
                continue
        else:
            out[name] = np.array(vals, dtype=object)
    return out


class StageDir:
    """The folder of one stage: checkpoint, per-epoch metrics, ``done.json``.

    Every ``write``/``save`` method writes on the main process only (rank 0 of a
    torchrun group; always alone), so the processes of a distributed run can run the
    same code; every process reads.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = make_dirs(path)

    @property
    def done(self) -> dict[str, Any] | None:
        """The stage's statistics if it finished, else None."""
        p = self.path / "done.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TrainingError(f"{p}: unreadable ({exc}); delete it to redo the stage") from exc

    def write_done(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        """Mark the stage finished (written last, atomically) and drop its checkpoint."""
        block = {"finished": utc_now_iso(), **stats}
        if is_main_process():
            write_json_atomic(self.path / "done.json", block)
            (self.path / "checkpoint.pt").unlink(missing_ok=True)
        return block

    def save_table(self, name: str, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
        """:func:`write_table` into the stage folder."""
        if is_main_process():
            write_table(self.path / name, columns)

    def save_samples(self, name: str, samples: SampleSet) -> None:
        """A :class:`SampleSet` as ``name`` (CSV) in the stage folder."""
        if is_main_process():
            samples.save(self.path / name)

    def save_array(self, name: str, array: np.ndarray) -> None:
        """An array as ``name`` (``.npy``, atomically) in the stage folder."""
        if is_main_process():
            with atomic_path(self.path / name) as tmp, open(tmp, "wb") as fh:
                np.save(fh, array)

    def save_checkpoint(self, ckpt: Mapping[str, Any]) -> None:
        if not is_main_process():
            return
        with atomic_path(self.path / "checkpoint.pt") as tmp:
            torch.save(dict(ckpt), tmp)

    def load_checkpoint(self) -> dict[str, Any] | None:
        p = self.path / "checkpoint.pt"
        if not p.is_file():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise TrainingError(
                f"{p}: unreadable checkpoint ({exc}); delete it to redo the stage"
            ) from exc

    def save_weights(self, model: nn.Module) -> None:
        """Write the trained network's ``weights.pt`` (atomically)."""
        if not is_main_process():
            return
        with atomic_path(self.path / "weights.pt") as tmp:
            torch.save(model.state_dict(), tmp)

    def load_weights(self, model: nn.Module) -> nn.Module:
        """Load ``weights.pt`` into ``model`` (on the CPU); return the model."""
        p = self.path / "weights.pt"
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise TrainingError(
                f"{p}: unreadable weights ({exc}); delete the stage folder"
            ) from exc
        model.load_state_dict(state)
        return model

    def write_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not is_main_process():
            return
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        write_table(self.path / "metrics.csv", {k: [r.get(k, "") for r in rows] for k in keys})

    def read_metrics(self) -> list[dict[str, Any]]:
        p = self.path / "metrics.csv"
        if not p.is_file():
            return []
        t = read_table(p)
        n = len(next(iter(t.values()))) if t else 0
        return [
            {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in t.items()}
            for i in range(n)
        ]


def fit(
    model: nn.Module,
    batches: PatchBatches,
    *,
    stage: StageDir,
    device: torch.device,
    epochs: int,
    lr: float,
    weight_decay: float,
    compute_loss: LossFn,
    config: Mapping[str, Any],
    progress: Progress,
    description: str,
    begin_epoch: Callable[[int], None] | None = None,
    end_epoch: Callable[[int], Mapping[str, Any]] | None = None,
    get_state: Callable[[], dict[str, Any]] | None = None,
    set_state: Callable[[dict[str, Any]], None] | None = None,
    unused_parameters: bool = False,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``epochs`` epochs with checkpoints, resuming if one exists.

    Parameters
    ----------
    model : nn.Module
        Freshly built (weights are replaced from the checkpoint when resuming).
    batches : PatchBatches
    stage : StageDir
    device : torch.device
    epochs, lr, weight_decay
        Schedule: AdamW with cosine decay stepped once per epoch.
    compute_loss : callable
        ``(model, batch) -> (loss, metrics)``.
    config : mapping
        The stage's settings (JSON-able); a checkpoint made with other settings is
        refused.
    progress : Progress
    description : str
        Label of the progress bar.
    begin_epoch, end_epoch : callable, optional
        Called with the 0-based epoch before / after it; ``end_epoch`` returns
        extra metrics for the epoch's CSV row.
    get_state, set_state : callable, optional
        The stage's own state (tensors, JSON-able values) saved in / restored
        from the checkpoint (e.g. DMU's memory).
    unused_parameters : bool
        With several processes: the loss leaves some parameters unused (DDP's
        ``find_unused_parameters``).

    Returns
    -------
    list of dict
        Per-epoch metrics (also in ``metrics.csv``).
    """
    prepare_model(model, device)
    optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay)
    scheduler = make_scheduler(optimizer, epochs=epochs)
    config = json.loads(
        json.dumps({**dict(config), "epochs": epochs, "lr": lr, "weight_decay": weight_decay})
    )
    start = 0
    metrics: list[dict[str, Any]] = []
    ckpt = stage.load_checkpoint()
    if ckpt is not None:
        if ckpt.get("config") != config:
            raise TrainingError(
                f"{stage.path}: the checkpoint was made with other settings; "
                "use a new --out folder (or the original settings) to resume"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if set_state is not None:
            set_state(ckpt.get("state", {}))
        start = int(ckpt["epoch"]) + 1
        metrics = stage.read_metrics()[:start]
        log.info("%s: resuming after epoch %d", stage.path.name, start)
    net, loss = model, compute_loss
    if batches.world > 1:  # every process trains the same network (rank 0's start)
        net, calls = wrap_ddp(model, device, unused_parameters=unused_parameters)

        def loss(_net: nn.Module, batch: Any) -> Any:
            return compute_loss(calls, batch)

    per_epoch = batches.n_samples
    with progress.task(description, total=epochs * per_epoch) as task:
        task.update(completed=start * per_epoch)
        for epoch in range(start, epochs):
            if begin_epoch is not None:
                begin_epoch(epoch)
            row = train_one_epoch(
                net, optimizer, batches, device, compute_loss=loss, epoch=epoch, task=task
            )
            if batches.world > 1:
                sync_buffers(model)  # rank 0's batch-norm statistics, checkpointed and used
            scheduler.step()
            if end_epoch is not None:
                row.update(end_epoch(epoch))
            metrics.append({"epoch": epoch + 1, **row})
            stage.save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "config": config,
                    "state": get_state() if get_state is not None else {},
                }
            )
            stage.write_metrics(metrics)
    return metrics
