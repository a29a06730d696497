"""A small prediction output folder, written with the report package's own functions."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from shapely.geometry import box

from wsdal_wsi.counting import HotspotSettings, Region
from wsdal_wsi.report import (
    ModelInfo,
    SlideInfo,
    SlideSummary,
    finish_slide,
    read_gallery,
    slide_files,
    write_batch_outputs,
    write_summary,
)

MPP = 0.5  # µm/px
DS = 32.0  # level-0 px per tissue-mask px (16 µm)
THUMB_DS = 16.0
SIZE = (6400, 4800)  # level-0 (w, h): 3.2 x 2.4 mm


@dataclass
class FakeTissue:
    mask: np.ndarray
    downsample: float


class FakeSlide:
    """The parts of the Slide contract the gallery reader uses."""

    mpp = MPP

    def level0_per_px(self, target_mpp: float) -> float:
        return target_mpp / self.mpp

    def read_region(self, location_level0, size_px, *, target_mpp=0.25):
        w, h = size_px
        x, y = location_level0
        # a crop whose colour encodes where it was read from
        img = np.zeros((h, w, 3), dtype=np.uint8)
        img[..., 0] = int(x) % 256
        img[..., 1] = int(y) % 256
        img[..., 2] = 128
        return img


def make_slide(rng: np.random.Generator, *, hot_xy: tuple[float, float], n_bg: int = 80):
    """A tissue mask, a thumbnail and detections with a dense cluster at ``hot_xy``."""
    w, h = SIZE
    mh, mw = int(h / DS), int(w / DS)
    mask = np.zeros((mh, mw), dtype=bool)
    mask[10:140, 15:185] = True
    mask[60:90, 80:120] = False  # a hole of glass
    th, tw = int(h / THUMB_DS), int(w / THUMB_DS)
    thumb = np.full((th, tw, 3), 242, dtype=np.uint8)
    big = np.kron(mask, np.ones((2, 2), dtype=bool))[:th, :tw]
    tex = gaussian_filter(rng.random((th, tw)), 2)
    thumb[big] = np.stack([190 + 40 * tex, 110 + 50 * tex, 160 + 40 * tex], -1)[big].astype(
        np.uint8
    )
    tissue_xy = np.argwhere(mask)[:, ::-1] * DS
    bg = tissue_xy[rng.choice(len(tissue_xy), n_bg)] + rng.uniform(0, DS, (n_bg, 2))
    hot = np.asarray(hot_xy) + rng.normal(0, 150, (40, 2))
    pts = np.concatenate([bg, hot])
    pts = pts[FakeTissueMaskContains(mask)(pts)]
    scores = rng.uniform(0.6, 1.0, len(pts))
    return FakeTissue(mask, DS), thumb, pts, scores


def FakeTissueMaskContains(mask):
    def contains(xy):
        ij = np.floor(xy[:, ::-1] / DS).astype(int)
        ok = (ij >= 0).all(1) & (ij[:, 0] < mask.shape[0]) & (ij[:, 1] < mask.shape[1])
        out = np.zeros(len(xy), dtype=bool)
        out[ok] = mask[ij[ok, 0], ij[ok, 1]]
        return out

    return contains


def build_out_dir(out: Path) -> Path:
    """Write OUT: slides 'alpha' (regions), 'beta' (no regions, no gallery), a failed 'gamma'."""
    rng = np.random.default_rng(11)
    model = ModelInfo(path="/models/wsdal.pt", sha256="ab" * 32, threshold=0.6, target_mpp=0.25)
    settings = HotspotSettings(area_mm2=0.2)
    summaries = []
    for key, hot, regions, with_gallery in (
        (
            "alpha",
            (1500.0, 1500.0),
            [
                Region(box(700, 700, 2400, 2400), "Region", "Tumour 1"),
                Region(box(3000, 500, 6000, 4000), "Region*", "Rest"),
            ],
            True,
        ),
        ("beta", (4500.0, 3500.0), [], False),
    ):
        tissue, thumb, pts, scores = make_slide(rng, hot_xy=hot)
        slide = SlideInfo(
            name=f"{key} slide µ²",
            key=key,
            path=f"/slides/{key}.svs",
            mpp=MPP,
            mpp_source="slide properties",
            dimensions=SIZE,
        )
        gallery = read_gallery(FakeSlide(), pts, scores, n=6, size_px=32) if with_gallery else None
        summaries.append(
            finish_slide(
                out,
                slide=slide,
                model=model,
                threshold=0.6,
                points_level0=pts,
                scores=scores,
                tissue=tissue,
                regions=regions,
                settings=settings,
                thumbnail=thumb,
                thumbnail_downsample=THUMB_DS,
                gallery=gallery,
                timings={"model_s": 1.5},
            )
        )
    failed = SlideSummary.failed(
        SlideInfo(name="gamma", key="gamma", path="/slides/gamma.svs"),
        "/slides/gamma.svs: not a slide OpenSlide can open (truncated file)",
        model=model,
    )
    write_summary(slide_files(out, "gamma").summary, failed)
    summaries.append(failed)
    write_batch_outputs(out, summaries)
    return out


@pytest.fixture(scope="session")
def _out_dir_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_out_dir(tmp_path_factory.mktemp("template") / "OUT")


@pytest.fixture
def out_dir(_out_dir_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the output folder of :func:`build_out_dir` (tests may change it)."""
    return Path(shutil.copytree(_out_dir_template, tmp_path / "OUT"))


@pytest.fixture
def fake_slide() -> FakeSlide:
    """A stand-in slide whose crops encode the level-0 top-left they were read from."""
    return FakeSlide()
