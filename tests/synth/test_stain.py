from __future__ import annotations

import numpy as np

from wsdal_wsi.synth.stain import E_VEC, H_VEC, od_to_rgb, sample_look


def _look(variation: float, seed: int = 0):
    return sample_look(
        np.random.default_rng(seed), stain_variation=variation, blur_um=0.15, jpeg_quality=90
    )


def test_beer_lambert_round_trip_recovers_the_stains():
    """Colour deconvolution with the slide's own vectors gives back the concentrations."""
    look = _look(1.0, seed=3)
    rng = np.random.default_rng(1)
    c_h = rng.uniform(0.0, 1.2, (64, 64)).astype(np.float32)
    c_e = rng.uniform(0.0, 0.8, (64, 64)).astype(np.float32)
    rgb = od_to_rgb(c_h, c_e, look)
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    od = -np.log10(np.clip(rgb.astype(float), 1, 255) / 255.0) - np.asarray(look.od_background)
    basis = np.stack(
        [np.asarray(look.h_vec) * look.h_strength, np.asarray(look.e_vec) * look.e_strength]
    )
    conc, *_ = np.linalg.lstsq(basis.T, od.reshape(-1, 3).T, rcond=None)
    assert np.abs(conc[0] - c_h.ravel()).mean() < 0.02
    assert np.abs(conc[1] - c_e.ravel()).mean() < 0.02


def test_zero_stain_is_the_background_and_haematoxylin_is_blue_purple():
    look = _look(0.0)
    zero = np.zeros((4, 4), np.float32)
    bg = od_to_rgb(zero, zero, look)[0, 0]
    assert (bg > 220).all()
    nucleus = od_to_rgb(zero + 1.0, zero, look)[0, 0].astype(int)
    stroma = od_to_rgb(zero, zero + 0.6, look)[0, 0].astype(int)
    assert nucleus[2] > nucleus[0] > nucleus[1]  # blue-purple: B > R > G
    assert stroma[0] > stroma[2] > stroma[1]  # pink: R > B > G


def test_no_variation_gives_the_reference_look_and_variation_differs_by_seed():
    ref = _look(0.0, seed=1)
    assert np.allclose(ref.h_vec, H_VEC) and np.allclose(ref.e_vec, E_VEC)
    assert ref.h_strength == 1.0 and ref.e_strength == 1.0
    a, b = _look(1.0, seed=1), _look(1.0, seed=2)
    assert a != b
    assert a == _look(1.0, seed=1)
    assert 50 <= a.jpeg_quality <= 90 and a.blur_sigma_um > 0


def test_stain_shift_moves_every_slide_outside_the_variation_and_keeps_the_stream():
    """A shifted look keeps the seed's own variation and moves beyond its spread."""
    plain = [_look(1.0, seed=s) for s in range(40)]
    shifted = [
        sample_look(
            np.random.default_rng(s),
            stain_variation=1.0,
            blur_um=0.15,
            jpeg_quality=90,
            stain_shift=1.0,
        )
        for s in range(40)
    ]
    h_plain = [lk.h_strength for lk in plain]
    e_plain = [lk.e_strength for lk in plain]
    assert min(lk.h_strength for lk in shifted) > max(h_plain)
    assert max(lk.e_strength for lk in shifted) < min(e_plain)
    for a, b in zip(plain, shifted, strict=True):
        # only the colours move: blur, JPEG quality and noise come from the same stream
        assert (a.blur_sigma_um, a.jpeg_quality, a.noise_level) == (
            b.blur_sigma_um,
            b.jpeg_quality,
            b.noise_level,
        )
        assert np.isclose(np.linalg.norm(b.h_vec), 1.0) and np.isclose(np.linalg.norm(b.e_vec), 1.0)
        # haematoxylin turned bluer: more red absorbed relative to green
        assert b.h_vec[0] / b.h_vec[1] > a.h_vec[0] / a.h_vec[1]
