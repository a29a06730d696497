"""Batched, on-device augmentation of stored patches (weak and strong views).

The patch store holds each patch with some context (``context_px``, e.g. 112 px
around an 80 px patch) so that rotations and shifts never need to invent
corners; the augmentation crops the ``patch_px`` patch on the training device
in the same resampling step. Everything is one batched operation per batch
(one ``grid_sample`` for all geometry, per-sample colour matrices), driven by a
``torch.Generator`` on the device, so a seed gives the same views on the same
device.

* weak view: flips, 90° rotations, a small rotation / scale / shift, small
  brightness / contrast / saturation jitter;
* strong view: any rotation, larger scale / shift, elastic deformation,
  brightness / contrast, saturation / hue, HED (haematoxylin-eosin-DAB) jitter,
  Gaussian blur;
* appearance (the cascade's distillation): the strong view's colour and blur
  without its geometry (:func:`recolour`), so that the first stage's target, the
  final model's score of the patch as stored, stays the right answer.

A run's stain augmentation (the preset's ``stain_jitter``) raises the HED jitter of
every view of every stage to at least its amplitude (:func:`with_stain_jitter`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "APPEARANCE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "STRONG",
    "WEAK",
    "AugmentParams",
    "augment_batch",
    "center_crop",
    "matched_shifts",
    "normalise",
    "recolour",
    "stain_jitter",
    "with_stain_jitter",
]

#: Normalisation used by every wsdal-wsi network (ImageNet statistics, RGB in [0, 1]).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Ruifrok & Johnston H&E-DAB stain vectors (rows: haematoxylin, eosin, DAB), in OD space.
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float32
)
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float32
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_CONSTANTS: dict[tuple, Tensor] = {}


def _const(name: str, values: Tensor | tuple[float, ...], device: torch.device) -> Tensor:
    """A constant tensor on ``device``, copied there once (no host sync per batch)."""
    key = (
        name,
        tuple(values.flatten().tolist()) if isinstance(values, Tensor) else values,
        str(device),
    )
    t = _CONSTANTS.get(key)
    if t is None:
        t = torch.as_tensor(values, dtype=torch.float32).to(device)
        _CONSTANTS[key] = t
    return t


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of one augmentation view (all drawn uniformly per sample).

    Attributes
    ----------
    flips : bool
        Random horizontal flip and 90° rotations.
    rotate_deg : float
        Extra rotation in [-rotate_deg, rotate_deg] degrees (180: any angle).
    scale : tuple of float
        Zoom factor range (``(1, 1)``: none).
    translate_px : float
        Shift in [-translate_px, translate_px] pixels along x and y.
    elastic_px : float
        Standard deviation of the elastic displacement (pixels; 0: none).
    elastic_grid : int
        Control points per side of the elastic displacement field.
    brightness, contrast, saturation : float
        Relative jitter: factor in [1 - v, 1 + v].
    hue : float
        Hue rotation in [-hue, hue] turns.
    hed_scale, hed_shift : float
        HED jitter: each stain's optical density is scaled by [1 - a, 1 + a] and
        shifted by [-b, b].
    hed_mix : float
        Stain-vector jitter: each stain's amount leaks into each other stain's by a
        factor in [-m, m] (the off-diagonal of the per-sample HED matrix), as when a
        lab's haematoxylin or eosin has another hue than the reference vectors.
    blur_prob : float
        Probability of a Gaussian blur.
    blur_sigma_px : float
        Largest blur standard deviation (pixels).
    """

    flips: bool = True
    rotate_deg: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translate_px: float = 0.0
    elastic_px: float = 0.0
    elastic_grid: int = 4
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    hed_scale: float = 0.0
    hed_shift: float = 0.0
    hed_mix: float = 0.0
    blur_prob: float = 0.0
    blur_sigma_px: float = 0.0


#: The weak view (DMU, NS, baseline training).
WEAK = AugmentParams(
    flips=True,
    rotate_deg=15.0,
    scale=(0.95, 1.05),
    translate_px=3.0,
    brightness=0.1,
    contrast=0.1,
    saturation=0.1,
)

#: The strong view (DMU's second branch, CSDGL).
STRONG = AugmentParams(
    flips=True,
    rotate_deg=180.0,
    scale=(0.85, 1.15),
    translate_px=6.0,
    elastic_px=1.5,
    elastic_grid=4,
    brightness=0.25,
    contrast=0.25,
    saturation=0.25,
    hue=0.04,
    hed_scale=0.05,
    hed_shift=0.05,
    blur_prob=0.3,
    blur_sigma_px=1.2,
)


