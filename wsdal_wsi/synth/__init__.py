"""Synthetic H&E whole-slide images with known truth and noisy pathologist annotations.

The test bed of wsdal-wsi: realistic pyramidal slides (tumour nests, stroma,
mitotic figures in every phase and the look-alikes that fool a darkness
detector), their ground truth, and the clicks a pathologist would make with a
settable amount of noise. See :mod:`wsdal_wsi.synth.dataset` for the folder
layout.

Public API::

    generate_dataset(out_dir, *, n_slides, params, noise, seed, workers=1, progress=None)
        -> list[SynthSlide]
    generate_slide(out_dir, *, name, params, noise, seed, workers=1, progress=None) -> SynthSlide
    load_dataset(out_dir) -> SynthDataset
    SynthParams, AnnotationNoise, parse_size
"""

from wsdal_wsi.synth.dataset import (
    MANIFEST_NAME,
    SynthDataset,
    SynthSlide,
    generate_dataset,
    generate_slide,
    load_dataset,
    slide_seed,
)
from wsdal_wsi.synth.params import (
    LOOKALIKE_CLASSES,
    MITOSIS_CLASS,
    REALISTIC_NOISE,
    REGION_CLASS,
    AnnotationNoise,
    SynthParams,
    parse_size,
)

__all__ = [
    "LOOKALIKE_CLASSES",
    "MANIFEST_NAME",
    "MITOSIS_CLASS",
    "REALISTIC_NOISE",
    "REGION_CLASS",
    "AnnotationNoise",
    "SynthDataset",
    "SynthParams",
    "SynthSlide",
    "generate_dataset",
    "generate_slide",
    "load_dataset",
    "parse_size",
    "slide_seed",
]
