"""A frozen copy of the candidate detector as it was before the separable maps (commit 344a005).

The reference the tests compare today's :func:`wsdal_wsi.detect.candidates.detect_candidates`
with: the same haematoxylin OD, the two Gaussians applied exactly in the frequency domain (one
FFT), and the same peaks, area test and merge. Do not edit: it is the "before" of
``tests/detect/test_maps.py`` and ``benchmarks/candidates.py --compare``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from wsdal_wsi.detect.candidates import CandidateParams
from wsdal_wsi.detect.merge import greedy_merge_torch
from wsdal_wsi.units import um2_to_px2, um_to_px

__all__ = ["detect_candidates_v1", "maps_v1"]


def _stain_inverse(
    haematoxylin: tuple[float, float, float], eosin: tuple[float, float, float]
) -> np.ndarray:
    """Return the (3,) row that maps RGB optical density to haematoxylin amount."""
    h = np.asarray(haematoxylin, dtype=np.float64)
    e = np.asarray(eosin, dtype=np.float64)
    h = h / np.linalg.norm(h)
    e = e / np.linalg.norm(e)
    residual = np.cross(h, e)
    norm = np.linalg.norm(residual)
    stains = np.stack([h, e, residual / norm])  # rows: stains, columns: R, G, B
    # od (row vector over RGB) = amounts @ stains  ->  amounts = od @ inv(stains)
    return np.linalg.inv(stains)[:, 0]


def haematoxylin_od(
    rgb: torch.Tensor,
    *,
    stain_haematoxylin: tuple[float, float, float],
    stain_eosin: tuple[float, float, float],
) -> torch.Tensor:
    """Haematoxylin optical density by Ruifrok-Johnston colour deconvolution.

    Each pixel's optical density ``OD_c = -log10(max(I_c, 1) / 255)`` (white glass
    is 0) is unmixed into haematoxylin, eosin and a residual (the normalised cross
    product of the two stain vectors); the haematoxylin amount is returned,
    clipped at 0 (negative amounts are off-stain colours, not "less than no
    haematoxylin").

    Parameters
    ----------
    rgb : torch.Tensor
        ``(B, 3, H, W)`` uint8 RGB images, on any device.
    stain_haematoxylin, stain_eosin : tuple of 3 float
        Stain vectors (OD of R, G, B), normalised internally; Ruifrok & Johnston's
        by default.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` float32 haematoxylin optical density (dimensionless, >= 0),
        on the input's device.

    """
    row = _stain_inverse(tuple(stain_haematoxylin), tuple(stain_eosin))
    weights = torch.tensor(row, dtype=torch.float32, device=rgb.device).view(1, 3, 1, 1)
    od = torch.log10(rgb.float().clamp_(min=1.0).div_(255.0)).neg_()
    return (od * weights).sum(dim=1, keepdim=True).clamp_(min=0.0)


def _fft_size(n: int) -> int:
    """The smallest integer >= ``n`` whose only prime factors are 2, 3 and 5 (fast FFTs)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _gaussian_pair(
    image: torch.Tensor, sigma_small_px: float, sigma_large_px: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` smoothed by two Gaussians, with mirrored edges.

    Both Gaussians are applied in the frequency domain: exact Gaussians (no
    truncation), one forward and two inverse real FFTs whatever the sigmas. On
    the 2-core development CPU this is several times faster than separable
    convolutions with a 16 px sigma; on CUDA it is cuFFT. Edges are mirrored over
    4 large sigmas (``replicate`` where the image is smaller than that), so the
    circular wrap of the FFT never reaches the image.

    Parameters
    ----------
    image : torch.Tensor
        ``(B, 1, H, W)`` float32.
    sigma_small_px, sigma_large_px : float
        Standard deviations in pixels.

    Returns
    -------
    (small, large) : tuple of torch.Tensor
        Two ``(B, 1, H, W)`` float32 maps (views into one buffer).
    """
    height, width = image.shape[-2:]
    pad = math.ceil(4.0 * sigma_large_px)
    mode = "reflect" if pad < min(height, width) else "replicate"
    padded = F.pad(image, (pad, pad, pad, pad), mode=mode)
    size = (_fft_size(padded.shape[-2]), _fft_size(padded.shape[-1]))
    spectrum = torch.fft.rfft2(padded, s=size)
    fy = torch.fft.fftfreq(size[0], dtype=torch.float64, device=image.device)[:, None]
    fx = torch.fft.rfftfreq(size[1], dtype=torch.float64, device=image.device)[None, :]
    # Fourier transform of a unit Gaussian of std s: exp(-2 pi^2 s^2 f^2), f in cycles/px.
    f2 = (fy * fy + fx * fx) * (2.0 * math.pi * math.pi)
    transfer = torch.stack([torch.exp(-f2 * sigma_small_px**2), torch.exp(-f2 * sigma_large_px**2)])
    # (B, 1, h, w) x (2, h, w) -> (B, 2, h, w): both filters in one inverse transform.
    out = torch.fft.irfft2(spectrum * transfer.to(torch.float32), s=size)
    out = out[..., pad : pad + height, pad : pad + width]
    return out[:, 0:1], out[:, 1:2]


def _window_max(image: torch.Tensor, half: int) -> torch.Tensor:
    """Maximum over a ``(2 half + 1)`` square window (``-inf`` outside), by shifted maxima."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (half, half, half, half), value=-math.inf)
    rows = padded[..., :, 0:width].clone()
    for shift in range(1, 2 * half + 1):
        torch.maximum(rows, padded[..., :, shift : shift + width], out=rows)
    out = rows[..., 0:height, :].clone()
    for shift in range(1, 2 * half + 1):
        torch.maximum(out, rows[..., shift : shift + height, :], out=out)
    return out


def maps_v1(
    rgb: torch.Tensor, *, mpp: float, params: CandidateParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed haematoxylin OD and contrast, both ``(B, 1, H, W)`` float32."""
    with torch.autocast(device_type=rgb.device.type, enabled=False):
        od = haematoxylin_od(
            rgb, stain_haematoxylin=params.stain_haematoxylin, stain_eosin=params.stain_eosin
        )
        smooth, background = _gaussian_pair(
            od, um_to_px(params.smooth_sigma_um, mpp), um_to_px(params.background_sigma_um, mpp)
        )
        return smooth, smooth - background


@torch.no_grad()
def detect_candidates_v1(
    rgb: torch.Tensor, *, mpp: float, params: CandidateParams | None = None
) -> list[torch.Tensor]:
    """Find candidate nuclei in a batch of RGB tiles.

    Parameters
    ----------
    rgb : torch.Tensor
        ``(B, 3, H, W)`` uint8 RGB tiles (CPU or CUDA), all at resolution ``mpp``.
    mpp : float
        Resolution of the tiles (µm/px); every µm setting of ``params`` is
        converted to pixels at this resolution.
    params : CandidateParams, optional
        Detector settings (default: ``CandidateParams()``).

    Returns
    -------
    list of torch.Tensor
        One ``(N_i, 3)`` float32 tensor per image, on the input's device:
        ``(x_px, y_px, score)`` with ``x_px, y_px`` the column and row index of
        the peak pixel in that image (integers; add 0.5 for the pixel centre in
        the continuous frame of :meth:`wsdal_wsi.slide.Tile.to_level0`) and
        ``score`` the peak's haematoxylin contrast (OD units,
        ``>= params.threshold_od``). Rows are in descending score (ties:
        row-major order). Candidates of one image are more than
        ``merge_radius_um`` apart.


    Notes
    -----
    Deterministic; translation-equivariant away from the image border (the
    contrast near a border is computed from mirrored pixels, see
    :meth:`CandidateParams.context_um`). On the CPU a batch gives exactly the
    candidates of its images one by one; on CUDA, cuFFT may round differently
    with the batch size (scores equal to about 1e-6). Under autocast the maps are
    still computed in float32.
    """
    params = params if params is not None else CandidateParams()
    batch, _, height, width = rgb.shape
    device = rgb.device
    if batch == 0 or height == 0 or width == 0:
        return [torch.zeros((0, 3), dtype=torch.float32, device=device) for _ in range(batch)]

    smooth, contrast = maps_v1(rgb, mpp=mpp, params=params)

    # Peaks: maxima of the smoothed OD in their (2 h + 1)^2 window (the centre of a
    # dark nucleus, not the rim where a large one's contrast peaks), with enough
    # contrast. The dense pass keeps the 3 x 3 maxima above the threshold (few);
    # the full window is then checked at those only.
    peak_half = max(1, round(um_to_px(params.peak_radius_um, mpp)))
    above = contrast >= params.threshold_od
    seeds = above & (smooth >= _window_max(smooth, 1))
    index = seeds.nonzero()  # (N, 4): b, 0, y, x in row-major order
    b_idx, y_idx, x_idx = index[:, 0], index[:, 2], index[:, 3]
    if peak_half > 1 and b_idx.numel():
        window = _window_values(smooth, b_idx, y_idx, x_idx, half=peak_half, fill=-math.inf)
        peak = smooth[b_idx, 0, y_idx, x_idx] >= window.amax(dim=1)
        b_idx, y_idx, x_idx = b_idx[peak], y_idx[peak], x_idx[peak]
    scores = contrast[b_idx, 0, y_idx, x_idx]

    min_area_px = um2_to_px2(params.min_area_um2, mpp)
    if min_area_px > 1 and scores.numel():
        half = math.ceil(math.sqrt(min_area_px))
        area = _window_values(above, b_idx, y_idx, x_idx, half=half, fill=False).sum(dim=1)
        big = area >= min_area_px - 1e-6
        b_idx, y_idx, x_idx, scores = b_idx[big], y_idx[big], x_idx[big], scores[big]

    radius_px = um_to_px(params.merge_radius_um, mpp)
    keep = greedy_merge_torch(b_idx, y_idx, x_idx, scores, radius_px=radius_px, height=height)
    b_idx, y_idx, x_idx, scores = b_idx[keep], y_idx[keep], x_idx[keep], scores[keep]

    # Order: image, then descending score, ties in row-major order (keep is sorted by rank).
    order = torch.argsort(b_idx, stable=True)
    rows = torch.stack([x_idx.float(), y_idx.float(), scores.float()], dim=1)[order]
    counts = torch.bincount(b_idx, minlength=batch).tolist()
    return list(torch.split(rows, counts))


def _window_values(
    image: torch.Tensor,
    b_idx: torch.Tensor,
    y_idx: torch.Tensor,
    x_idx: torch.Tensor,
    *,
    half: int,
    fill: float | bool,
) -> torch.Tensor:
    """The ``(2 half + 1)^2`` window of ``image`` (B, 1, H, W) around each point.

    Returns ``(N, (2 half + 1)^2)`` values of ``image``'s dtype; pixels outside the
    image are ``fill``.
    """
    height, width = image.shape[-2:]
    offsets = torch.arange(-half, half + 1, device=image.device)
    ys = y_idx[:, None, None] + offsets[None, :, None]
    xs = x_idx[:, None, None] + offsets[None, None, :]
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    values = image[
        b_idx[:, None, None].expand_as(inside),
        0,
        ys.clamp(0, height - 1).expand_as(inside),
        xs.clamp(0, width - 1).expand_as(inside),
    ]
    values = values.masked_fill(~inside, fill)
    return values.flatten(1)