#: The cascade's distillation: how slides differ in look (stain, brightness, focus),
#: not in geometry. Without it the first stage followed the final model on the
#: training slides' look only and stopped 21 of the final model's 76 detections on a
#: blurrier, paler ``wsdal demo`` test slide (benchmarks/RESULTS.md, "The cascade").
APPEARANCE = AugmentParams(
    flips=False,
    brightness=0.15,
    contrast=0.15,
    saturation=0.15,
    hed_scale=0.1,
    hed_shift=0.1,
    hed_mix=0.1,
    blur_prob=0.3,
    blur_sigma_px=1.2,
)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def center_crop(x: Tensor, patch_px: int) -> Tensor:
    """Crop the central ``patch_px`` square of ``(B, C, H, W)`` (any dtype)."""
    h, w = x.shape[-2:]
    if patch_px > min(h, w):
        raise ValueError(f"cannot crop {patch_px} px from {h} x {w} patches")
    y0, x0 = (h - patch_px) // 2, (w - patch_px) // 2
    return x[..., y0 : y0 + patch_px, x0 : x0 + patch_px]


def normalise(x01: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """``(B, 3, H, W)`` float RGB in [0, 1] → ``(x - mean) / std``."""
    m = _const("mean", tuple(mean), x01.device).view(1, 3, 1, 1)
    s = _const("std", tuple(std), x01.device).view(1, 3, 1, 1)
    return (x01 - m.to(x01.dtype)) / s.to(x01.dtype)


def matched_shifts(
    labels: Tensor, *, radius_px: float, prob: float, generator: torch.Generator
) -> Tensor:
    """Offsets that give negatives the positional jitter the positives got at extraction.

    A positive click is stored once centred and ``n_jitter`` times shifted by up to
    ``jitter_px`` (uniform in a disc); negatives are stored centred. Left so, an
    off-centre nucleus *is* a mitosis to the network. Each label-0 sample gets, with
    probability ``prob`` (``n_jitter / (n_jitter + 1)``), a shift drawn from the same
    disc, so the offset distribution no longer depends on the label.

    Parameters
    ----------
    labels : Tensor ``(B,)`` int64
    radius_px : float
        The jitter radius (pixels at the target resolution).
    prob : float
        Share of the negatives shifted.
    generator : torch.Generator
        On the device of ``labels``.

    Returns
    -------
    Tensor ``(B, 2)`` float32
        ``(dx, dy)`` pixels; zero for positives.
    """
    b, dev = labels.shape[0], labels.device
    r = radius_px * torch.rand(b, generator=generator, device=dev).sqrt()
    a = torch.rand(b, generator=generator, device=dev) * (2 * math.pi)
    on = (labels == 0) & (torch.rand(b, generator=generator, device=dev) < prob)
    r = r * on
    return torch.stack([r * torch.cos(a), r * torch.sin(a)], dim=1)


def _geometry(
    x: Tensor, patch_px: int, p: AugmentParams, g: torch.Generator, extra: Tensor | None = None
) -> Tensor:
    b, _, h, w = x.shape
    dev = x.device
    angle = _uniform(b, -p.rotate_deg, p.rotate_deg, g, dev) * (math.pi / 180.0)
    sx = torch.ones(b, device=dev)
    if p.flips:
        k = torch.randint(0, 4, (b,), generator=g, device=dev).float()
        angle = angle + k * (math.pi / 2)
        sx = torch.where(torch.rand(b, generator=g, device=dev) < 0.5, -sx, sx)
    zoom = _uniform(b, p.scale[0], p.scale[1], g, dev)
    shift = _uniform(2 * b, -p.translate_px, p.translate_px, g, dev).view(b, 2)
    if extra is not None:
        shift = shift + extra.to(shift.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output normalised coords (u, v) -> input normalised coords; the output window
    # is patch_px / (input size) of the input, divided by the zoom.
    fx, fy = patch_px / w / zoom, patch_px / h / zoom
    a00, a01 = (cos * fx * sx).view(b, 1, 1), (-sin * fy).view(b, 1, 1)
    a10, a11 = (sin * fx * sx).view(b, 1, 1), (cos * fy).view(b, 1, 1)
    t0 = (shift[:, 0] * 2.0 / w).view(b, 1, 1)
    t1 = (shift[:, 1] * 2.0 / h).view(b, 1, 1)
    lin = (torch.arange(patch_px, device=dev, dtype=torch.float32) * 2 + 1) / patch_px - 1
    u, v = lin.view(1, 1, -1), lin.view(1, -1, 1)
    grid = torch.stack([a00 * u + a01 * v + t0, a10 * u + a11 * v + t1], dim=-1)
    if p.elastic_px > 0:
        n = max(2, int(p.elastic_grid))
        coarse = torch.randn(b, 2, n, n, generator=g, device=dev) * p.elastic_px
        field = F.interpolate(
            coarse, size=(patch_px, patch_px), mode="bilinear", align_corners=True
        )
        scale = _const("elastic", (2.0 / w, 2.0 / h), dev).view(1, 1, 1, 2)
        grid = grid + field.permute(0, 2, 3, 1) * scale
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _hue_matrix(turns: Tensor) -> Tensor:
    """Per-sample 3x3 RGB matrices rotating hue by ``turns`` (YIQ rotation)."""
    t = turns * 2 * math.pi
    c, s = torch.cos(t), torch.sin(t)
    dev = turns.device
    to_yiq = _const("to_yiq", _RGB_TO_YIQ, dev)
    to_rgb = _const("to_rgb", _YIQ_TO_RGB, dev)
    rot = torch.zeros(turns.shape[0], 3, 3, device=dev)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = c, -s
    rot[:, 2, 1], rot[:, 2, 2] = s, c
    return to_rgb.unsqueeze(0) @ rot @ to_yiq.unsqueeze(0)


def _mix(x: Tensor, m: Tensor) -> Tensor:
    """Per-pixel colour transform: ``out[:, i] = sum_j m[i, j] * x[:, j]``.

    ``m`` is ``(3, 3)`` or per-sample ``(B, 3, 3)``; ``x`` is ``(B, 3, H, W)``.
    """
    if m.ndim == 2:
        m = m.unsqueeze(0).expand(x.shape[0], 3, 3)
    if x.is_cuda:  # one batched matrix product (on the CPU, bmm with k = 3 is slow)
        b, _, h, w = x.shape
        return torch.bmm(m.to(x.dtype), x.reshape(b, 3, h * w)).view(b, 3, h, w)
    cols = [x[:, j : j + 1] for j in range(3)]
    rows = [
        m[:, i, 0].view(-1, 1, 1, 1) * cols[0]
        + m[:, i, 1].view(-1, 1, 1, 1) * cols[1]
        + m[:, i, 2].view(-1, 1, 1, 1) * cols[2]
        for i in range(3)
    ]
    return torch.cat(rows, dim=1)


def _blur(x: Tensor, sigma: Tensor, *, max_sigma: float) -> Tensor:
    """Separable Gaussian blur with a per-sample ``sigma (B,)`` (0: none), all ``<= max_sigma``.

    The kernel size comes from ``max_sigma`` (known on the host), so nothing waits
    for the device.
    """
    b, c, h, w = x.shape
    radius = max(1, math.ceil(3 * max_sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    sig = sigma.clamp_min(1e-3).view(b, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / sig) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # sigma ~ 0 -> a delta
    k = k.repeat_interleave(c, dim=0)  # (b * c, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def with_stain_jitter(params: AugmentParams, amplitude: float) -> AugmentParams:
    """``params`` with HED jitter of at least ``amplitude`` (scale, shift and stain-vector
    mix; a view's own larger jitter is kept). 0 returns ``params`` unchanged."""
    if amplitude <= 0:
        return params
    return replace(
        params,
        hed_scale=max(params.hed_scale, amplitude),
        hed_shift=max(params.hed_shift, amplitude),
        hed_mix=max(params.hed_mix, amplitude),
    )


def stain_jitter(
    x: Tensor, *, scale: float, shift: float, generator: torch.Generator, mix: float = 0.0
) -> Tensor:
    """HED jitter (Tellez et al. 2018): per sample, each stain's optical density
    times ``U[1 - scale, 1 + scale]`` plus ``U[-shift, shift]``; with ``mix``, each
    stain's amount also adds ``U[-mix, mix]`` times itself to each other stain (the
    stain vectors turn, not only their strengths).

    Parameters
    ----------
    x : Tensor
        ``(B, 3, H, W)`` float RGB in [0, 1].
    scale, shift : float
        Ranges of the per-stain factor and offset (OD units); 0, 0 and 0: ``x``
        unchanged.
    mix : float
        Range of the off-diagonal of the per-sample stain matrix.
    generator : torch.Generator
        On the device of ``x``.

    Returns
    -------
    Tensor
        ``(B, 3, H, W)`` float RGB in [0, 1].
    """
    if scale <= 0 and shift <= 0 and mix <= 0:
        return x
    b, dev = x.shape[0], x.device
    od = -torch.log((x * 255.0 + 1.0) / 256.0)
    hed = _mix(od, _const("hed_from_rgb", _HED_FROM_RGB, dev).T)
    a = _uniform(3 * b, 1 - scale, 1 + scale, generator, dev).view(b, 3, 1, 1)
    s = _uniform(3 * b, -shift, shift, generator, dev).view(b, 3, 1, 1)
    if mix > 0:  # (B, 3, 3): factors on the diagonal, leaks off it
        m = _uniform(9 * b, -mix, mix, generator, dev).view(b, 3, 3)
        m = m * (1 - torch.eye(3, device=dev)) + torch.diag_embed(a.view(b, 3))
        hed = _mix(hed, m) + s
    else:
        hed = hed * a + s
    od = _mix(hed, _const("rgb_from_hed", _RGB_FROM_HED, dev).T)
    return ((torch.exp(-od) * 256.0 - 1.0) / 255.0).clamp(0, 1)


def recolour(x: Tensor, *, params: AugmentParams, generator: torch.Generator) -> Tensor:
    """The colour and blur of a view, without its geometry (e.g. :data:`APPEARANCE`).

    Parameters
    ----------
    x : Tensor
        ``(B, 3, H, W)`` float RGB in [0, 1].
    params : AugmentParams
        Only the colour, HED and blur ranges are used.
    generator : torch.Generator
        On the device of ``x``.

    Returns
    -------
    Tensor
        ``(B, 3, H, W)`` float RGB in [0, 1].
    """
    return _colour(x.clamp(0, 1), params, generator)


def _colour(x: Tensor, p: AugmentParams, g: torch.Generator) -> Tensor:
    b = x.shape[0]
    dev = x.device
    x = stain_jitter(x, scale=p.hed_scale, shift=p.hed_shift, mix=p.hed_mix, generator=g)
    if p.brightness > 0:
        x = x * _uniform(b, 1 - p.brightness, 1 + p.brightness, g, dev).view(b, 1, 1, 1)
    if p.contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        f = _uniform(b, 1 - p.contrast, 1 + p.contrast, g, dev).view(b, 1, 1, 1)
        x = (x - mean) * f + mean
    if p.saturation > 0:
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        f = _uniform(b, 1 - p.saturation, 1 + p.saturation, g, dev).view(b, 1, 1, 1)
        x = (x - gray) * f + gray
    if p.hue > 0:
        m = _hue_matrix(_uniform(b, -p.hue, p.hue, g, dev))
        x = _mix(x, m)
    x = x.clamp(0, 1)
    if p.blur_prob > 0 and p.blur_sigma_px > 0:
        on = torch.rand(b, generator=g, device=dev) < p.blur_prob
        sigma = _uniform(b, 0.3, p.blur_sigma_px, g, dev) * on
        x = _blur(x, sigma, max_sigma=p.blur_sigma_px)
    return x


def augment_batch(
    patches: Tensor,
    *,
    patch_px: int,
    params: AugmentParams,
    generator: torch.Generator,
    shift_px: Tensor | None = None,
) -> Tensor:
    """Augment a batch of stored patches and crop them to the network's size.

    Parameters
    ----------
    patches : Tensor
        ``(B, 3, C, C)`` uint8 RGB with context (``C >= patch_px``), on the
        training device.
    patch_px : int
        Output side (pixels at the target resolution), e.g. 80.
    params : AugmentParams
        The view's ranges (:data:`WEAK`, :data:`STRONG`).
    generator : torch.Generator
        Random source on the same device as ``patches`` (seeded by the caller).
    shift_px : Tensor, optional
        ``(B, 2)`` extra per-sample shift ``(dx, dy)`` in pixels (e.g.
        :func:`matched_shifts`), added to the view's random translation.

    Returns
    -------
    Tensor
        ``(B, 3, patch_px, patch_px)`` float32 RGB in [0, 1] (not normalised).
    """
    if patches.ndim != 4 or patches.shape[1] != 3:
        raise ValueError(f"expected (B, 3, C, C) patches, got {tuple(patches.shape)}")
    if patches.shape[0] == 0:
        return torch.zeros(0, 3, patch_px, patch_px, device=patches.device)
    x = patches.float().div_(255.0)
    x = _geometry(x, patch_px, params, generator, shift_px)
    return _colour(x.clamp(0, 1), params, generator)
