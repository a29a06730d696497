"""``wsdal demo``: the whole path on synthetic slides, resumable, in minutes on a CPU.

Steps, each in its own folder of the run folder ``OUT`` and reused when it is
already finished (so running the demo again continues where it stopped):

1. **synth**: training slides (``OUT/data/train``) and separate test slides
   (``OUT/data/test``), each with noisy pathologist clicks and the ground truth;
2. **train**: WS-DAL with the ``demo`` preset (``OUT/train``, model ``OUT/train/model.pt``);
3. **predict**: ``wsdal predict`` over the test slides (``OUT/predict``: GeoJSON,
   reports, ``counts.csv``, ``counts.xlsx``, ``index.html``);
4. **evaluate**: the detections against the synthetic ground truth, MIDOG
   matching (``OUT/evaluation.json``).

The test slides are never seen in training, so the F1 is an honest one.
:data:`QUICK` is a shrunken configuration (seconds of training, a tiny
network) for CI; its F1 means nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import make_dirs, write_json_atomic
from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.evaluation.folders import evaluate_folders
from wsdal_wsi.predict import PredictSettings, run_batch
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath import open_source
from wsdal_wsi.synth import MANIFEST_NAME, REALISTIC_NOISE, SynthParams, generate_dataset
from wsdal_wsi.train.presets import get_preset
from wsdal_wsi.train.run import RunSettings, train_run

__all__ = ["DEMO", "QUICK", "DemoConfig", "DemoResult", "run_demo"]

_STATE_FILE = "demo.json"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo makes and how long it trains.

    Attributes
    ----------
    name : str
        ``"demo"`` or ``"quick"``.
    train_slides, test_slides : int
        Synthetic slides to train on and to predict/evaluate.
    size_px : (int, int)
        Level-0 (w, h) of every training slide (0.25 µm/px).
    mitoses_per_mm2, lookalikes_per_mm2 : float
        Object densities of the training slides (dense, so small slides hold
        enough mitoses to learn).
    test_size_px : (int, int) or None
        Level-0 (w, h) of the test slides (None: ``size_px``). Large enough for a
        2 mm² hotspot window in the default demo (prediction is cheap; training
        is what costs).
    test_mitoses_per_mm2, test_lookalikes_per_mm2 : float or None
        Object densities of the test slides (None: the training ones); realistic
        in the default demo, so counts and scores look like a real slide's.
    preset : str
        Training preset (``demo``; ``tiny`` for the quick configuration).
    preset_changes : dict
        Preset fields changed (``"stage.field": value``), e.g. fewer epochs.
    seed : int
        Dataset and training seed.
    tile_size_px : int
        Tile side of the prediction.
    synth_workers : int or None
        Processes generating the slides (None: up to 4, by the cores).
    """

    name: str
    train_slides: int
    test_slides: int
    size_px: tuple[int, int]
    mitoses_per_mm2: float
    lookalikes_per_mm2: float
    preset: str
    preset_changes: dict[str, Any] = field(default_factory=dict)
    test_size_px: tuple[int, int] | None = None
    test_mitoses_per_mm2: float | None = None
    test_lookalikes_per_mm2: float | None = None
    seed: int = 0
    tile_size_px: int = 1024
    synth_workers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``OUT/demo.json``)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


#: The default demo: a few minutes on a laptop CPU.
DEMO = DemoConfig(
    name="demo",
    train_slides=4,
    test_slides=2,
    size_px=(3072, 3072),
    mitoses_per_mm2=220.0,
    lookalikes_per_mm2=220.0,
    preset="demo",
    test_size_px=(8192, 8192),
    test_mitoses_per_mm2=30.0,
    test_lookalikes_per_mm2=60.0,
)

