"""Helpers for the synthetic-slide tests: haematoxylin optical density and slide pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Ruifrok-Johnston H&E(-DAB) stain matrix (rows: H, E, residual), unit rows: what a colour
# deconvolution on a real slide would use, independent of the generator's own stain vectors.
_RUIFROK = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_RUIFROK /= np.linalg.norm(_RUIFROK, axis=1, keepdims=True)
_UNMIX = np.linalg.inv(_RUIFROK)


def haematoxylin_od(rgb: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB -> ``(h, w)`` haematoxylin optical density (Ruifrok)."""
    od = -np.log10(np.clip(rgb.astype(np.float64), 1, 255) / 255.0)
    return (od.reshape(-1, 3) @ _UNMIX)[:, 0].reshape(rgb.shape[:2])


def peak_od(h_od: np.ndarray, xy: np.ndarray, *, radius_px: int) -> np.ndarray:
    """95th percentile of ``h_od`` in a disk around each point ``(N, 2)`` (NaN near the edge)."""
    yy, xx = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    disk = np.hypot(yy, xx) <= radius_px
    out = np.full(len(xy), np.nan)
    for i, (x, y) in enumerate(np.round(xy).astype(int)):
        if (
            radius_px <= x < h_od.shape[1] - radius_px
            and radius_px <= y < h_od.shape[0] - radius_px
        ):
            patch = h_od[y - radius_px : y + radius_px + 1, x - radius_px : x + radius_px + 1]
            out[i] = np.percentile(patch[disk], 95)
    return out


def truth_points(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Truth GeoJSON -> ``(xy (N, 2), class names, labels)`` in file order."""
    feats = json.loads(Path(path).read_text())["features"]
    xy = np.array([f["geometry"]["coordinates"] for f in feats], dtype=float).reshape(-1, 2)
    classes = [f["properties"]["classification"]["name"] for f in feats]
    labels = [f["properties"].get("name", "") for f in feats]
    return xy, classes, labels


@pytest.fixture(scope="session")
def synth_level0(synth_slide) -> np.ndarray:
    """Level 0 of the ``synth_slide`` fixture as ``(h, w, 3)`` uint8, read through OpenSlide."""
    import openslide

    with openslide.OpenSlide(str(synth_slide.slide_path)) as osr:
        return np.asarray(osr.read_region((0, 0), 0, osr.dimensions).convert("RGB"))


@pytest.fixture(scope="session")
def hod():
    """The function ``(h, w, 3)`` uint8 RGB -> ``(h, w)`` haematoxylin OD (Ruifrok)."""
    return haematoxylin_od


@pytest.fixture(scope="session")
def peak():
    """The function ``(h_od, xy, radius_px=...)`` -> 95th percentile of H-OD around each point."""
    return peak_od


@pytest.fixture(scope="session")
def read_truth():
    """The function ``path`` -> ``(xy, classes, labels)`` of a truth GeoJSON."""
    return truth_points
