"""Fixtures of the training tests: small patch stores filled from synthetic blobs.

The blobs stand in for nuclei: a mitosis is a dark, elongated, ragged chromatin
bar; a non-mitosis a paler round nucleus. They let every stage run on real
arrays in a second or two without slides.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from wsdal_wsi.train.store import PatchStore, StoreWriter


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Train with one CPU thread: these tiny networks are all per-op overhead, and two
    threads on a shared 2-core machine can be ten times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blob_patch(rng: np.random.Generator, *, mitosis: bool, size: int) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 patch with a nucleus at the centre."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = size / 2 + rng.uniform(-1.5, 1.5, 2)
    img = np.empty((size, size, 3))
    img[:] = (232, 190, 214)
    img += rng.normal(0, 6, img.shape)
    ang = rng.uniform(0, np.pi)
    u = (xx - c[0]) * np.cos(ang) + (yy - c[1]) * np.sin(ang)
    v = -(xx - c[0]) * np.sin(ang) + (yy - c[1]) * np.cos(ang)
    if mitosis:
        mask = (np.abs(u) < size * 0.06 + rng.uniform(0, 1)) & (np.abs(v) < size * 0.2)
        mask &= rng.random(mask.shape) < 0.85
        colour = np.array((55, 25, 85))
    else:
        r = size * rng.uniform(0.12, 0.17)
        mask = (u / r) ** 2 + (v / (r * rng.uniform(0.8, 1.0))) ** 2 < 1
        colour = np.array((150, 105, 175))
    img[mask] = colour + rng.normal(0, 8, (int(mask.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_blob_store(
    root: Path,
    *,
    n_pos: int = 24,
    n_neg: int = 48,
    n_images: int = 4,
    n_val_images: int = 1,
    flip_pos: int = 0,
    flip_neg: int = 0,
    context_px: int = 40,
    patch_px: int = 32,
    seed: int = 0,
) -> tuple[PatchStore, dict[str, np.ndarray]]:
    """A store of blob patches spread over ``n_images`` images.

    ``flip_pos`` clicks (label 1) show a non-mitosis and ``flip_neg`` candidate
    negatives (label 0) show a mitosis: injected label noise.

    Returns
    -------
    store, truth
        ``truth["is_mitosis"]`` per store row (what the pixels show).
    """
    rng = np.random.default_rng(seed)
    w = StoreWriter(root, context_px=context_px, patch_px=patch_px, target_mpp=0.25)
    truth: list[bool] = []
    for i in range(n_images):
        key = f"img{i}"
        split = "val" if i >= n_images - n_val_images else "train"
        recs, pats = [], []
        kinds = [("click", 1, True)] * n_pos + [("candidate", 0, False)] * n_neg
        for j, (src, lab, mit) in enumerate(kinds):
            if split == "train" and src == "click" and j < flip_pos:
                mit = False
            if split == "train" and src == "candidate" and j - n_pos < flip_neg:
                mit = True
            pats.append(blob_patch(rng, mitosis=mit, size=context_px))
            truth.append(mit)
            recs.append(
                {
                    "image_key": key,
                    "slide": f"{key}.tiff",
                    "x_level0": 100.0 * j,
                    "y_level0": 50.0 * i,
                    "label": lab,
                    "source": src,
                    "split": split,
                    "click_id": w.new_click_id() if src == "click" else -1,
                }
            )
        w.append(np.stack(pats), recs)
        w.add_image(
            {
                "key": key,
                "slide": f"{key}.tiff",
                "mpp": 0.25,
                "split": split,
                "has_regions": False,
                "n_positive": n_pos,
                "n_negative_clicks": 0,
                "n_candidates": n_neg,
                "area_mm2": 0.1,
            }
        )
    store = w.finish(settings={"kind": "blobs"}, provenance={"test": True})
    return store, {"is_mitosis": np.array(truth)}


@pytest.fixture
def blob_store(tmp_path: Path) -> Callable[..., tuple[PatchStore, dict[str, np.ndarray]]]:
    """Factory: ``blob_store(**kwargs)`` → ``(store, truth)`` in a fresh folder."""
    counter = iter(range(1000))

    def make(**kwargs):
        return make_blob_store(tmp_path / f"store{next(counter)}", **kwargs)

    return make


def blob_preset():
    """The ``tiny`` preset shrunk to the blob stores (32 px patches, width 4, few epochs)."""
    from wsdal_wsi.train.presets import get_preset

    return get_preset("tiny").replace(
        width=4,
        **{
            "extract.patch_px": 32,
            "extract.context_px": 40,
            "ns.epochs": 2,
            "ns.batch_size": 16,
            "dmu.epochs": 4,
            "dmu.batch_size": 32,
            "csdgl.epochs": 4,
            "csdgl.batch_size": 16,
            "csdgl.input_px": 32,
            "csdgl.proj_dim": 16,
            "baseline.epochs": 2,
            "baseline.batch_size": 16,
            "baseline.input_px": 32,
            "baseline.proj_dim": 16,
        },
    )
