"""Candidate nuclei: where the classifier looks.

Every point the classifier scores is a *candidate*: a compact, haematoxylin-dense
blob. Mitotic figures are among the darkest, most compact nuclear objects of H&E,
so a blob detector on the haematoxylin optical density finds almost all of them;
what it also finds (ordinary nuclei, lymphocytes, apoptotic bodies) is the
classifier's job. Candidates are the cost of inference, so the detector is tuned
for as few of them as a mitosis recall of 0.98 allows.

The pipeline (pure torch, batched over tiles, the same code on CPU and CUDA,
deterministic):

1. **Haematoxylin optical density** by Ruifrok-Johnston colour deconvolution
   (:func:`haematoxylin_od`).
2. **Smoothing** with a Gaussian of about 1 µm (:attr:`CandidateParams.smooth_sigma_um`),
   and a **local background**: the same map smoothed at about 4 µm
   (:attr:`CandidateParams.background_sigma_um`). Their difference, the *contrast*
   (a difference of Gaussians, in OD units), is how much darker in haematoxylin a
   blob is than its surroundings. Both maps are computed in
   :mod:`wsdal_wsi.detect.maps`: separable Gaussians as banded matrix products, the
   wide background from every 4th row and column of the smoothed map (exact to
   about 1e-8 for a band-limited map), the OD by table look-up. On the 2-core
   development CPU that is 5-7x less work than the earlier frequency-domain maps,
   with the same candidates (``tests/detect``, ``benchmarks/RESULTS.md``).
3. **Peaks**: local maxima of the smoothed OD within
   :attr:`CandidateParams.peak_radius_um` (the centre of a dark nucleus; the
   contrast of a large uniformly dark nucleus peaks along its rim) whose contrast
   is at least :attr:`CandidateParams.threshold_od` and whose above-threshold
   contrast covers at least :attr:`CandidateParams.min_area_um2` around the peak
   (the "component with a minimum size").
4. **Merging**: greedy by descending contrast, every peak within
   :attr:`CandidateParams.merge_radius_um` of a kept one is dropped (one nucleus,
   or one mitotic figure with several chromatin clumps, gives one candidate). This is
   exactly :func:`merge_points`, run on the device
   (:mod:`wsdal_wsi.detect.merge`).

Coordinates are pixel indices (column, row) of the peak pixel; in the
continuous frame of :mod:`wsdal_wsi.slide` (pixel ``i`` spans ``[i, i + 1)``)
the candidate lies at index + 0.5.

Why an absolute threshold on a local contrast, not a threshold relative to each
tile's statistics: the contrast already removes the local background level (thick
sections, dense stroma, a tile that is half glass), and an absolute value makes a
candidate's existence independent of which tile, patch window or crop it was found
in. Training (patch windows around annotations) and whole-slide inference (tiles)
therefore see the same candidates, the detector is translation-equivariant, and
two tiles never disagree about a point. The default threshold (0.18 OD) sits at
about the first percentile of the contrast of 746 real mitoses (faint TCGA scans
included); ``benchmarks/candidates.py`` measures recall and candidates per mm²
(``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from wsdal_wsi.detect import maps
from wsdal_wsi.detect.merge import greedy_merge_torch, merge_points
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.units import check_mpp, um2_to_px2, um_to_px

__all__ = [
    "RUIFROK_EOSIN",
    "RUIFROK_HAEMATOXYLIN",
    "CandidateParams",
    "detect_candidates",
    "haematoxylin_od",
    "merge_points",
]

#: Ruifrok & Johnston (2001) haematoxylin stain vector (optical density of R, G, B).
RUIFROK_HAEMATOXYLIN: tuple[float, float, float] = (0.650, 0.704, 0.286)
#: Ruifrok & Johnston (2001) eosin stain vector (optical density of R, G, B).
RUIFROK_EOSIN: tuple[float, float, float] = (0.072, 0.990, 0.105)


@dataclass(frozen=True)
class CandidateParams:
    """Settings of the candidate detector, in physical units.

    Stored in the model file (:meth:`to_dict` / :meth:`from_dict`) so that
    prediction finds candidates exactly as training did, at any slide resolution.

    Attributes
    ----------
    smooth_sigma_um : float
        Standard deviation (µm) of the Gaussian that smooths the haematoxylin
        optical density before peaks are sought (about the size of a chromatin
        clump; 1 µm = 4 px at 0.25 µm/px).
    background_sigma_um : float
        Standard deviation (µm) of the Gaussian that estimates the local
        haematoxylin background; must exceed ``smooth_sigma_um``. The contrast of a
        pixel is its smoothed OD minus this background.
    threshold_od : float
        Minimum contrast (optical density units, dimensionless) of a candidate's
        peak.
    peak_radius_um : float
        Half-size (µm) of the square window in which a peak must be the maximum of
        the contrast.
    min_area_um2 : float
        Minimum area (µm²) of above-threshold contrast around a peak, counted in a
        square window of side about ``2 * sqrt(min_area)`` centred on it (upstream:
        components of at least 20 px at 0.25 µm/px = 1.25 µm²). 0 disables it.
    merge_radius_um : float
        Peaks closer than this (µm, inclusive) to a stronger kept peak are merged
        into it (greedy by descending contrast, as :func:`merge_points`). 0
        disables merging.
    stain_haematoxylin : tuple of 3 float
        Haematoxylin stain vector (OD of R, G, B; normalised internally).
    stain_eosin : tuple of 3 float
        Eosin stain vector (OD of R, G, B; normalised internally). The third
        vector of the deconvolution is their normalised cross product.
    """

    smooth_sigma_um: float = 1.0
    background_sigma_um: float = 4.0
    threshold_od: float = 0.18
    peak_radius_um: float = 1.0
    min_area_um2: float = 1.25
    merge_radius_um: float = 4.0
    stain_haematoxylin: tuple[float, float, float] = RUIFROK_HAEMATOXYLIN
    stain_eosin: tuple[float, float, float] = RUIFROK_EOSIN

    def __post_init__(self) -> None:
        for name in ("smooth_sigma_um", "background_sigma_um", "peak_radius_um"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ConfigError(
                    f"CandidateParams.{name} must be a positive number, got {value!r}"
                )
        for name in ("threshold_od", "min_area_um2", "merge_radius_um"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ConfigError(
                    f"CandidateParams.{name} must be a non-negative number, got {value!r}"
                )
        if self.background_sigma_um <= self.smooth_sigma_um:
            raise ConfigError(
                "CandidateParams.background_sigma_um must exceed smooth_sigma_um, got "
                f"{self.background_sigma_um!r} <= {self.smooth_sigma_um!r}"
            )
        for name in ("stain_haematoxylin", "stain_eosin"):
            value = getattr(self, name)
            try:
                vector = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"CandidateParams.{name} must be 3 numbers, got {value!r}"
                ) from None
            if (
                len(vector) != 3
                or not all(_finite(v) and v >= 0 for v in vector)
                or not any(vector)
            ):
                raise ConfigError(
                    f"CandidateParams.{name} must be 3 non-negative numbers, not all 0, "
                    f"got {value!r}"
                )
            object.__setattr__(self, name, vector)
        maps.stain_inverse(self.stain_haematoxylin, self.stain_eosin)  # raises if degenerate

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-able dict (stain vectors as lists)."""
        out = dataclasses.asdict(self)
        out["stain_haematoxylin"] = list(self.stain_haematoxylin)
        out["stain_eosin"] = list(self.stain_eosin)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CandidateParams:
        """Rebuild settings from :meth:`to_dict` output.

        Missing keys take their defaults (older model files); unknown keys are an
        error (a model file from a newer version whose settings we cannot honour).

        Raises
        ------
        ConfigError
            On unknown keys or bad values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"candidate settings must be a JSON object, got {data!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown candidate settings {unknown} (known: {sorted(names)})")
        kwargs = dict(data)
        for name in ("stain_haematoxylin", "stain_eosin"):
            if name in kwargs and isinstance(kwargs[name], list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)

    def context_um(self) -> float:
        """Distance (µm) from a pixel beyond which the image does not change its candidates.

        A tile margin of at least this much makes the candidates in a tile's core
        identical to those of the whole slide; with less, contrast near the core's
        edge is estimated from mirrored pixels (slightly different scores, never a
        duplicate: each point still belongs to one core).
        """
        return 3.0 * self.background_sigma_um + self.peak_radius_um + self.merge_radius_um


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def haematoxylin_od(
    rgb: torch.Tensor,
    *,
    stain_haematoxylin: tuple[float, float, float] = RUIFROK_HAEMATOXYLIN,
    stain_eosin: tuple[float, float, float] = RUIFROK_EOSIN,
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

    Raises
    ------
    ConfigError
        If ``rgb`` is not a ``(B, 3, H, W)`` uint8 tensor or the stain vectors are
        degenerate.
    """
    _check_rgb(rgb)
    with torch.autocast(device_type=rgb.device.type, enabled=False):
        od = maps.haematoxylin_od(
            rgb, stain_haematoxylin=tuple(stain_haematoxylin), stain_eosin=tuple(stain_eosin)
        )
    return od[:, None]


