"""Procedural sprites of the special objects: mitotic figures and their look-alikes.

Every special object (one row of :class:`wsdal_wsi.synth.layout.Objects`) is
drawn from its own random stream, so it looks the same in every chunk and
worker. Sizes follow breast cancer at any resolution (µm converted with
``mpp``):

Mitotic figures (no nuclear membrane, dark ragged "hairy" chromatin, often a
clear rounded cell around them):

- prophase: a round 8-11 µm area of condensed chromatin threads and clumps;
- metaphase edge-on: a dark plate 8-12 µm long and 2-3 µm thick, slightly bent;
- metaphase face-on: a ring / rosette 6-8 µm across with a paler centre;
- anaphase: two parallel bowed plates 4-8 µm apart;
- telophase: two compact masses 8-12 µm apart in a two-lobed cell with an
  eosinophilic cleavage furrow;
- ambiguous ones: multipolar (Y-shaped) and lagging-chromosome atypical
  figures, small early prophase figures that resemble a dark nucleus.

Look-alikes (as dark as mitoses, different in shape, edge and context):

- apoptotic body: strongly eosinophilic shrunken cell with one or several
  smooth round very dark fragments, a clear retraction halo; borderline: two
  fragments apart like a telophase;
- pyknotic nucleus: small (4-7 µm) round smooth homogeneous very dark nucleus
  with a sharp edge; borderline: elongated (plate-like) or crenated;
- lymphocyte: small (5-7 µm) round dense nucleus with coarse chromatin and a
  thin pale rim, in clusters; borderline: larger, irregular, clumpier.

:func:`render_object` returns a dense ``(3, S, S)`` float32 sprite of
``(h, e, m)`` (see :mod:`wsdal_wsi.synth.sprites`), centred on the truth point.
"""

from __future__ import annotations

import math

import numpy as np

from wsdal_wsi.synth.shapes import (
    capsule_distance,
    grid,
    noise2d,
    rotate,
    soft_inside,
    wobbly_radius,
)

__all__ = ["SPRITE_RADIUS_UM", "render_object"]

#: Half-size (µm) of the sprite of each kind (figure plus halo), by kind code.
SPRITE_RADIUS_UM = (11.0, 9.0, 7.5, 6.0)
#: Peak haematoxylin concentration of condensed chromatin (before the slide's strength).
CHROMATIN_H = 1.05


class _Canvas:
    """Sprite canvas in µm units: coordinates ``(u, v)`` rotated to the object's angle."""

    def __init__(self, mpp: float, angle: float, radius_um: float) -> None:
        self.mpp = mpp
        self.px = 1.0 / mpp  # px per µm
        size = 2 * math.ceil(radius_um * self.px) + 1
        yy, xx = grid(size)
        self.size = size
        self.x = xx * np.float32(mpp)  # µm
        self.y = yy * np.float32(mpp)
        self.u, self.v = rotate(self.x, self.y, np.float32(angle))
        self.h = np.zeros((size, size), dtype=np.float32)
        self.e = np.zeros((size, size), dtype=np.float32)
        self.m = np.zeros((size, size), dtype=np.float32)

    def noise(self, rng: np.random.Generator, sigma_um: float) -> np.ndarray:
        return noise2d(rng, (self.size, self.size), sigma_um * self.px)

    def stack(self) -> np.ndarray:
        return np.stack([self.h, self.e, np.clip(self.m, 0.0, 1.0)]).astype(np.float32)


def _hairy(
    c: _Canvas,
    rng: np.random.Generator,
    dist_um: np.ndarray,
    *,
    hair_um: float,
    edge_um: float = 0.12,
) -> np.ndarray:
    """Soft mask of ``dist_um < 0`` with ragged, hairy protrusions up to ``hair_um``.

    Protrusions only grow from the edge (they fade out ``1.5 * hair_um``
    away from it), so no loose specks float around the figure.
    """
    spikes = np.maximum(c.noise(rng, 0.25), 0.0) ** 1.3
    lumps = c.noise(rng, 0.6)
    reach = np.clip(1.0 - dist_um / (1.5 * hair_um + 1e-6), 0.0, 1.0)
    d = dist_um - (hair_um * spikes + 0.3 * hair_um * lumps) * reach
    return soft_inside(d * c.px, edge_um * c.px)


