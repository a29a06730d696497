from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from wsdal_wsi.synth.layout import make_bank, tissue_value, tumour_value
from wsdal_wsi.synth.params import SynthParams
from wsdal_wsi.synth.plan import make_plan

PARAMS = SynthParams(
    width_px=4096, height_px=4096, mitoses_per_mm2=60.0, lookalikes_per_mm2=80.0, hard_fraction=0.3
)


@pytest.fixture(scope="module")
def plan_and_bank():
    bank = make_bank(PARAMS, 11)
    return make_plan(PARAMS, seed=11, name="p", bank=bank), bank


def test_counts_follow_the_densities(plan_and_bank):
    plan, _ = plan_and_bank
    obj = plan.objects
    counts = np.bincount(obj.kind, minlength=4)
    want_mit = PARAMS.mitoses_per_mm2 * plan.tissue_area_mm2
    want_look = PARAMS.lookalikes_per_mm2 * plan.tissue_area_mm2
    assert abs(counts[0] - want_mit) < 4 * np.sqrt(want_mit) + 2
    assert abs(counts[1:].sum() - want_look) < 4 * np.sqrt(want_look) + 2
    assert (obj.kind[: counts[0]] == 0).all()  # mitoses first: truth index = row
    hard = obj.hard[obj.kind == 0].mean()
    assert 0.15 < hard < 0.45
    assert (obj.variant[(obj.kind == 0) & obj.hard] >= 5).all()


def test_objects_lie_where_they_belong(plan_and_bank):
    plan, bank = plan_and_bank
    obj = plan.objects
    tis = tissue_value(plan.fields, bank, obj.xy, plan.mpp)
    tum = tumour_value(plan.fields, bank, obj.xy, plan.mpp)
    assert (tis[obj.kind != 3] > 5.0).all()  # well inside tissue
    assert (tum[obj.kind == 0] > 2.9).all()  # mitoses in tumour nests
    assert (tum[obj.kind == 1] > 2.9).all()  # apoptotic bodies too
    lym = obj.kind == 3
    assert (tis[lym] > 0).all()
    assert (tum[lym] < 0).mean() > 0.5  # lymphocytes mostly in stroma
    clusters = np.unique(obj.cluster[lym])
    assert len(clusters) < lym.sum() / 2  # in groups


def test_objects_keep_their_distance(plan_and_bank):
    plan, _ = plan_and_bank
    obj = plan.objects
    d, _ = cKDTree(obj.xy).query(obj.xy, k=2)
    nearest_um = d[:, 1] * plan.mpp
    assert nearest_um.min() >= 6.5  # two lymphocytes: 2 x 3.3 µm
    mit = obj.kind == 0
    assert nearest_um[mit].min() >= 7.0 + 3.3 - 1e-6
