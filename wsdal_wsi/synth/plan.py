"""The plan of one synthetic slide: its layout, its look, and the objects with known truth.

:func:`make_plan` draws, from the slide's seed alone, the coarse fields
(:mod:`wsdal_wsi.synth.layout`), the slide's look (stain vectors, strengths,
blur, JPEG quality; :mod:`wsdal_wsi.synth.stain`) and every special object
(:mod:`wsdal_wsi.synth.placement`): the ground truth. Ordinary nuclei are not
part of the plan: they are drawn per block when a chunk is rendered
(:mod:`wsdal_wsi.synth.nuclei`), so memory does not grow with the slide. The
plan is small (fields on an 8 µm grid, objects as arrays) and is pickled once
per worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsdal_wsi.synth.fields import CoarseFields, TextureBank
from wsdal_wsi.synth.layout import make_fields
from wsdal_wsi.synth.objects import Objects, slide_rng
from wsdal_wsi.synth.params import SynthParams
from wsdal_wsi.synth.placement import place_objects
from wsdal_wsi.synth.stain import SlideLook, sample_look
from wsdal_wsi.units import px2_to_mm2

__all__ = ["SlidePlan", "make_plan"]


@dataclass
class SlidePlan:
    """Everything needed to render one slide, independent of chunking.

    Attributes
    ----------
    name : str
        Slide name (file stem).
    seed : int
        The slide's seed.
    params : SynthParams
        Content settings.
    look : SlideLook
        This slide's appearance.
    fields : CoarseFields
        Border-defining fields (tissue, hole, tumour; thresholds folded in:
        a border is where a field is 0).
    slow : CoarseFields
        Slowly varying fields (hotspots, stain strength, fibre orientation,
        cellularity) on a coarser grid.
    objects : Objects
        Every mitosis (first) and look-alike (after): the ground truth.
    tissue_area_mm2 : float
        Tissue area (holes excluded) estimated on the coarse grid.
    tumour_area_mm2 : float
        Tumour nest area estimated on the coarse grid.
    """

    name: str
    seed: int
    params: SynthParams
    look: SlideLook
    fields: CoarseFields
    slow: CoarseFields
    objects: Objects
    tissue_area_mm2: float
    tumour_area_mm2: float

    @property
    def mpp(self) -> float:
        """Resolution (µm/px)."""
        return self.params.mpp


def make_plan(params: SynthParams, *, seed: int, name: str, bank: TextureBank) -> SlidePlan:
    """Draw the plan of one slide from its seed.

    Parameters
    ----------
    params : SynthParams
        Content settings (size, resolution, densities...).
    seed : int
        The slide's seed: the same seed and params give the same plan.
    name : str
        Slide name.
    bank : TextureBank
        The slide's textures (:func:`make_bank`), needed to place objects
        consistently with the rendered borders.
    """
    fields, slow, tissue_frac, tumour_frac = make_fields(params, seed)
    area_mm2 = px2_to_mm2(params.width_px * params.height_px, params.mpp)
    tissue_mm2 = tissue_frac * area_mm2
    look = sample_look(
        slide_rng(seed, "look"),
        stain_variation=params.stain_variation,
        stain_shift=params.stain_shift,
        blur_um=params.blur_um,
        jpeg_quality=params.jpeg_quality,
    )
    objects = place_objects(params, seed, fields, slow, bank, tissue_mm2)
    return SlidePlan(
        name=name,
        seed=int(seed),
        params=params,
        look=look,
        fields=fields,
        slow=slow,
        objects=objects,
        tissue_area_mm2=tissue_mm2,
        tumour_area_mm2=tumour_frac * area_mm2,
    )