def _chromatin(
    c: _Canvas, rng: np.random.Generator, mask: np.ndarray, dark: float, *, clump: float = 0.22
) -> None:
    """Add condensed chromatin (dark, clumpy) where ``mask``; replace the background."""
    tex = 1.0 + clump * c.noise(rng, 0.3) + 0.5 * clump * c.noise(rng, 0.8)
    c.h += mask * np.float32(CHROMATIN_H * dark) * np.clip(tex, 0.5, 1.6)
    c.m += 0.85 * mask


def _cell(
    c: _Canvas,
    rng: np.random.Generator,
    dist_um: np.ndarray,
    *,
    clear: float,
    eosin: float,
    rim: float = 0.06,
) -> None:
    """A rounded cell body: clears the background by ``clear``, adds pale cytoplasm and a rim."""
    body = soft_inside(dist_um * c.px, 0.8 * c.px)
    c.m += clear * body
    c.e += eosin * body * (1.0 + 0.25 * c.noise(rng, 0.6))
    c.e += rim * np.exp(-((dist_um / 0.35) ** 2))


def _mitotic_cell(
    c: _Canvas, rng: np.random.Generator, a_um: float, b_um: float, shift_u: float = 0.0
) -> None:
    """The rounded mitotic cell, with a clear halo in most cases."""
    if rng.uniform() < 0.65:
        clear, eosin = rng.uniform(0.35, 0.75), rng.uniform(0.04, 0.12)
    else:
        clear, eosin = rng.uniform(0.05, 0.3), rng.uniform(0.08, 0.18)
    rho = np.sqrt(((c.u - shift_u) / a_um) ** 2 + (c.v / b_um) ** 2)
    phi = np.arctan2(c.v, c.u)
    rho = rho / wobbly_radius(rng, phi, 0.06)
    _cell(c, rng, (rho - 1.0) * min(a_um, b_um), clear=clear, eosin=eosin)


def _plate(c: _Canvas, u0: float, half_len: float, thick: float, bend: float) -> np.ndarray:
    """Signed distance (µm) to a plate centred at ``u = u0``, long axis along v, bowed."""
    uu = c.u - u0 - bend * (c.v * c.v)
    return capsule_distance(c.v, uu, half_len, thick / 2.0)


def _prophase(c: _Canvas, rng: np.random.Generator, variant: int, s: float, dark: float) -> None:
    """Prophase (variant 0) or small early ambiguous prophase (variant 7)."""
    r = (rng.uniform(4.0, 5.5) if variant == 0 else rng.uniform(2.9, 3.8)) * s
    rho = np.sqrt(c.u**2 + (c.v / rng.uniform(0.8, 1.0)) ** 2)
    area = _hairy(c, rng, rho - r, hair_um=0.35)
    n = c.noise(rng, 0.28)
    threads = np.exp(-((n / 0.45) ** 2))  # worm-like zero-crossings
    clumps = np.maximum(c.noise(rng, 0.45), 0.0)
    if variant == 0:
        dens = 0.25 + 0.65 * threads + 0.35 * clumps
    else:
        dens = 0.45 + 0.4 * threads + 0.25 * clumps
    c.h += area * np.float32(CHROMATIN_H * dark) * np.clip(dens, 0, 1.3)
    c.m += 0.85 * area
    if variant == 7 and rng.uniform() < 0.5:  # remnant of a membrane
        c.h += 0.25 * dark * np.exp(-(((rho - r) / 0.3) ** 2))
    _mitotic_cell(c, rng, r + rng.uniform(2.0, 3.5), r + rng.uniform(1.5, 3.0))


def _metaphase_edge_on(c: _Canvas, rng: np.random.Generator, s: float, dark: float) -> None:
    """Metaphase seen edge-on: a slightly bent dark plate."""
    half = rng.uniform(4.0, 6.0) * s
    thick = rng.uniform(2.0, 3.0) * s
    d = _plate(c, 0.0, half - thick / 2, thick, rng.normal(0, 0.02))
    _chromatin(c, rng, _hairy(c, rng, d, hair_um=0.7), dark)
    _mitotic_cell(c, rng, rng.uniform(5.0, 7.0) * s, half + rng.uniform(1.5, 3.0))


