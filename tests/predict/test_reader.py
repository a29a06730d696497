"""Reading tiles ahead: order, bounded look-ahead, errors, pixels as the slide gives them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from wsdal_wsi.errors import SlideError
from wsdal_wsi.predict.reader import TileStream
from wsdal_wsi.slide import open_slide, tile_grid


@dataclass(frozen=True)
class _Tile:
    location_level0: tuple[float, float]


class _FakeSlide:
    """Counts concurrent reads; the tile at x = ``fail_at`` raises."""

    def __init__(self, *, fail_at: float | None = None, delay_s: float = 0.002) -> None:
        self.fail_at = fail_at
        self.delay_s = delay_s
        self.active = 0
        self.max_active = 0
        self.started: list[float] = []
        self._lock = threading.Lock()

    def read_region(self, location_level0, size_px, *, target_mpp):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.started.append(location_level0[0])
        try:
            time.sleep(self.delay_s)
            if location_level0[0] == self.fail_at:
                raise SlideError(f"fake.tiff: damaged tile at {location_level0}")
            w, h = size_px
            return np.full((h, w, 3), int(location_level0[0]) % 256, np.uint8)
        finally:
            with self._lock:
                self.active -= 1


def test_tiles_come_in_order_with_their_pixels():
    slide = _FakeSlide()
    tiles = [_Tile((float(i), 0.0)) for i in range(20)]
    stream = TileStream(slide, tiles, read_px=8, target_mpp=0.25, threads=3, depth=4)
    seen = [(item.index, int(item.pixels[0, 0, 0])) for item in stream]
    assert seen == [(i, i) for i in range(20)]
    assert slide.max_active <= 3
    assert stream.read_s > 0


def test_look_ahead_is_bounded():
    """A consumer that stops reading stops the readers after ``depth`` tiles."""
    slide = _FakeSlide()
    tiles = [_Tile((float(i), 0.0)) for i in range(50)]
    stream = TileStream(slide, tiles, read_px=8, target_mpp=0.25, threads=2, depth=3)
    it = iter(stream)
    next(it)
    time.sleep(0.1)
    assert len(slide.started) <= 1 + 3
    it.close()
    assert len(slide.started) <= 1 + 3


def test_a_read_error_reaches_the_consumer_and_stops_the_readers():
    slide = _FakeSlide(fail_at=5.0)
    tiles = [_Tile((float(i), 0.0)) for i in range(40)]
    stream = TileStream(slide, tiles, read_px=8, target_mpp=0.25, threads=2, depth=4)
    got = []
    with pytest.raises(SlideError, match="damaged tile"):
        for item in stream:
            got.append(item.index)
    assert got == [0, 1, 2, 3, 4]
    assert len(slide.started) < 40 and slide.active == 0


def test_pixels_equal_a_direct_read(mini_data):
    with open_slide(mini_data.slides[0].slide_path) as slide:
        tiles = tile_grid(slide, target_mpp=0.25, tile_size_px=384, margin_px=20)
        stream = TileStream(slide, tiles, read_px=424, target_mpp=0.25, threads=2, depth=2)
        seen = []
        for item in stream:
            ref = slide.read_region(item.tile.location_level0, (424, 424), target_mpp=0.25)
            np.testing.assert_array_equal(item.pixels.numpy(), ref)
            seen.append(item.index)
    assert len(tiles) >= 4  # the slide spans several tiles, so the loop above compared pixels
    assert seen == list(range(len(tiles)))  # every tile came, once, in order


def test_the_buffer_pool_recycles_without_deadlock():
    """The pinned-buffer pool (here in ordinary memory): buffers come back and are reused."""
    slide = _FakeSlide(delay_s=0.0)
    tiles = [_Tile((float(i), 0.0)) for i in range(30)]
    stream = TileStream(slide, tiles, read_px=8, target_mpp=0.25, threads=3, depth=4,
                        pinned=True, held=3, pin_memory=False)  # fmt: skip
    held, seen, buffers = [], [], set()
    for item in stream:
        seen.append(int(item.pixels[0, 0, 0]))
        buffers.add(item.pixels.data_ptr())
        held.append(item.pixels)
        if len(held) == 3:  # the engine holds a group of tiles, then releases them
            for px in held:
                stream.release(px)
            held = []
    assert seen == list(range(30))
    assert len(buffers) <= 4 + 3  # a fixed pool: depth + held buffers