def _check_rgb(rgb: Any) -> None:
    if not isinstance(rgb, torch.Tensor):
        raise ConfigError(f"expected a torch.Tensor of RGB images, got {type(rgb).__name__}")
    if rgb.dtype != torch.uint8 or rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ConfigError(
            f"expected a (B, 3, H, W) uint8 tensor, got shape {tuple(rgb.shape)} dtype {rgb.dtype}"
        )


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


def _maps(
    rgb: torch.Tensor, *, mpp: float, params: CandidateParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed haematoxylin OD and contrast, both ``(B, 1, H, W)`` float32."""
    with torch.autocast(device_type=rgb.device.type, enabled=False):
        od = maps.haematoxylin_od(
            rgb, stain_haematoxylin=params.stain_haematoxylin, stain_eosin=params.stain_eosin
        )
        smooth, background = maps.gaussian_pair(
            od, um_to_px(params.smooth_sigma_um, mpp), um_to_px(params.background_sigma_um, mpp)
        )
        return smooth[:, None], background.neg_().add_(smooth)[:, None]


def contrast_map(rgb: torch.Tensor, *, mpp: float, params: CandidateParams) -> torch.Tensor:
    """The haematoxylin contrast the candidate detector thresholds.

    Parameters
    ----------
    rgb : torch.Tensor
        ``(B, 3, H, W)`` uint8 RGB at resolution ``mpp``.
    mpp : float
        Resolution of ``rgb`` (µm/px).
    params : CandidateParams
        Detector settings.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` float32, on the input's device: haematoxylin OD smoothed at
        ``smooth_sigma_um`` minus the same smoothed at ``background_sigma_um`` (OD
        units).
    """
    _check_rgb(rgb)
    return _maps(rgb, mpp=check_mpp(mpp, what="mpp"), params=params)[1]


@torch.no_grad()
def detect_candidates(
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

    Raises
    ------
    ConfigError
        If ``rgb`` is not ``(B, 3, H, W)`` uint8 or ``mpp`` is not a resolution.

    Notes
    -----
    Deterministic; translation-equivariant away from the image border (the
    contrast near a border is computed from mirrored pixels, see
    :meth:`CandidateParams.context_um`). On the CPU a batch gives exactly the
    candidates of its images one by one; on CUDA, batched matrix products may
    round differently with the batch size (scores equal to about 1e-6). Under
    autocast, and with TF32 matrix products allowed, the maps are still computed
    in full float32.
    """
    params = params if params is not None else CandidateParams()
    _check_rgb(rgb)
    mpp = check_mpp(mpp, what="mpp")
    batch, _, height, width = rgb.shape
    device = rgb.device
    if batch == 0 or height == 0 or width == 0:
        return [torch.zeros((0, 3), dtype=torch.float32, device=device) for _ in range(batch)]

    with record_function("candidates.maps"):
        smooth, contrast = _maps(rgb, mpp=mpp, params=params)
    with record_function("candidates.peaks"):
        return _peaks(smooth, contrast, mpp=mpp, params=params)


def _peaks(
    smooth: torch.Tensor, contrast: torch.Tensor, *, mpp: float, params: CandidateParams
) -> list[torch.Tensor]:
    """Steps 3 and 4 (peaks, area test, merge) on the maps of :func:`_maps`."""
    batch, _, height, _ = smooth.shape

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