def _metaphase_face_on(c: _Canvas, rng: np.random.Generator, s: float, dark: float) -> None:
    """Metaphase seen face-on: a ring / rosette with a paler centre."""
    radius = rng.uniform(2.7, 3.7) * s
    hw = rng.uniform(0.9, 1.3) * s
    r = np.sqrt(c.u**2 + c.v**2)
    phi = np.arctan2(c.v, c.u)
    k = int(rng.integers(6, 11))
    rr = radius * (1.0 + 0.12 * np.cos(k * phi + rng.uniform(0, 6.3)))
    ring = _hairy(c, rng, np.abs(r - rr) - hw, hair_um=0.5)
    core = soft_inside((r - (radius - hw)) * c.px, 0.3 * c.px)
    _chromatin(c, rng, np.maximum(ring, 0.3 * core), dark)
    _mitotic_cell(c, rng, radius + rng.uniform(3.0, 4.5), radius + rng.uniform(3.0, 4.5))


def _anaphase(c: _Canvas, rng: np.random.Generator, variant: int, s: float, dark: float) -> None:
    """Anaphase (variant 3) or atypical anaphase with lagging chromosomes (variant 6)."""
    sep = rng.uniform(4.0, 8.0) * s
    half = rng.uniform(3.0, 4.5) * s
    thick = rng.uniform(1.6, 2.4) * s
    bend = rng.uniform(0.02, 0.07)
    d1 = _plate(c, -sep / 2, half - thick / 2, thick, -bend)
    scale2 = rng.uniform(0.55, 0.85) if variant == 6 and rng.uniform() < 0.5 else 1.0
    d2 = _plate(c, sep / 2, (half - thick / 2) * scale2, thick * scale2, bend)
    mask = np.maximum(_hairy(c, rng, d1, hair_um=0.6), _hairy(c, rng, d2, hair_um=0.6))
    if variant == 6:
        for _ in range(int(rng.integers(1, 3))):
            pu, pv = rng.uniform(-sep / 4, sep / 4), rng.uniform(-half / 2, half / 2)
            lag = np.sqrt((c.u - pu) ** 2 + (c.v - pv) ** 2) - rng.uniform(0.5, 0.9)
            mask = np.maximum(mask, _hairy(c, rng, lag, hair_um=0.3))
    _chromatin(c, rng, mask, dark)
    _mitotic_cell(c, rng, sep / 2 + rng.uniform(3.0, 4.5), half + rng.uniform(2.0, 3.0))


def _telophase(c: _Canvas, rng: np.random.Generator, s: float, dark: float) -> None:
    """Telophase: two compact masses in a two-lobed cell with a cleavage furrow."""
    sep = rng.uniform(8.0, 11.5) * s
    a, b = rng.uniform(1.3, 2.0) * s, rng.uniform(2.4, 3.4) * s
    mask = np.zeros_like(c.h)
    for sign in (-1.0, 1.0):
        rho = np.sqrt(((c.u - sign * sep / 2) / a) ** 2 + (c.v / b) ** 2)
        mask = np.maximum(mask, _hairy(c, rng, (rho - 1.0) * a, hair_um=0.4))
    _chromatin(c, rng, mask, dark, clump=0.15)
    lobe_r = rng.uniform(4.2, 5.5) * s
    d_cell = (
        np.minimum(np.sqrt((c.u + sep / 2) ** 2 + c.v**2), np.sqrt((c.u - sep / 2) ** 2 + c.v**2))
        - lobe_r
    )
    _cell(c, rng, d_cell, clear=rng.uniform(0.45, 0.8), eosin=rng.uniform(0.04, 0.12))
    furrow = np.exp(-((c.u / 0.45) ** 2)) * soft_inside((np.abs(c.v) - lobe_r * 0.8) * c.px, c.px)
    c.e += rng.uniform(0.25, 0.45) * furrow
    c.m += 0.3 * furrow


def _multipolar(c: _Canvas, rng: np.random.Generator, s: float, dark: float) -> None:
    """Atypical multipolar figure: a Y of three arms."""
    base = rng.uniform(0, 2 * np.pi)
    dist = np.full_like(c.h, 1e3)
    for k in range(3):
        ang = base + k * 2 * np.pi / 3 + rng.normal(0, 0.25)
        length = rng.uniform(3.0, 5.0) * s
        au, av = rotate(c.u, c.v, np.float32(ang))
        dist = np.minimum(
            dist, capsule_distance(au - length / 2, av, length / 2, rng.uniform(0.8, 1.2) * s)
        )
    _chromatin(c, rng, _hairy(c, rng, dist, hair_um=0.6), dark)
    _mitotic_cell(c, rng, rng.uniform(7.0, 8.5) * s, rng.uniform(7.0, 8.5) * s)


