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
        pytest.skip(
            f"real test data not found at {path} (set WSDAL_SHARED_DATA or --shared-data)"
        )
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
