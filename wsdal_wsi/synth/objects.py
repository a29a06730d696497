"""The truth model of a synthetic slide: object kinds, phases, variants, and random streams.

Every special object of a slide (a mitosis or a look-alike) is one row of
:class:`Objects`; its kind code indexes :data:`KIND_NAMES` (the truth class)
and its variant code indexes :data:`MITOSIS_PHASES` or :data:`VARIANT_NAMES`.
All randomness of a slide comes from :func:`slide_rng` streams keyed by the
slide's seed, a purpose tag and optional indices (block, object), so any part
of a slide can be drawn again alone, in any process, with the same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsdal_wsi.synth.params import LOOKALIKE_CLASSES, MITOSIS_CLASS

__all__ = [
    "KIND_APOPTOTIC",
    "KIND_LYMPHOCYTE",
    "KIND_MITOSIS",
    "KIND_NAMES",
    "KIND_PYKNOTIC",
    "MITOSIS_PHASES",
    "TAG",
    "VARIANT_NAMES",
    "Objects",
    "slide_rng",
]

#: Truth class of each object kind code.
KIND_NAMES = (MITOSIS_CLASS, *LOOKALIKE_CLASSES)
KIND_MITOSIS, KIND_APOPTOTIC, KIND_PYKNOTIC, KIND_LYMPHOCYTE = 0, 1, 2, 3

#: Mitotic phase names by variant code; codes >= 5 are the ambiguous ("hard") ones.
MITOSIS_PHASES = (
    "prophase",
    "metaphase (edge-on)",
    "metaphase (face-on)",
    "anaphase",
    "telophase",
    "atypical (multipolar)",
    "atypical (lagging chromosomes)",
    "early prophase (ambiguous)",
)
_PHASE_P_NORMAL = np.array([0.20, 0.33, 0.12, 0.15, 0.20])
_PHASE_P_HARD = np.array([0.3, 0.3, 0.4])

#: Variant names of the look-alikes, by kind; the last ones are the borderline ("hard") ones.
VARIANT_NAMES = {
    KIND_APOPTOTIC: ("single fragment", "several fragments", "paired fragments (borderline)"),
    KIND_PYKNOTIC: ("round", "elongated (borderline)", "irregular (borderline)"),
    KIND_LYMPHOCYTE: ("small", "activated (borderline)"),
}

#: Stream tags of the slide's random generators (keep stable: they define the slides).
TAG = {
    "fields": 1,
    "look": 2,
    "textures": 3,
    "objects": 4,
    "nuclei": 5,
    "figure": 6,
    "annotate": 7,
    "sprites": 8,
}


def slide_rng(seed: int, tag: str, *extra: int) -> np.random.Generator:
    """The slide's random stream ``tag`` (optionally per block / object index)."""
    return np.random.default_rng([int(seed), TAG[tag], *[int(e) + (1 << 40) for e in extra]])


@dataclass
class Objects:
    """The special objects of a slide (the ground truth), as parallel arrays.

    Attributes
    ----------
    xy : numpy.ndarray
        ``(N, 2)`` float64 level-0 ``(x, y)`` centre (for pairs: midpoint).
    kind : numpy.ndarray
        ``(N,)`` int8 kind code (index into :data:`KIND_NAMES`).
    variant : numpy.ndarray
        ``(N,)`` int8 phase (mitoses) or variant code (look-alikes).
    hard : numpy.ndarray
        ``(N,)`` bool: an ambiguous mitosis or a borderline look-alike.
    angle : numpy.ndarray
        ``(N,)`` float32 orientation (rad).
    size : numpy.ndarray
        ``(N,)`` float32 size factor (about 0.8-1.2).
    dark : numpy.ndarray
        ``(N,)`` float32 darkness factor (same distribution for every kind).
    cluster : numpy.ndarray
        ``(N,)`` int32 lymphocyte cluster id (-1 for other kinds).
    """

    xy: np.ndarray
    kind: np.ndarray
    variant: np.ndarray
    hard: np.ndarray
    angle: np.ndarray
    size: np.ndarray
    dark: np.ndarray
    cluster: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def concat(parts: list[Objects]) -> Objects:
        """Concatenate object arrays in order."""
        return Objects(
            **{
                f: np.concatenate([getattr(p, f) for p in parts])
                for f in Objects.__dataclass_fields__
            }
        )