def _mitosis(c: _Canvas, rng: np.random.Generator, variant: int, size: float, dark: float) -> None:
    """Draw a mitotic figure of phase ``variant`` (0-7) onto ``c``."""
    if variant in (0, 7):  # prophase; 7: small, early, ambiguous
        _prophase(c, rng, variant, size, dark)
    elif variant == 1:  # metaphase, edge-on plate
        _metaphase_edge_on(c, rng, size, dark)
    elif variant == 2:  # metaphase, face-on ring / rosette
        _metaphase_face_on(c, rng, size, dark)
    elif variant in (3, 6):  # anaphase; 6: with lagging chromosomes / asymmetric
        _anaphase(c, rng, variant, size, dark)
    elif variant == 4:  # telophase: two compact masses, two-lobed cell, cleavage furrow
        _telophase(c, rng, size, dark)
    elif variant == 5:  # atypical multipolar: a Y of three arms
        _multipolar(c, rng, size, dark)
    else:
        raise ValueError(f"unknown mitosis variant {variant}")


def _fragment(
    c: _Canvas,
    rng: np.random.Generator,
    pu: float,
    pv: float,
    r: float,
    dark: float,
    *,
    elong: float = 1.0,
) -> None:
    rho = np.sqrt(((c.u - pu) / (r * elong)) ** 2 + ((c.v - pv) / r) ** 2)
    mask = soft_inside((rho - 1.0) * r * c.px, 0.08 * c.px)
    frag = mask * np.float32(CHROMATIN_H * 1.05 * dark) * (1.0 + 0.04 * c.noise(rng, 0.5))
    np.maximum(c.h, frag + 0.04, out=c.h, where=mask > 0.02)  # fragments do not stack
    c.m += mask


def _apoptotic(
    c: _Canvas, rng: np.random.Generator, variant: int, size: float, dark: float
) -> None:
    s = size
    if variant == 2:  # borderline: two fragments apart, like a telophase
        rb_u, rb_v = rng.uniform(4.5, 6.0) * s, rng.uniform(3.0, 4.0) * s
    else:
        rb_u = rb_v = rng.uniform(2.8, 4.6) * s
    rho = np.sqrt((c.u / rb_u) ** 2 + (c.v / rb_v) ** 2) / wobbly_radius(
        rng, np.arctan2(c.v, c.u), rng.uniform(0.04, 0.14), harmonics=6
    )
    d_body = (rho - 1.0) * min(rb_u, rb_v)
    body = soft_inside(d_body * c.px, rng.uniform(0.2, 0.5) * c.px)
    # Retraction halo: a clear space around the shrunken cell, in most but not all.
    if rng.uniform() < 0.7:
        halo = soft_inside((d_body - rng.uniform(0.4, 1.5)) * c.px, 0.5 * c.px) - body
        c.m += rng.uniform(0.25, 0.75) * np.clip(halo, 0, 1)
    c.m += 0.95 * body
    # Dense eosinophilic cytoplasm, mottled.
    c.e += rng.uniform(0.45, 0.85) * body * np.clip(1.0 + 0.2 * c.noise(rng, 0.6), 0.5, 1.5)
    c.h += rng.uniform(0.02, 0.1) * body
    if variant == 0:  # one fragment, often off-centre (crescent-like nuclear remnant)
        off = rng.uniform(0.0, 0.45) * min(rb_u, rb_v)
        t = rng.uniform(0, 2 * np.pi)
        _fragment(
            c,
            rng,
            off * math.cos(t),
            off * math.sin(t),
            rng.uniform(1.2, 2.3) * s,
            dark,
            elong=rng.uniform(0.7, 1.3),
        )
    elif variant == 1:
        n = int(rng.integers(2, 5))
        for _ in range(n):
            t, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.55) * min(rb_u, rb_v)
            _fragment(c, rng, rr * math.cos(t), rr * math.sin(t), rng.uniform(0.8, 1.5) * s, dark)
    else:
        sep = rng.uniform(4.0, 7.0) * s
        for sign in (-1.0, 1.0):
            _fragment(
                c,
                rng,
                sign * sep / 2,
                rng.normal(0, 0.3),
                rng.uniform(1.2, 1.9) * s,
                dark,
                elong=rng.uniform(0.6, 0.9),
            )


