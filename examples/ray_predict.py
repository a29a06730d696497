"""Predict the slides of a folder or QuPath project on a Ray cluster: one slide per task.

When a lab outgrows one GPU server, Ray (https://docs.ray.io) spreads the slides over
many machines and GPUs; wsdal-wsi supplies the unit of work,
:func:`wsdal_wsi.predict.predict_one`, which predicts one slide and writes its own
files (``<key>.geojson``, ``<key>.summary.json``, ``<key>.report.png``, ...). The
driver then writes the batch's ``counts.csv``, ``counts.xlsx`` and ``index.html``
once, exactly as ``wsdal predict`` does. A slide that fails is recorded with its
reason in its summary; the exit code is 1 when any failed. Slides already finished
(a done summary in OUT) are skipped unless ``--force``.

Usage::

    pip install "ray[default]"          # Ray is not a dependency of wsdal-wsi
    ray start --head                    # or join an existing cluster
    python examples/ray_predict.py /data/slides --model runs/r1/model.pt --out results/ \\
        --gpus-per-task 1

Every worker must see the slides, the model and OUT at the same paths (a shared
file system). The example is tested in CI with a local stand-in for Ray's API
(``tests/examples/test_ray_predict.py``); on a real cluster only Ray's own
scheduling is added.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ray


@ray.remote
def predict_task(
    source_path: str, key: str, model_path: str, out_dir: str, device: str
) -> tuple[str, str, str | None]:
    """One slide on one worker: returns (key, status, reason)."""
    from wsdal_wsi.model.device import resolve_device
    from wsdal_wsi.model.file import load_model
    from wsdal_wsi.predict import PredictSettings, describe_model, predict_one
    from wsdal_wsi.qupath import open_source

    source = open_source(source_path)
    record = next(r for r in source.images() if r.key == key)
    model = load_model(model_path, device=resolve_device(device))
    summary = predict_one(
        source,
        record,
        model,
        out_dir,
        model_info=describe_model(model_path, model),
        settings=PredictSettings(device=device),
    )
    return key, summary.status, summary.reason


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="a slide folder or a QuPath project")
    p.add_argument("--model", required=True, help="model file (wsdal train's RUN/model.pt)")
    p.add_argument("--out", required=True, help="output folder, shared by every worker")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local/auto)")
    p.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs per slide task")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu (on the workers)")
    p.add_argument("--force", action="store_true", help="predict finished slides again")
    args = p.parse_args(argv)

    from wsdal_wsi.errors import WsdalError
    from wsdal_wsi.qupath import open_source
    from wsdal_wsi.report import read_summary, slide_files, write_batch_outputs

    try:
        source = open_source(args.source)
        records = source.images()
    except WsdalError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for record in records:
        done = slide_files(out, record.key).summary
        if not args.force and done.is_file() and read_summary(done).status == "ok":
            continue
        todo.append(record.key)

    ray.init(address=args.address)
    task = predict_task.options(num_gpus=args.gpus_per_task)
    results = ray.get(
        [
            task.remote(str(Path(args.source).resolve()), key, args.model, str(out), args.device)
            for key in todo
        ]
    )
    failed = [(key, reason) for key, status, reason in results if status != "ok"]
    summaries = [read_summary(slide_files(out, r.key).summary) for r in records]
    outputs = write_batch_outputs(out, summaries)
    print(f"{len(todo)} slides predicted, {len(records) - len(todo)} already done")
    for key, reason in failed:
        print(f"FAILED {key}: {reason}", file=sys.stderr)
    print(f"index: {outputs['html']}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