#: The CI configuration (``wsdal demo --quick``): tiny slides, a tiny network, 1-2 epochs.
QUICK = DemoConfig(
    name="quick",
    train_slides=2,
    test_slides=1,
    size_px=(1280, 1280),
    mitoses_per_mm2=300.0,
    lookalikes_per_mm2=300.0,
    preset="tiny",
    preset_changes={
        "ns.epochs": 1,
        "dmu.epochs": 2,
        "dmu.warmup_epochs": 1,
        "csdgl.epochs": 1,
        "dle.draws": 2,
    },
    tile_size_px=768,
    synth_workers=1,
)


@dataclass
class DemoResult:
    """Where the demo's outputs are, and its score.

    Attributes
    ----------
    run_dir : Path
    data_dir : Path
        Training and test slides (``train/``, ``test/``, each with ``truth/``).
    model : Path
    train_dir : Path
    predict_dir : Path
    index_html, counts_xlsx, counts_csv : Path
    geojson : list of Path
        The results GeoJSON of each test slide (QuPath objects).
    evaluation : Path
        ``evaluation.json``.
    precision, recall, f1 : float
        Micro-averaged over the test slides (MIDOG matching within 7.5 µm).
    tp, fp, fn : int
    reused : list of str
        Steps found finished and reused.
    seconds : dict of str to float
        Wall time of each step run now.
    """

    run_dir: Path
    data_dir: Path
    model: Path
    train_dir: Path
    predict_dir: Path
    index_html: Path
    counts_xlsx: Path
    counts_csv: Path
    geojson: list[Path]
    evaluation: Path
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    reused: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _check_state(run_dir: Path, config: DemoConfig) -> None:
    path = run_dir / _STATE_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable ({exc}); use a new --out folder") from exc
        if old.get("config") != config.to_dict():
            raise ConfigError(
                f"{run_dir} holds a demo made with other settings "
                f"({old.get('config', {}).get('name')!r}, not {config.name!r}); "
                "use another --out folder"
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} is not empty and not a demo run folder; choose another --out")
    write_json_atomic(path, {"config": config.to_dict(), "created_by": provenance()})