def _pyknotic(c: _Canvas, rng: np.random.Generator, variant: int, size: float, dark: float) -> None:
    s = size
    if variant == 0:
        a = b = rng.uniform(2.0, 3.4) * s
        amount = 0.03
    elif variant == 1:  # elongated, plate-like but smooth and homogeneous
        a, b = rng.uniform(3.5, 5.0) * s, rng.uniform(1.2, 1.8) * s
        amount = 0.03
    else:  # crenated / irregular
        a = b = rng.uniform(2.4, 3.6) * s
        amount = 0.18
    rho = np.sqrt((c.u / a) ** 2 + (c.v / b) ** 2)
    rho = rho / wobbly_radius(rng, np.arctan2(c.v / b, c.u / a), amount, harmonics=7)
    mask = soft_inside((rho - 1.0) * min(a, b) * c.px, 0.07 * c.px)
    c.h += mask * np.float32(CHROMATIN_H * 1.05 * dark) * (1.0 + 0.04 * c.noise(rng, 0.5))
    c.m += 0.95 * mask
    if rng.uniform() < 0.35:  # a rim of eosinophilic cytoplasm, a shrunken cell
        cyto = soft_inside((rho - rng.uniform(1.5, 2.1)) * min(a, b) * c.px, 0.25 * c.px)
        c.e += rng.uniform(0.15, 0.4) * (cyto - mask).clip(0, 1)
        c.m += 0.5 * (cyto - mask).clip(0, 1)


def _lymphocyte(
    c: _Canvas, rng: np.random.Generator, variant: int, size: float, dark: float
) -> None:
    s = size
    if variant == 0:
        r, amount, clump = rng.uniform(2.4, 3.2) * s, 0.04, 0.18
    else:  # activated / borderline: larger, irregular, clumpier
        r, amount, clump = rng.uniform(3.2, 4.0) * s, 0.14, 0.35
    rho = np.sqrt(c.u**2 + (c.v / rng.uniform(0.85, 1.0)) ** 2) / r
    rho = rho / wobbly_radius(rng, np.arctan2(c.v, c.u), amount)
    mask = soft_inside((rho - 1.0) * r * c.px, 0.12 * c.px)
    tex = 1.0 + clump * c.noise(rng, 0.35)
    rim = 0.15 * np.exp(-(((rho - 0.95) / 0.08) ** 2))
    c.h += (mask * np.clip(tex, 0.5, 1.4) * 0.92 + rim) * np.float32(CHROMATIN_H * dark)
    c.m += 0.9 * mask
    pale = soft_inside((rho - 1.25) * r * c.px, 0.2 * c.px) - mask
    c.m += 0.35 * pale.clip(0, 1)
    c.e += 0.06 * pale.clip(0, 1)


def render_object(
    kind: int,
    variant: int,
    *,
    angle: float,
    size: float,
    dark: float,
    rng: np.random.Generator,
    mpp: float,
) -> np.ndarray:
    """Draw one special object.

    Parameters
    ----------
    kind : int
        0 mitosis, 1 apoptotic body, 2 pyknotic nucleus, 3 lymphocyte.
    variant : int
        Phase (mitosis, see :data:`wsdal_wsi.synth.layout.MITOSIS_PHASES`) or
        variant (look-alikes, :data:`wsdal_wsi.synth.layout.VARIANT_NAMES`).
    angle : float
        Orientation (rad).
    size : float
        Size factor (about 1).
    dark : float
        Darkness factor (about 1).
    rng : numpy.random.Generator
        The object's own stream.
    mpp : float
        Resolution (µm/px).

    Returns
    -------
    numpy.ndarray
        ``(3, S, S)`` float32 ``(h, e, m)`` sprite,
        ``S = 2 * ceil(SPRITE_RADIUS_UM[kind] / mpp) + 1``.
    """
    c = _Canvas(mpp, angle, SPRITE_RADIUS_UM[kind] if 0 <= kind < 4 else 11.0)
    if kind == 0:
        _mitosis(c, rng, variant, size, dark)
    elif kind == 1:
        _apoptotic(c, rng, variant, size, dark)
    elif kind == 2:
        _pyknotic(c, rng, variant, size, dark)
    elif kind == 3:
        _lymphocyte(c, rng, variant, size, dark)
    else:
        raise ValueError(f"unknown object kind {kind}")
    return c.stack()
