from __future__ import annotations

import numpy as np
import pytest

from wsdal_wsi.synth.layout import make_bank
from wsdal_wsi.synth.params import SynthParams
from wsdal_wsi.synth.plan import make_plan
from wsdal_wsi.units import px2_to_mm2

PARAMS = SynthParams(width_px=3072, height_px=2048, mitoses_per_mm2=40.0, tissue_fraction=0.5)


def test_plan_is_deterministic_in_its_seed():
    bank = make_bank(PARAMS, 11)
    a = make_plan(PARAMS, seed=11, name="a", bank=bank)
    b = make_plan(PARAMS, seed=11, name="b", bank=bank)
    for field in ("xy", "kind", "variant", "hard", "angle", "dark"):
        assert np.array_equal(getattr(a.objects, field), getattr(b.objects, field))
    assert a.look == b.look
    other = make_plan(PARAMS, seed=12, name="c", bank=make_bank(PARAMS, 12))
    assert other.look != a.look
    assert not np.array_equal(other.objects.xy[:3], a.objects.xy[:3])


def test_plan_areas():
    plan = make_plan(PARAMS, seed=5, name="x", bank=make_bank(PARAMS, 5))
    area = px2_to_mm2(3072 * 2048, 0.25)
    assert plan.tissue_area_mm2 == pytest.approx(0.5 * area, rel=0.2)
    assert 0 < plan.tumour_area_mm2 < plan.tissue_area_mm2
    assert plan.mpp == 0.25 and plan.name == "x"


def test_a_stain_shift_recolours_the_same_slide():
    """--stain-shift changes the look only: the same figures in the same places."""
    from dataclasses import replace

    bank = make_bank(PARAMS, 11)
    plain = make_plan(PARAMS, seed=11, name="a", bank=bank)
    shifted = make_plan(replace(PARAMS, stain_shift=1.0), seed=11, name="a", bank=bank)
    for field in ("xy", "kind", "variant", "hard", "angle", "dark"):
        assert np.array_equal(getattr(plain.objects, field), getattr(shifted.objects, field))
    assert shifted.look.h_strength > plain.look.h_strength
    assert shifted.look.e_strength < plain.look.e_strength
