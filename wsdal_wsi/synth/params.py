"""Settings of the synthetic-slide generator: content, appearance and annotation noise.

Two frozen dataclasses hold every setting a user can choose:

- :class:`SynthParams`: what a slide contains and how it looks (size, resolution,
  densities of mitoses and look-alikes, tumour fraction, slide-to-slide stain
  variation, focus blur, JPEG quality).
- :class:`AnnotationNoise`: how the simulated pathologist annotates (missed
  mitoses, false clicks on look-alikes, click offset, negative-class clicks,
  exhaustively annotated regions).

Both validate themselves on construction and raise
:class:`wsdal_wsi.errors.ConfigError` with the bad value, so a bad CLI option
becomes a clear message and exit code 2. All lengths are in µm and all
densities per mm² (of tissue); pixels appear only in ``width_px`` /
``height_px`` (level-0 pixels at ``mpp``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.units import check_mpp

__all__ = [
    "LOOKALIKE_CLASSES",
    "MAX_SIDE_PX",
    "MIN_SIDE_PX",
    "MITOSIS_CLASS",
    "REALISTIC_NOISE",
    "REGION_CLASS",
    "AnnotationNoise",
    "SynthParams",
    "parse_size",
]

#: Class name of mitotic figures (truth and clicks).
MITOSIS_CLASS = "Mitosis"
#: Truth class names of the look-alikes, by kind code (0, 1, 2).
LOOKALIKE_CLASSES = ("Apoptotic body", "Pyknotic nucleus", "Lymphocyte")
#: Class of the exhaustively annotated area annotations (matches ``Region*``).
REGION_CLASS = "Region"

#: Smallest and largest slide side the generator accepts (level-0 px).
MIN_SIDE_PX = 512
MAX_SIDE_PX = 262_144


def _check_range(name: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(float(value)) and lo <= float(value) <= hi
    if ok and integer:
        ok = float(value) == int(value)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} in [{lo:g}, {hi:g}], got {value!r}")


@dataclass(frozen=True)
class SynthParams:
    """What a synthetic slide contains and how it looks.

    Attributes
    ----------
    width_px, height_px : int
        Level-0 size of each slide in pixels, in [512, 262144].
    mpp : float
        Resolution in µm/px written to the TIFF resolution tags (0.25 = "40x").
        Objects keep their physical size in µm whatever the resolution.
    mitoses_per_mm2 : float
        Mean number of mitotic figures per mm² of tissue (they lie in tumour
        areas only, so their density there is this divided by
        ``tumour_fraction``), modulated by a hotspot field. Real breast
        cancer: about 1-30 per mm² of tumour; training sets use more.
    lookalikes_per_mm2 : float
        Mean number of look-alikes (apoptotic bodies, pyknotic nuclei,
        lymphocytes in clusters; each counted) per mm² of tissue.
    lookalike_mix : tuple of float
        Relative shares of apoptotic bodies, pyknotic nuclei and lymphocytes
        among the look-alikes (normalised).
    tissue_fraction : float
        Fraction of the slide area covered by tissue (the rest is white
        background), in [0.05, 0.95].
    tumour_fraction : float
        Fraction of the tissue that is tumour (dense epithelial nests); the
        rest is stroma, in [0.05, 1].
    hard_fraction : float
        Share of genuinely ambiguous cases: mitoses that are small
        prophase-like or atypical figures, and look-alikes that are borderline
        (elongated pyknotic nuclei, paired apoptotic fragments), in [0, 1].
    stain_variation : float
        Scale of the slide-to-slide variation of stain colour and intensity,
        focus blur and JPEG quality: 0 gives every slide the same look, 1 a
        realistic spread between labs and scanners, up to 2.
    stain_shift : float
        A shift of every slide's stain colour and intensity away from the
        reference (another lab or scanner; :func:`~wsdal_wsi.synth.stain.sample_look`):
        0 none, 1 outside the spread of ``stain_variation`` 1, up to 3. The same
        seed gives the same slides, only recoloured.
    blur_um : float
        Mean focus blur (Gaussian sigma, µm) applied to every slide; each
        slide varies around it with ``stain_variation``.
    jpeg_quality : int
        JPEG quality of the tiles (best slide; others lose up to 12 points
        with ``stain_variation`` 1), in [50, 100].
    tile_px : int
        TIFF tile side in pixels (multiple of 16).
    """

    width_px: int = 8192
    height_px: int = 8192
    mpp: float = 0.25
    mitoses_per_mm2: float = 20.0
    lookalikes_per_mm2: float = 20.0
    lookalike_mix: tuple[float, float, float] = (0.35, 0.30, 0.35)
    tissue_fraction: float = 0.6
    tumour_fraction: float = 0.6
    hard_fraction: float = 0.25
    stain_variation: float = 1.0
    stain_shift: float = 0.0
    blur_um: float = 0.15
    jpeg_quality: int = 90
    tile_px: int = 256

    def __post_init__(self) -> None:
        _check_range("width_px", self.width_px, MIN_SIDE_PX, MAX_SIDE_PX, integer=True)
        _check_range("height_px", self.height_px, MIN_SIDE_PX, MAX_SIDE_PX, integer=True)
        check_mpp(self.mpp, what="mpp")
        _check_range("mpp", self.mpp, 0.05, 2.0)
        _check_range("mitoses_per_mm2", self.mitoses_per_mm2, 0.0, 2000.0)
        _check_range("lookalikes_per_mm2", self.lookalikes_per_mm2, 0.0, 2000.0)
        mix = tuple(self.lookalike_mix)
        if len(mix) != 3:
            raise ConfigError(f"lookalike_mix must have 3 shares, got {self.lookalike_mix!r}")
        for share in mix:
            _check_range("lookalike_mix share", share, 0.0, 1e6)
        if sum(mix) <= 0:
            raise ConfigError(f"lookalike_mix must have a positive sum, got {self.lookalike_mix!r}")
        object.__setattr__(self, "lookalike_mix", tuple(float(s) for s in mix))
        _check_range("tissue_fraction", self.tissue_fraction, 0.05, 0.95)
        _check_range("tumour_fraction", self.tumour_fraction, 0.05, 1.0)
        _check_range("hard_fraction", self.hard_fraction, 0.0, 1.0)
        _check_range("stain_variation", self.stain_variation, 0.0, 2.0)
        _check_range("stain_shift", self.stain_shift, 0.0, 3.0)
        _check_range("blur_um", self.blur_um, 0.0, 2.0)
        _check_range("jpeg_quality", self.jpeg_quality, 50, 100, integer=True)
        _check_range("tile_px", self.tile_px, 64, 2048, integer=True)
        if self.tile_px % 16:
            raise ConfigError(f"tile_px must be a multiple of 16, got {self.tile_px!r}")
        object.__setattr__(self, "width_px", int(self.width_px))
        object.__setattr__(self, "height_px", int(self.height_px))
        object.__setattr__(self, "mpp", float(self.mpp))
        object.__setattr__(self, "jpeg_quality", int(self.jpeg_quality))
        object.__setattr__(self, "tile_px", int(self.tile_px))

    @property
    def size_px(self) -> tuple[int, int]:
        """Level-0 slide size ``(w, h)`` in pixels."""
        return (self.width_px, self.height_px)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (for the manifest and provenance)."""
        out = dataclasses.asdict(self)
        out["lookalike_mix"] = list(self.lookalike_mix)
        return out


