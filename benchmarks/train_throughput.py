"""Training throughput: does data loading starve the device?

For each measured stage, two rates of the same model in the same run:

* **stage**: a real training step of the stage, fed from an on-disk patch store
  (memory-mapped uint8 patches -> :class:`wsdal_wsi.train.data.PatchBatches`, cached on
  the device or streamed through pinned memory), with the stage's batched on-device
  augmentation, forward, backward and optimizer step (``train_one_epoch``);
* **raw**: forward + backward + optimizer step of the same architecture on random,
  already normalised tensors of the same shape, already on the device.

ratio = stage / raw (1.0: loading and augmentation cost nothing; target >= 0.8).

Stages: ``ns`` (CamNet, weak view), ``dmu`` (DualViewNet, weak + strong views),
``csdgl`` (ProjNet, two strong views + SBCL). Patches/s counts store samples (a DMU
or CSDGL sample is two views).

Usage::

    python benchmarks/train_throughput.py --device cpu --width 16 --batch-size 64
    python benchmarks/train_throughput.py --device cuda --batch-size 512 --stream
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wsdal_wsi.model.device import autocast, prepare_model, resolve_device
from wsdal_wsi.model.nets import CamNet, DualViewNet, ProjNet
from wsdal_wsi.train.augment import IMAGENET_MEAN, IMAGENET_STD, STRONG, WEAK, augment_batch
from wsdal_wsi.train.csdgl import sbcl_loss
from wsdal_wsi.train.data import PatchBatches
from wsdal_wsi.train.engine import (
    make_optimizer,
    to_input,
    train_one_epoch,
)
from wsdal_wsi.train.store import StoreWriter

CE = torch.nn.functional.cross_entropy


def make_store(root: Path, *, n: int, context_px: int, patch_px: int, seed: int = 0):
    """A store of ``n`` random patches (content does not matter for speed)."""
    rng = np.random.default_rng(seed)
    w = StoreWriter(root, context_px=context_px, patch_px=patch_px, target_mpp=0.25)
    chunk = 2048
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        pats = rng.integers(0, 256, (m, 3, context_px, context_px), dtype=np.uint8)
        recs = [
            {
                "image_key": "bench",
                "slide": "bench.tiff",
                "x_level0": float(i),
                "y_level0": 0.0,
                "label": int(i % 2),
                "source": "candidate",
                "split": "train",
            }
            for i in range(start, start + m)
        ]
        w.append(pats, recs)
    w.add_image({"key": "bench", "slide": "bench.tiff", "mpp": 0.25, "split": "train"})
    return w.finish(settings={"benchmark": True}, provenance={})


def stage_setup(stage: str, width: int, patch_px: int, gen: torch.Generator):
    """(model, loss_fn(model, batch) for the stage, raw_step(model, x, y))."""
    norm = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    tau_sub = None
    if stage == "ns":
        model = CamNet(width=width)

        def loss(m, b):
            x = to_input(
                augment_batch(b.patches, patch_px=patch_px, params=WEAK, generator=gen), **norm
            )
            return CE(m(x).float(), b.labels), {}

        def raw(m, x, y):
            return CE(m(x).float(), y)

    elif stage == "dmu":
        model = DualViewNet(width=width)

        def loss(m, b):
            w = to_input(
                augment_batch(b.patches, patch_px=patch_px, params=WEAK, generator=gen), **norm
            )
            s = to_input(
                augment_batch(b.patches, patch_px=patch_px, params=STRONG, generator=gen), **norm
            )
            lw, ls, lf, _ = m.forward_views(w, s)
            y = b.labels
            return 0.25 * CE(lw.float(), y) + 0.25 * CE(ls.float(), y) + 0.5 * CE(lf.float(), y), {}

        def raw(m, x, y):
            lw, ls, lf, _ = m.forward_views(x, x.flip(-1))
            return 0.25 * CE(lw.float(), y) + 0.25 * CE(ls.float(), y) + 0.5 * CE(lf.float(), y)

    elif stage == "csdgl":
        model = ProjNet(width=width)

        def contrast(m, x, y):
            logits, z = m.forward_train(x)
            y2 = y.repeat(2)
            sub = y2 * 4 + torch.arange(len(y2), device=y2.device) % 4
            t = tau_sub if tau_sub is not None else torch.full((8,), 0.1, device=x.device)
            return CE(logits.float(), y2) + 0.5 * sbcl_loss(
                z, sub, y2, tau=0.1, tau_sub=t, beta=0.5
            )

        def loss(m, b):
            v1 = augment_batch(b.patches, patch_px=patch_px, params=STRONG, generator=gen)
            v2 = augment_batch(b.patches, patch_px=patch_px, params=STRONG, generator=gen)
            return contrast(m, to_input(torch.cat([v1, v2]), **norm), b.labels), {}

        def raw(m, x, y):
            return contrast(m, torch.cat([x, x.flip(-1)]), y)

    else:
        raise SystemExit(f"unknown stage {stage}")
    return model, loss, raw


def bench_stage(stage: str, store, *, device, width, batch_size, steps, stream) -> dict:
    gen = torch.Generator(device=device).manual_seed(0)
    torch.manual_seed(0)
    model, loss_fn, raw_fn = stage_setup(stage, width, store.patch_px, gen)
    prepare_model(model, device)
    opt = make_optimizer(model, lr=1e-4, weight_decay=1e-4)
    n = min(len(store), steps * batch_size)
    rows = np.arange(n)
    batches = PatchBatches(
        store.patches,
        rows,
        store.label[rows].astype(np.int64),
        batch_size=batch_size,
        device=device,
        mode="shuffle",
        drop_last=True,
        cache_bytes=0 if stream else None,
    )
    # warm-up (cudnn autotune, allocator, lazy init), then one timed epoch
    warm = PatchBatches(
        store.patches,
        rows[: 3 * batch_size],
        store.label[: 3 * batch_size].astype(np.int64),
        batch_size=batch_size,
        device=device,
        mode="shuffle",
        drop_last=True,
    )
    train_one_epoch(model, opt, warm, device, compute_loss=loss_fn, epoch=0, check_every=10**9)
    sync(device)
    t0 = time.perf_counter()
    out = train_one_epoch(
        model, opt, batches, device, compute_loss=loss_fn, epoch=1, check_every=10**9
    )
    sync(device)
    stage_rate = out["samples"] / (time.perf_counter() - t0)

    x = torch.randn(batch_size, 3, store.patch_px, store.patch_px, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch_size,), device=device)
    n_steps = len(batches)
    for i in range(3 + n_steps):
        if i == 3:
            sync(device)
            t0 = time.perf_counter()
        with autocast(device):
            loss = raw_fn(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    raw_rate = n_steps * batch_size / (time.perf_counter() - t0)
    return {
        "stage": stage,
        "stage_rate": stage_rate,
        "raw_rate": raw_rate,
        "ratio": stage_rate / raw_rate,
        "cached": batches.cached,
        "steps": n_steps,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 width (64 = standard)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per stage")
    ap.add_argument("--stages", default="ns,dmu,csdgl")
    ap.add_argument("--patch-px", type=int, default=80)
    ap.add_argument("--context-px", type=int, default=112)
    ap.add_argument(
        "--stream",
        action="store_true",
        help="stream batches from the memory-mapped store (no device cache)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--store", type=Path, default=None, help="store folder (default: a temp dir)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    n = (args.steps + 3) * args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        root = args.store or Path(tmp) / "store"
        t0 = time.perf_counter()
        store = make_store(root, n=n, context_px=args.context_px, patch_px=args.patch_px)
        made = time.perf_counter() - t0
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(
            f"device {device} ({name}), torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}, "
            f"width {args.width}, batch {args.batch_size}, patch {args.patch_px} px from "
            f"{args.context_px} px context, store {len(store)} patches "
            f"({store.patches.nbytes / 1e6:.0f} MB, written in {made:.1f} s), "
            f"{'streamed from the memmap' if args.stream else 'device cache when it fits'}"
        )
        print(f"{'stage':<7} {'stage patches/s':>16} {'raw fwd+bwd /s':>15} {'ratio':>6}  loader")
        for stage in args.stages.split(","):
            r = bench_stage(
                stage,
                store,
                device=device,
                width=args.width,
                batch_size=args.batch_size,
                steps=args.steps,
                stream=args.stream,
            )
            how = "device cache" if r["cached"] else "streamed (pinned, 3 read threads)"
            print(
                f"{stage:<7} {r['stage_rate']:>16.1f} {r['raw_rate']:>15.1f} "
                f"{r['ratio']:>6.2f}  {how}"
            )


if __name__ == "__main__":
    main()
