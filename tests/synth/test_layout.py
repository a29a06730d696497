from __future__ import annotations

import numpy as np
import pytest

from wsdal_wsi.synth.layout import make_bank, make_fields, tissue_value, tumour_value
from wsdal_wsi.synth.params import SynthParams


@pytest.mark.parametrize(("tissue", "tumour"), [(0.6, 0.6), (0.85, 0.3)])
def test_tissue_and_tumour_fractions_follow_the_settings(tissue, tumour):
    params = SynthParams(
        width_px=4096, height_px=3072, tissue_fraction=tissue, tumour_fraction=tumour
    )
    _, _, tissue_frac, tumour_frac = make_fields(params, seed=3)
    assert tissue_frac == pytest.approx(tissue, abs=0.08)
    assert tumour_frac / tissue_frac == pytest.approx(tumour, abs=0.12)


def test_fields_are_seeded_and_borders_are_background():
    params = SynthParams(width_px=4096, height_px=4096)
    a, slow_a, *_ = make_fields(params, seed=1)
    b, slow_b, *_ = make_fields(params, seed=1)
    c, *_ = make_fields(params, seed=2)
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)
    assert np.array_equal(slow_a.data, slow_b.data)
    assert slow_a.cell_px == 4 * a.cell_px and a.names == ("tissue", "hole", "tumour")
    bank = make_bank(params, 1)
    rng = np.random.default_rng(0)
    edge_pts = np.column_stack([rng.uniform(0, 4096, 200), rng.uniform(0, 20, 200)])
    centre = np.column_stack([rng.uniform(1000, 3000, 2000), rng.uniform(1000, 3000, 2000)])
    # Tissue is pushed away from the slide border: far less tissue along it than inside.
    assert (tissue_value(a, bank, edge_pts, 0.25) > 0).mean() < 0.5 * (
        tissue_value(a, bank, centre, 0.25) > 0
    ).mean()
    # Tumour nests lie inside the tissue too (both fields are defined everywhere).
    assert np.isfinite(tumour_value(a, bank, centre, 0.25)).all()
