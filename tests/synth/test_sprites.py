from __future__ import annotations

import numpy as np

from wsdal_wsi.synth.sprites import Canvas, SpriteLib, StampSet, blur_sprites


def _lib() -> SpriteLib:
    rng = np.random.default_rng(0)
    return SpriteLib(rng.uniform(0, 1, (3, 3, 9, 9)).astype(np.float32))


def _stamps(n: int, rng: np.random.Generator) -> StampSet:
    return StampSet(
        cx=rng.integers(-10, 70, n),
        cy=rng.integers(-10, 50, n),
        sprite=rng.integers(0, 3, n),
        transform=rng.integers(0, 8, n).astype(np.int8),
        gain=rng.uniform(0.5, 2.0, n).astype(np.float32),
    )


def test_stamps_clip_to_the_window_like_a_crop_of_a_larger_canvas():
    lib, stamps = _lib(), _stamps(40, np.random.default_rng(1))
    big = Canvas(-20, -20, 120, 100)
    big.add(lib, stamps)
    small = Canvas(5, 7, 40, 30)
    small.add(lib, stamps)
    for a, b in zip(small.maps(), big.maps(), strict=True):
        assert np.allclose(a, b[27:57, 25:65])


def test_transform_and_gain():
    sprite = np.zeros((3, 5, 5), np.float32)
    sprite[:, 0, 1] = 1.0  # top row, left of centre
    lib = SpriteLib(sprite[None])
    c = Canvas(0, 0, 5, 5)
    one = np.ones(1)
    c.add(
        lib,
        StampSet(
            cx=one.astype(int) * 2,
            cy=one.astype(int) * 2,
            sprite=np.zeros(1, int),
            transform=np.array([3], np.int8),
            gain=np.float32([2.0]),
        ),
    )
    h, e, m = c.maps()
    assert h[4, 3] == 2.0 and e[4, 3] == 1.0 and m[4, 3] == 1.0  # flipped in y and x
    assert h.sum() == 2.0


def test_blur_keeps_the_total_stain():
    lib = _lib()
    blurred = blur_sprites(np.pad(lib.data, ((0, 0), (0, 0), (4, 4), (4, 4))), 1.0)
    assert blurred.dtype == np.float32
    assert np.allclose(blurred.sum(axis=(2, 3)), lib.data.sum(axis=(2, 3)), rtol=1e-3)
    assert blur_sprites(lib.data, 0.1) is lib.data