def _synth(
    folder: Path,
    *,
    n: int,
    seed: int,
    size_px: tuple[int, int],
    mitoses_per_mm2: float,
    lookalikes_per_mm2: float,
    config: DemoConfig,
    progress: Progress,
) -> bool:
    """Generate a dataset into ``folder`` unless it is complete; True if it was reused."""
    if (folder / MANIFEST_NAME).is_file():
        return True
    params = SynthParams(
        width_px=size_px[0],
        height_px=size_px[1],
        mpp=0.25,
        mitoses_per_mm2=mitoses_per_mm2,
        lookalikes_per_mm2=lookalikes_per_mm2,
        tissue_fraction=0.7,
    )
    noise = REALISTIC_NOISE
    # Generated beside, then renamed: an interrupted generation is simply redone.
    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    workers = config.synth_workers or max(1, min(4, os.cpu_count() or 1))
    generate_dataset(
        tmp,
        n_slides=n,
        params=params,
        noise=noise,
        seed=seed,
        workers=workers,
        prefix=f"{folder.name}_",
        progress=progress,
    )
    os.replace(tmp, folder)
    return False


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    config: DemoConfig = DEMO,
    device: str = "auto",
    progress: Progress | None = None,
) -> DemoResult:
    """Run (or continue) the demo in ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        The run folder (created; an existing one is continued if it was made
        with the same configuration).
    config : DemoConfig
        :data:`DEMO` or :data:`QUICK`.
    device : str
        ``"auto"``, ``"cuda"`` or ``"cpu"``.
    progress : Progress, optional

    Returns
    -------
    DemoResult

    Raises
    ------
    ConfigError
        ``out_dir`` holds something else, or a demo of another configuration.
    """
    progress = progress or NULL_PROGRESS
    run_dir = Path(out_dir)
    _check_state(run_dir, config)
    data = run_dir / "data"
    make_dirs(data)
    reused: list[str] = []
    seconds: dict[str, float] = {}

    def step(name: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        value, was_reused = fn(*args)
        if was_reused:
            reused.append(name)
        else:
            seconds[name] = time.perf_counter() - t0
        return value

    step("synth", _synth_both, data, config, progress)
    train_dir = run_dir / "train"
    model = step("train", _train, data / "train", train_dir, config, device, progress)
    predict_dir = run_dir / "predict"
    batch = step("predict", _predict, data / "test", model, predict_dir, config, device, progress)
    t0 = time.perf_counter()
    evaluation = run_dir / "evaluation.json"
    ev = _evaluate(predict_dir, data / "test" / "truth", model, evaluation, progress)
    seconds["evaluate"] = time.perf_counter() - t0
    precision, recall, f1 = ev.prf()
    return DemoResult(
        run_dir=run_dir,
        data_dir=data,
        model=model,
        train_dir=train_dir,
        predict_dir=predict_dir,
        index_html=batch.outputs["html"],
        counts_xlsx=batch.outputs["xlsx"],
        counts_csv=batch.outputs["csv"],
        geojson=[predict_dir / f"{im.key}.geojson" for im in batch.state.images],
        evaluation=evaluation,
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        tp=int(ev.tp),
        fp=int(ev.fp),
        fn=int(ev.fn),
        reused=reused,
        seconds={k: round(v, 1) for k, v in seconds.items()},
    )


def _synth_both(data: Path, config: DemoConfig, progress: Progress) -> tuple[None, bool]:
    """The training and test slides; ``(None, reused)``."""
    a = _synth(
        data / "train",
        n=config.train_slides,
        seed=config.seed,
        size_px=config.size_px,
        mitoses_per_mm2=config.mitoses_per_mm2,
        lookalikes_per_mm2=config.lookalikes_per_mm2,
        config=config,
        progress=progress,
    )
    b = _synth(
        data / "test",
        n=config.test_slides,
        seed=config.seed + 1000,
        size_px=config.test_size_px or config.size_px,
        mitoses_per_mm2=config.test_mitoses_per_mm2 or config.mitoses_per_mm2,
        lookalikes_per_mm2=config.test_lookalikes_per_mm2 or config.lookalikes_per_mm2,
        config=config,
        progress=progress,
    )
    return None, a and b


def _train(
    slides: Path, train_dir: Path, config: DemoConfig, device: str, progress: Progress
) -> tuple[Path, bool]:
    """WS-DAL with the demo's preset (resumed if interrupted); ``(model path, reused)``."""
    model = train_dir / "model.pt"
    if model.is_file():
        return model, True
    preset = get_preset(config.preset)
    if config.preset_changes:
        preset = preset.replace(**config.preset_changes)
    settings = RunSettings(method="wsdal", preset=preset, seed=config.seed)
    train_run(slides, train_dir, settings, device=device, resume=True, progress=progress)
    if not model.is_file():
        raise InputError(f"{train_dir}: training finished without writing model.pt")
    return model, False


def _predict(
    slides: Path,
    model: Path,
    predict_dir: Path,
    config: DemoConfig,
    device: str,
    progress: Progress,
) -> tuple[Any, bool]:
    """``wsdal predict`` on the test slides; ``(BatchResult, reused)``."""
    batch = run_batch(
        open_source(slides),
        model,
        predict_dir,
        settings=PredictSettings(device=device, tile_size_px=config.tile_size_px),
        progress=progress,
    )
    if batch.failed:
        im = batch.failed[0]
        raise InputError(f"demo prediction failed on {im.name}: {im.reason}")
    return batch, all(im.status == "skipped" for im in batch.state.images)


def _evaluate(
    predict_dir: Path, truth: Path, model: Path, evaluation: Path, progress: Progress
) -> Any:
    """``wsdal evaluate`` against the synthetic truth, written to ``evaluation``."""
    ev = evaluate_folders(predict_dir, truth, progress=progress)
    write_json_atomic(
        evaluation,
        {
            **ev.to_dict(),
            "provenance": provenance(
                model=str(model), predictions=str(predict_dir), truth=str(truth)
            ),
        },
    )
    return ev
