"""Pixels of known stains: nuclei (haematoxylin) and stroma (eosin), Beer-Lambert."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from wsdal_wsi.synth.stain import E_VEC, H_VEC, SlideLook


def reference_look(**changes) -> SlideLook:
    look = SlideLook(
        h_vec=tuple(H_VEC),
        e_vec=tuple(E_VEC),
        h_strength=1.0,
        e_strength=1.0,
        od_background=(0.03, 0.03, 0.03),
        blur_sigma_um=0.0,
        jpeg_quality=90,
        noise_level=0.0,
    )
    return replace(look, **changes)


def tissue_concentrations(seed: int, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(c_h, c_e)`` maps: round nuclei of haematoxylin in eosin stroma, some glass."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    c_h = np.zeros((size, size), np.float32)
    for _ in range(size * size // 900):
        cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(4, 12)
        amount = rng.uniform(0.4, 1.2)
        c_h = np.maximum(c_h, amount * ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r))
    c_e = rng.uniform(0.2, 0.7, (size, size)).astype(np.float32)
    c_e *= 1.0 - 0.9 * (c_h > 0)  # nuclei take little eosin
    glass = xx < size // 8
    c_h[glass] = 0.0
    c_e[glass] = 0.0
    return c_h.astype(np.float32), c_e


@pytest.fixture(scope="module")
def concentrations() -> tuple[np.ndarray, np.ndarray]:
    return tissue_concentrations(seed=5)


#: A look of another lab: haematoxylin stronger and bluer, eosin paler (as ``--stain-shift``).
SHIFTED = {
    "h_vec": tuple(np.array([0.80, 0.56, 0.20]) / np.linalg.norm([0.80, 0.56, 0.20])),
    "e_vec": tuple(np.array([0.05, 0.80, 0.58]) / np.linalg.norm([0.05, 0.80, 0.58])),
    "h_strength": 1.6,
    "e_strength": 0.5,
}
