"""Tests of wsdal_wsi.detect.candidates: haematoxylin OD, candidate detection, point merging."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from wsdal_wsi.detect.candidates import (
    RUIFROK_EOSIN,
    RUIFROK_HAEMATOXYLIN,
    CandidateParams,
    contrast_map,
    detect_candidates,
    haematoxylin_od,
    merge_points,
)
from wsdal_wsi.errors import ConfigError

MPP = 0.25


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def render(
    shape_hw: tuple[int, int],
    blobs: list[tuple[float, float, float, float]],
    *,
    eosin: float = 0.25,
    background_h: float = 0.05,
    seed: int | None = None,
) -> np.ndarray:
    """An H&E-like image: pink background plus haematoxylin discs.

    ``blobs``: (x, y, radius_px, haematoxylin OD) with soft edges. Returns (h, w, 3) uint8.
    """
    h, w = shape_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    amount_h = np.full((h, w), background_h)
    for x, y, r, od in blobs:
        d = np.hypot(xx - x, yy - y)
        amount_h += od / (1.0 + np.exp((d - r) / 0.8))
    od_rgb = amount_h[..., None] * _unit(RUIFROK_HAEMATOXYLIN) + eosin * _unit(RUIFROK_EOSIN)
    if seed is not None:
        od_rgb += np.random.default_rng(seed).normal(0, 0.01, od_rgb.shape)
    return np.clip(np.round(255.0 * 10.0 ** (-od_rgb)), 0, 255).astype(np.uint8)


def to_tensor(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def xy_set(cand: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(x), int(y)) for x, y in cand[:, :2].tolist()}


# ----------------------------------------------------------------------------- params


def test_params_round_trip_through_json():
    params = CandidateParams(threshold_od=0.2, merge_radius_um=5.0, stain_eosin=(0.1, 0.9, 0.2))
    data = json.loads(json.dumps(params.to_dict()))
    assert CandidateParams.from_dict(data) == params
    assert CandidateParams.from_dict({}) == CandidateParams()


def test_params_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown candidate settings.*'size_px'"):
        CandidateParams.from_dict({"size_px": 3})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"smooth_sigma_um": 0}, "smooth_sigma_um must be a positive number, got 0"),
        ({"threshold_od": -0.1}, "threshold_od must be a non-negative number, got -0.1"),
        ({"merge_radius_um": float("nan")}, "merge_radius_um must be a non-negative"),
        ({"background_sigma_um": 0.5}, "background_sigma_um must exceed smooth_sigma_um"),
        ({"stain_eosin": (1, 2)}, "stain_eosin must be 3 non-negative numbers"),
        ({"stain_eosin": RUIFROK_HAEMATOXYLIN}, "parallel"),
    ],
)
def test_params_reject_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CandidateParams(**kwargs)


def test_context_covers_the_background_kernel():
    params = CandidateParams()
    assert params.context_um() >= 3 * params.background_sigma_um


# ----------------------------------------------------------------------------- OD


def test_haematoxylin_od_recovers_known_amounts():
    amounts = np.array([0.0, 0.3, 0.8, 1.5])
    od = amounts[:, None] * _unit(RUIFROK_HAEMATOXYLIN) + 0.3 * _unit(RUIFROK_EOSIN)
    pixels = np.round(255.0 * 10.0 ** (-od)).astype(np.uint8)  # (4, 3)
    rgb = torch.from_numpy(pixels.T.copy()).view(1, 3, 1, 4)
    got = haematoxylin_od(rgb)
    assert got.shape == (1, 1, 1, 4) and got.dtype == torch.float32
    np.testing.assert_allclose(got.view(-1).numpy(), amounts, atol=0.02)


def test_haematoxylin_od_of_white_and_pure_eosin_is_zero():
    eosin = np.round(255.0 * 10.0 ** (-0.8 * _unit(RUIFROK_EOSIN))).astype(np.uint8)
    rgb = torch.tensor([[255, eosin[0]], [255, eosin[1]], [255, eosin[2]]], dtype=torch.uint8)
    got = haematoxylin_od(rgb.view(1, 3, 1, 2)).view(-1)
    assert got[0].item() == 0.0
    assert got[1].item() < 0.02


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(1, 3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 4, 4)],
)
def test_bad_image_tensors_are_refused(bad):
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\) uint8"):
        detect_candidates(bad, mpp=MPP)


def test_bad_mpp_is_refused():
    with pytest.raises(ConfigError, match="mpp must be a positive number"):
        detect_candidates(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), mpp=0)


# ----------------------------------------------------------------------------- detection

BLOBS = [(40, 50, 12, 0.9), (150, 60, 10, 0.7), (90, 140, 14, 1.2), (170, 170, 9, 0.6)]


def test_blobs_are_found_at_their_centres_and_nothing_else():
    image = render((220, 220), BLOBS)
    (cand,) = detect_candidates(to_tensor(image), mpp=MPP)
    assert cand.dtype == torch.float32 and cand.shape == (len(BLOBS), 3)
    truth = np.array([(x, y) for x, y, _, _ in BLOBS], dtype=np.float64)
    got = cand[:, :2].numpy().astype(np.float64)
    dist = np.hypot(*(got[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    assert (dist.min(axis=1) <= 1.0).all()  # every candidate on a blob centre
    assert (dist.min(axis=0) <= 1.0).all()  # every blob found
    scores = cand[:, 2]
    assert (scores[:-1] >= scores[1:]).all(), "rows are in descending score"
    assert (scores >= CandidateParams().threshold_od).all()
    # The darkest blob has the highest contrast.
    assert tuple(cand[0, :2].tolist()) == (90.0, 140.0)


def test_white_and_flat_images_have_no_candidates():
    white = np.full((64, 64, 3), 255, np.uint8)
    flat = render((64, 64), [], background_h=0.6)
    out = detect_candidates(to_tensor(white, flat), mpp=MPP)
    assert [len(c) for c in out] == [0, 0]
    assert all(c.shape == (0, 3) and c.dtype == torch.float32 for c in out)


def test_empty_batch():
    assert detect_candidates(torch.zeros(0, 3, 32, 32, dtype=torch.uint8), mpp=MPP) == []


def test_threshold_removes_faint_blobs():
    image = render((120, 120), [(30, 60, 10, 1.0), (90, 60, 10, 0.15)])
    (cand,) = detect_candidates(to_tensor(image), mpp=MPP)
    assert xy_set(cand) == {(30, 60)}
    (low,) = detect_candidates(to_tensor(image), mpp=MPP, params=CandidateParams(threshold_od=0.03))
    assert xy_set(low) == {(30, 60), (90, 60)}


def test_min_area_removes_specks():
    # A 1-px dark speck passes a low threshold after smoothing, but has no area.
    image = render((80, 80), [(40, 40, 0.6, 3.0)])
    loose = CandidateParams(threshold_od=0.02, min_area_um2=0.0)
    (found,) = detect_candidates(to_tensor(image), mpp=MPP, params=loose)
    assert xy_set(found) == {(40, 40)}
    strict = CandidateParams(threshold_od=0.02, min_area_um2=20.0)
    (gone,) = detect_candidates(to_tensor(image), mpp=MPP, params=strict)
    assert len(gone) == 0


def test_close_blobs_merge_into_the_stronger_and_far_ones_do_not():
    # Two chromatin clumps 3.5 µm (14 px) apart: one candidate, on the darker.
    image = render((100, 140), [(50, 50, 3, 1.8), (64, 50, 3, 1.4), (115, 50, 4, 1.0)])
    (cand,) = detect_candidates(to_tensor(image), mpp=MPP)
    assert len(cand) == 2
    first, second = sorted(xy_set(cand))
    assert abs(first[0] - 50) <= 1 and first[1] == 50
    assert second == (115, 50)
    no_merge = CandidateParams(merge_radius_um=0.0)
    (raw,) = detect_candidates(to_tensor(image), mpp=MPP, params=no_merge)
    assert len(raw) == 3


def test_device_merge_equals_merge_points_on_the_unmerged_peaks():
    rng = np.random.default_rng(3)
    blobs = [
        (rng.uniform(5, 195), rng.uniform(5, 195), rng.uniform(3, 10), rng.uniform(0.3, 1.2))
        for _ in range(60)
    ]
    image = render((200, 200), blobs, seed=1)
    base = CandidateParams(threshold_od=0.1)
    (raw,) = detect_candidates(
        to_tensor(image), mpp=MPP, params=CandidateParams(threshold_od=0.1, merge_radius_um=0.0)
    )
    (merged,) = detect_candidates(to_tensor(image), mpp=MPP, params=base)
    assert len(merged) < len(raw)
    radius_px = base.merge_radius_um / MPP
    keep = merge_points(raw[:, :2].numpy(), raw[:, 2].numpy(), radius_px=radius_px)
    torch.testing.assert_close(merged, raw[torch.from_numpy(keep)], rtol=0, atol=0)


def test_a_batch_gives_what_each_image_gives_alone():
    images = [
        render((160, 200), BLOBS[:2], seed=1),
        render((160, 200), BLOBS[2:], seed=2),
        render((160, 200), [], seed=3),
        render((160, 200), BLOBS, seed=4, eosin=0.5),
    ]
    together = detect_candidates(to_tensor(*images), mpp=MPP)
    for image, cand in zip(images, together, strict=True):
        (alone,) = detect_candidates(to_tensor(image), mpp=MPP)
        torch.testing.assert_close(cand, alone, rtol=0, atol=0)


def test_deterministic():
    image = to_tensor(render((128, 128), BLOBS, seed=5))
    first = detect_candidates(image, mpp=MPP)[0]
    second = detect_candidates(image, mpp=MPP)[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize("shift", [(7, 3), (-5, 11), (16, -16)])
def test_shifting_the_image_shifts_the_candidates(shift):
    rng = np.random.default_rng(7)
    blobs = [
        (rng.uniform(20, 380), rng.uniform(20, 380), rng.uniform(4, 10), rng.uniform(0.4, 1.2))
        for _ in range(40)
    ]
    big = render((400, 400), blobs, seed=2)
    dx, dy = shift
    size = 320
    origins = [(40, 40), (40 + dx, 40 + dy)]
    # Far enough from every border of both views, a point's candidate does not
    # depend on what lies beyond the view.
    margin = math.ceil(CandidateParams().context_um() / MPP) + 8
    lo_x = max(o[0] for o in origins) + margin
    hi_x = min(o[0] for o in origins) + size - margin
    lo_y = max(o[1] for o in origins) + margin
    hi_y = min(o[1] for o in origins) + size - margin
    assert hi_x > lo_x and hi_y > lo_y

    found = []
    for ox, oy in origins:
        (cand,) = detect_candidates(to_tensor(big[oy : oy + size, ox : ox + size]), mpp=MPP)
        xy = cand[:, :2].numpy().astype(int) + np.array([ox, oy])  # big-image pixel indices
        inside = (xy[:, 0] >= lo_x) & (xy[:, 0] < hi_x) & (xy[:, 1] >= lo_y) & (xy[:, 1] < hi_y)
        found.append(
            dict(zip(map(tuple, xy[inside].tolist()), cand[inside, 2].tolist(), strict=True))
        )
    assert len(found[0]) >= 3
    assert set(found[0]) == set(found[1])
    for point, score in found[0].items():
        assert found[1][point] == pytest.approx(score, abs=1e-4)


def test_blob_near_the_edge_is_found_in_place_and_a_cut_blob_once():
    image = render((120, 120), [(12, 60, 8, 1.0), (119, 60, 10, 1.0)])
    (cand,) = detect_candidates(to_tensor(image), mpp=MPP)
    pts = xy_set(cand)
    assert (12, 60) in pts
    at_right = [p for p in pts if p[0] > 100]
    assert len(at_right) == 1 and at_right[0][1] == 60 and at_right[0][0] >= 115


def test_tiny_images_work():
    image = render((12, 20), [(10, 6, 3, 1.2)])
    (cand,) = detect_candidates(to_tensor(image), mpp=MPP)
    assert len(cand) <= 1


def test_resolution_scales_the_detector():
    # The same tissue scanned at 0.5 µm/px: candidates at half the pixel coordinates.
    blobs_40x = [(80, 100, 20, 1.0), (240, 120, 16, 0.8), (160, 260, 24, 1.1)]
    fine = render((320, 320), blobs_40x)
    coarse = render((160, 160), [(x / 2, y / 2, r / 2, od) for x, y, r, od in blobs_40x])
    (cf,) = detect_candidates(to_tensor(fine), mpp=0.25)
    (cc,) = detect_candidates(to_tensor(coarse), mpp=0.5)
    assert len(cf) == len(cc) == 3
    got = sorted(map(tuple, (cc[:, :2].numpy() * 2).tolist()))
    want = sorted(map(tuple, cf[:, :2].numpy().tolist()))
    np.testing.assert_allclose(got, want, atol=2.0)


def test_contrast_map_shape_and_sign():
    image = to_tensor(render((64, 64), [(32, 32, 8, 1.0)]))
    contrast = contrast_map(image, mpp=MPP, params=CandidateParams())
    assert contrast.shape == (1, 1, 64, 64) and contrast.dtype == torch.float32
    assert contrast[0, 0, 32, 32] > 0.3
    assert contrast[0, 0, 5, 5] < 0.05


def test_candidates_stay_on_the_input_device():
    image = to_tensor(render((64, 64), [(32, 32, 8, 1.0)]))
    (cand,) = detect_candidates(image, mpp=MPP)
    assert cand.device == image.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_candidates():
    images = to_tensor(*(render((256, 256), BLOBS, seed=s) for s in range(3)))
    cpu = detect_candidates(images, mpp=MPP)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gpu = detect_candidates(images.cuda(), mpp=MPP)
    for a, b in zip(cpu, gpu, strict=True):
        assert b.device.type == "cuda"
        torch.testing.assert_close(a[:, :2], b[:, :2].cpu(), rtol=0, atol=0)
        torch.testing.assert_close(a[:, 2], b[:, 2].cpu(), rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- real data


def test_recall_on_real_mitoses(real_mitoses_dir):
    """>= 98.5 % of 746 real mitoses (TCGA breast crops) have a candidate within 7.5 µm."""
    from PIL import Image

    files = sorted(real_mitoses_dir.glob("*/*.png"))
    assert len(files) >= 700
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    rgb = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    _, _, h, w = rgb.shape
    centre = np.array([w / 2 - 0.5, h / 2 - 0.5])  # pixel-index frame
    radius_px = 7.5 / MPP
    hits = 0
    total_candidates = 0
    for start in range(0, len(rgb), 256):
        for cand in detect_candidates(rgb[start : start + 256], mpp=MPP):
            xy = cand[:, :2].numpy()
            total_candidates += len(xy)
            hits += bool(len(xy)) and bool((np.hypot(*(xy - centre).T) <= radius_px).any())
    recall = hits / len(files)
    assert recall >= 0.985, f"candidate recall {recall:.4f} on {len(files)} real mitoses"
    # The cost side: a crop (0.001 mm² of tumour) holds a handful of nuclei, not dozens.
    assert total_candidates / len(files) < 8.0


def test_recall_on_synthetic_slides(synth_dataset):
    """>= 98 % of the synthetic mitoses (every phase, hard ones included) get a candidate."""
    from scipy.spatial import cKDTree

    from wsdal_wsi.evaluation.folders import read_mitosis_points
    from wsdal_wsi.slide import open_slide

    hits = total = 0
    for record in synth_dataset.slides:
        truth = read_mitosis_points(record.truth_path, role="truth")
        with open_slide(record.slide_path) as slide:
            assert slide.mpp == pytest.approx(MPP)
            image = slide.read_region((0, 0), slide.dimensions, target_mpp=MPP)
        (cand,) = detect_candidates(to_tensor(image), mpp=MPP)
        xy = cand[:, :2].numpy().astype(np.float64) + 0.5  # continuous level-0 frame
        dist, _ = cKDTree(xy).query(truth, k=1)
        hits += int((dist <= 7.5 / MPP).sum())
        total += len(truth)
    assert total >= 100
    assert hits / total >= 0.98, f"candidate recall {hits}/{total} on synthetic slides"


# ----------------------------------------------------------------------- against the FFT detector


def _agreement(images: torch.Tensor, *, mpp: float = MPP) -> dict[str, float]:
    """Candidates of today's detector and of the frozen FFT one (commit 344a005), compared."""
    from .frozen_candidates_v1 import detect_candidates_v1

    same = old_n = new_n = 0
    worst = 0.0
    for start in range(0, len(images), 64):
        batch = images[start : start + 64]
        old = detect_candidates_v1(batch, mpp=mpp)
        new = detect_candidates(batch, mpp=mpp)
        for a, b in zip(old, new, strict=True):
            sa = {(int(x), int(y)): s for x, y, s in a.tolist()}
            sb = {(int(x), int(y)): s for x, y, s in b.tolist()}
            common = set(sa) & set(sb)
            same += len(common)
            old_n += len(sa)
            new_n += len(sb)
            worst = max([worst, *(abs(sa[k] - sb[k]) for k in common)])
    return {"same": same / max(old_n, 1), "count_ratio": new_n / max(old_n, 1), "score": worst}


def test_same_candidates_as_the_fft_detector_on_real_mitoses(real_mitoses_dir):
    """The separable / sampled maps find the FFT maps' candidates on 746 real crops."""
    from PIL import Image

    files = sorted(real_mitoses_dir.glob("*/*.png"))
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    got = _agreement(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    assert got["same"] >= 0.995, got  # the same pixel, for all but a handful of near-ties
    assert abs(got["count_ratio"] - 1.0) <= 0.01, got
    assert got["score"] < 1e-4, got


def test_same_candidates_as_the_fft_detector_on_synthetic_tiles(synth_dataset):
    from wsdal_wsi.slide import open_slide

    tiles = []
    for record in synth_dataset.slides:
        with open_slide(record.slide_path) as slide:
            for x, y in [(0, 0), (700, 900)]:
                tiles.append(slide.read_region((x, y), (1104, 1104), target_mpp=MPP))
    got = _agreement(torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2))
    assert got["same"] >= 0.995, got
    assert abs(got["count_ratio"] - 1.0) <= 0.01, got
    assert got["score"] < 1e-4, got
