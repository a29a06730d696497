from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from wsdal_wsi.synth.figures import render_object
from wsdal_wsi.synth.objects import MITOSIS_PHASES, VARIANT_NAMES

MPP = 0.25
KINDS = [(0, v) for v in range(len(MITOSIS_PHASES))] + [
    (k, v) for k, names in VARIANT_NAMES.items() for v in range(len(names))
]


def _draw(kind: int, variant: int, seed: int, **kw) -> np.ndarray:
    args = {"angle": 0.3, "size": 1.0, "dark": 1.0, **kw}
    return render_object(kind, variant, rng=np.random.default_rng(seed), mpp=MPP, **args)


def _chromatin(sprite: np.ndarray, level: float = 0.45) -> np.ndarray:
    return sprite[0] > level


@pytest.mark.parametrize(("kind", "variant"), KINDS)
def test_every_object_draws_a_dark_centred_figure(kind, variant):
    sprite = _draw(kind, variant, seed=7)
    assert sprite.ndim == 3 and sprite.shape[0] == 3 and sprite.shape[1] == sprite.shape[2]
    assert sprite.shape[1] % 2 == 1 and np.isfinite(sprite).all()
    assert 0.0 <= sprite[2].min() and sprite[2].max() <= 1.0
    assert 0.7 < sprite[0].max() < 2.2
    # The figure lies within 7 µm of the centre (the truth point).
    ys, xs = np.nonzero(_chromatin(sprite))
    c = sprite.shape[1] // 2
    assert np.hypot(ys - c, xs - c).min() * MPP < 7.0


@pytest.mark.parametrize(("variant", "lo_um", "hi_um"), [(3, 3.0, 10.0), (4, 6.5, 13.0)])
def test_anaphase_and_telophase_are_two_separated_masses(variant, lo_um, hi_um):
    for seed in range(5):
        labels, n = ndimage.label(_chromatin(_draw(0, variant, seed)))
        sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
        big = np.argsort(sizes)[::-1][:2] + 1
        assert n >= 2 and sizes[big[1] - 1] > 20
        (y1, x1), (y2, x2) = ndimage.center_of_mass(np.ones_like(labels), labels, big)
        assert lo_um < np.hypot(y1 - y2, x1 - x2) * MPP < hi_um


def test_metaphase_plate_has_the_size_of_a_plate():
    for seed in range(5):
        mask = _chromatin(_draw(0, 1, seed, angle=0.0))
        ys, xs = np.nonzero(mask)
        # angle 0: the plate's long axis is along y
        assert 7.0 < (ys.max() - ys.min()) * MPP < 14.5
        assert 1.5 < (xs.max() - xs.min()) * MPP < 6.0


def _roughness(mask: np.ndarray) -> float:
    edge = mask & ~ndimage.binary_erosion(mask)
    return edge.sum() / np.sqrt(mask.sum())


def test_mitoses_are_ragged_and_pyknotic_nuclei_smooth():
    plates = [_roughness(_chromatin(_draw(0, 1, s))) for s in range(6)]
    pyknotic = [_roughness(_chromatin(_draw(2, 1, s))) for s in range(6)]  # elongated look-alike
    assert np.mean(plates) > 1.2 * np.mean(pyknotic)


def test_lookalikes_are_as_dark_as_mitoses():
    mit = [_draw(0, v, s)[0].max() for v in range(8) for s in range(3)]
    look = [_draw(k, v, s)[0].max() for k, v in KINDS if k > 0 for s in range(3)]
    assert 0.8 < np.mean(look) / np.mean(mit) < 1.25


def test_apoptotic_bodies_are_eosinophilic_and_mitoses_are_not():
    apo = np.mean([_draw(1, v, s)[1].max() for v in range(3) for s in range(3)])
    mit = np.mean([_draw(0, v, s)[1].max() for v in range(8) for s in range(3)])
    assert apo > 0.5 and apo > 1.5 * mit


def test_drawing_is_deterministic_in_the_stream():
    assert np.array_equal(_draw(0, 3, 11), _draw(0, 3, 11))
    assert not np.array_equal(_draw(0, 3, 11), _draw(0, 3, 12))
    with pytest.raises(ValueError, match="kind"):
        _draw(9, 0, 1)