@dataclass(frozen=True)
class AnnotationNoise:
    """How the simulated pathologist clicks (the noise injected into the labels).

    Attributes
    ----------
    missed_fraction : float
        Probability that a mitosis (inside the annotated area) gets no click.
    false_click_fraction : float
        Number of false ``Mitosis`` clicks placed on look-alikes, as a
        fraction of the true mitosis clicks (0.15 with 100 true clicks gives
        15 wrong ones). Borderline look-alikes are chosen three times as often.
    click_offset_um : float
        RMS distance (µm) of a click from the centre of the figure clicked
        (2-D Gaussian, capped at three times this value).
    negative_click_fraction : float
        Fraction of the look-alikes (not already falsely clicked) that get a
        click of class ``negative_class``; 0 writes no negative-class points.
    missed_as_negative_fraction : float
        Fraction of the missed mitoses that are clicked as ``negative_class``
        instead (a mitosis the pathologist took for a look-alike).
    negative_class : str
        Class name of the negative clicks (``Mitosis-like`` by default).
    regions : int
        Number of ``Region`` area annotations marking exhaustively annotated
        areas; when > 0, mitoses outside them are not clicked and no clicks
        fall outside them. 0: the whole slide is annotated.
    region_area_mm2 : float
        Target area of each region (mm²); smaller on slides too small for it.
    """

    missed_fraction: float = 0.15
    false_click_fraction: float = 0.15
    click_offset_um: float = 1.5
    negative_click_fraction: float = 0.0
    missed_as_negative_fraction: float = 0.0
    negative_class: str = "Mitosis-like"
    regions: int = 0
    region_area_mm2: float = 0.5

    def __post_init__(self) -> None:
        _check_range("missed_fraction", self.missed_fraction, 0.0, 1.0)
        _check_range("false_click_fraction", self.false_click_fraction, 0.0, 10.0)
        _check_range("click_offset_um", self.click_offset_um, 0.0, 20.0)
        _check_range("negative_click_fraction", self.negative_click_fraction, 0.0, 1.0)
        _check_range("missed_as_negative_fraction", self.missed_as_negative_fraction, 0.0, 1.0)
        _check_range("regions", self.regions, 0, 100, integer=True)
        _check_range("region_area_mm2", self.region_area_mm2, 0.001, 100.0)
        name = self.negative_class
        if not isinstance(name, str) or not name.strip() or ":" in name:
            raise ConfigError(
                f"negative_class must be a non-empty class name without ':', got {name!r}"
            )
        object.__setattr__(self, "regions", int(self.regions))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return dataclasses.asdict(self)


#: Realistic pathologist noise, the accuracy benchmark's and the demo's: 15 % of the
#: mitoses missed, false ``Mitosis`` clicks worth 15 % of the true ones, clicks 1.5 µm
#: off-centre, ``Mitosis-like`` clicks on 20 % of the other look-alikes.
REALISTIC_NOISE = AnnotationNoise(
    missed_fraction=0.15,
    false_click_fraction=0.15,
    click_offset_um=1.5,
    negative_click_fraction=0.2,
)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*[xX×]\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """Parse a slide size ``"WxH"`` (level-0 px; ``k`` = 1000) into ``(w, h)``.

    Examples: ``"2048x1536"``, ``"20kx20k"``, ``"40000X30000"``.

    Raises
    ------
    ConfigError
        If the text is not ``WxH`` or a side is outside [512, 262144] px.
    """
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ConfigError(f"size must be WIDTHxHEIGHT in pixels (e.g. 20000x20000), got {text!r}")
    w = float(match.group(1)) * (1000 if match.group(2) else 1)
    h = float(match.group(3)) * (1000 if match.group(4) else 1)
    if w != int(w) or h != int(h):
        raise ConfigError(f"size must be whole pixels, got {text!r}")
    for side in (w, h):
        if not MIN_SIDE_PX <= side <= MAX_SIDE_PX:
            raise ConfigError(
                f"size sides must be in [{MIN_SIDE_PX}, {MAX_SIDE_PX}] px, got {text!r}"
            )
    return int(w), int(h)
