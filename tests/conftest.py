"""Fixtures shared by the whole test suite.

Real data (``../shared/data`` beside the project, or ``$WSDAL_SHARED_DATA``, or
``--shared-data DIR``) is optional: tests that need it are skipped, with the
reason, where it is absent. Everything else is generated in ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shared-data",
        default=os.environ.get("WSDAL_SHARED_DATA", str(DEFAULT_SHARED_DATA)),
        help="folder with the real test data (slides/, annotations/, real-mitoses/)",
    )


@pytest.fixture(scope="session")
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The real-data folder; skips the test (saying why) when it is absent."""
    path = Path(request.config.getoption("--shared-data"))
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path} (set WSDAL_SHARED_DATA or --shared-data)")
    return path


@pytest.fixture(scope="session")
def cmu1_path(shared_data: Path) -> Path:
    """OpenSlide's CMU-1-Small-Region Aperio SVS (0.499 µm/px, one level)."""
    path = shared_data / "slides" / "cmu-1-small-region.svs"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def tcga_path(shared_data: Path) -> Path:
    """A reduced TCGA Aperio SVS with no resolution in the file (2 levels, JPEG 2000)."""
    path = shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def midog_json_path(shared_data: Path) -> Path:
    """The MIDOG++ COCO annotation database."""
    path = shared_data / "annotations" / "MIDOGpp.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def real_mitoses_dir(shared_data: Path) -> Path:
    """746 real H&E crops (128 x 128 px, about 0.25 µm/px), each centred on a mitosis."""
    path = shared_data / "real-mitoses" / "AtNorM-Br"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


# --- Synthetic slides (wsdal_wsi.synth) --------------------------------------------------------
# Made once per test session in a temporary folder; deterministic (fixed seeds).

#: Seeds of the synthetic fixtures (change them and every synthetic number in the tests moves).
SYNTH_SLIDE_SEED = 20261127
SYNTH_DATASET_SEED = 1127


@pytest.fixture(scope="session")
def synth_slide(tmp_path_factory: pytest.TempPathFactory):
    """One small synthetic slide: a :class:`wsdal_wsi.synth.SynthSlide` record.

    ``synth_slide.slide_path``: a 2048 x 1536 px pyramidal tiled JPEG BigTIFF at
    0.25 µm/px (3 levels: 2048, 1024, 512 px wide; OpenSlide vendor
    ``generic-tiff``), about 70 % tissue with tumour nests and stroma, holding
    about 10-20 mitoses and as many look-alikes (apoptotic bodies, pyknotic nuclei,
    lymphocytes). Beside it, ``annotation_path`` (``<name>.geojson``): the
    clicks of a pathologist with noise: 15 % of mitoses missed, false
    ``Mitosis`` clicks on look-alikes worth 15 % of the true clicks, clicks
    1.5 µm off centre (RMS), ``Mitosis-like`` clicks on 30 % of the other
    look-alikes, and one ``Region`` polygon (about 0.12 mm²): mitoses outside it
    are not clicked. ``truth_path``: every object (classes ``Mitosis``,
    ``Apoptotic body``, ``Pyknotic nucleus``, ``Lymphocyte``); ``noise_path``:
    the injected noise; ``counts``: the numbers. Seed :data:`SYNTH_SLIDE_SEED`.
    """
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_slide

    out = tmp_path_factory.mktemp("synth_slide")
    params = SynthParams(
        width_px=2048,
        height_px=1536,
        mpp=0.25,
        mitoses_per_mm2=100.0,
        lookalikes_per_mm2=100.0,
        tissue_fraction=0.7,
    )
    noise = AnnotationNoise(
        missed_fraction=0.15,
        false_click_fraction=0.15,
        click_offset_um=1.5,
        negative_click_fraction=0.3,
        regions=1,
        region_area_mm2=0.12,
    )
    return generate_slide(
        out, name="synth_slide", params=params, noise=noise, seed=SYNTH_SLIDE_SEED
    )


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic dataset folder: a :class:`wsdal_wsi.synth.SynthDataset`.

    ``synth_dataset.out_dir`` is a slide-folder source (``synth_000.tiff`` ..
    ``synth_003.tiff``, each with its ``.geojson`` annotations beside it, plus
    ``truth/`` and ``synth.json``); ``synth_dataset.slides`` the four
    :class:`~wsdal_wsi.synth.SynthSlide` records. Each slide: 2048 x 2048 px at
    0.25 µm/px, 3 levels, 70 % tissue, about 30-60 mitoses and as many
    look-alikes (dense enough for a tiny training run), every slide with its own
    stain, blur and JPEG quality. Annotation noise as a benchmark would set it:
    15 % of mitoses missed, false clicks on look-alikes worth 15 % of the true
    clicks, 1.5 µm RMS click offset, ``Mitosis-like`` clicks on 20 % of the other
    look-alikes, no regions (the whole slide is annotated). Seed
    :data:`SYNTH_DATASET_SEED`.
    """
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset, load_dataset

    out = tmp_path_factory.mktemp("synth_dataset")
    params = SynthParams(
        width_px=2048,
        height_px=2048,
        mpp=0.25,
        mitoses_per_mm2=220.0,
        lookalikes_per_mm2=220.0,
        tissue_fraction=0.7,
    )
    noise = AnnotationNoise(
        missed_fraction=0.15,
        false_click_fraction=0.15,
        click_offset_um=1.5,
        negative_click_fraction=0.2,
    )
    generate_dataset(out, n_slides=4, params=params, noise=noise, seed=SYNTH_DATASET_SEED)
    return load_dataset(out)
