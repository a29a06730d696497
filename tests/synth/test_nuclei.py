from __future__ import annotations

import numpy as np
import pytest

from wsdal_wsi.synth.layout import make_bank, tissue_value, tumour_value
from wsdal_wsi.synth.nuclei import N_TUMOUR, chunk_nuclei, make_nucleus_library
from wsdal_wsi.synth.params import SynthParams
from wsdal_wsi.synth.plan import make_plan
from wsdal_wsi.units import px2_to_mm2

PARAMS = SynthParams(width_px=3072, height_px=3072, tissue_fraction=0.8, mitoses_per_mm2=30.0)


@pytest.fixture(scope="module")
def setup():
    bank = make_bank(PARAMS, 4)
    plan = make_plan(PARAMS, seed=4, name="n", bank=bank)
    return plan, bank, make_nucleus_library(4, 0.25, blur_px=0.6)


def _key(st):
    return {(int(x), int(y), int(k)) for x, y, k in zip(st.cx, st.cy, st.sprite, strict=True)}


def test_nuclei_do_not_depend_on_the_window(setup):
    plan, bank, lib = setup
    none = np.zeros((0, 2))
    whole = chunk_nuclei(
        plan, bank, lib, 500, 700, 1500, 900, avoid_xy=none, avoid_r_px=np.zeros(0)
    )
    left = chunk_nuclei(plan, bank, lib, 500, 700, 700, 900, avoid_xy=none, avoid_r_px=np.zeros(0))
    right = chunk_nuclei(
        plan, bank, lib, 1200, 700, 800, 900, avoid_xy=none, avoid_r_px=np.zeros(0), cache={}
    )
    assert _key(left) | _key(right) == _key(whole)


def test_tumour_is_dense_with_nuclei_and_background_has_none(setup):
    plan, bank, lib = setup
    st = chunk_nuclei(
        plan, bank, lib, 0, 0, 3072, 3072, avoid_xy=np.zeros((0, 2)), avoid_r_px=np.zeros(0)
    )
    xy = np.column_stack([st.cx, st.cy]).astype(float)
    # Centres are rounded to whole pixels after the decision (borders are rough at the
    # pixel scale): allow that much.
    tv = tissue_value(plan.fields, bank, xy, 0.25)
    assert (tv > -1.0).all() and (tv > 1.0).mean() > 0.99
    is_tumour = st.sprite < N_TUMOUR
    tum = tumour_value(plan.fields, bank, xy[is_tumour], 0.25)
    assert (tum > -1.0).all() and (tum > 0.0).mean() > 0.99
    # Nuclei per mm² of tumour: "several thousand".
    rng = np.random.default_rng(0)
    probe = rng.uniform(0, 3072, (20000, 2))
    tumour_frac = (
        (tissue_value(plan.fields, bank, probe, 0.25) > 1.5)
        & (tumour_value(plan.fields, bank, probe, 0.25) > 0)
    ).mean()
    density = is_tumour.sum() / (tumour_frac * px2_to_mm2(3072 * 3072, 0.25))
    assert 3000 < density < 11000
    assert (~is_tumour).sum() < 0.2 * is_tumour.sum()  # sparse spindle nuclei in stroma


def test_special_objects_clear_their_surroundings(setup):
    plan, bank, lib = setup
    centre = np.array([[1500.0, 1500.0]])
    st = chunk_nuclei(
        plan, bank, lib, 1300, 1300, 400, 400, avoid_xy=centre, avoid_r_px=np.array([40.0])
    )
    d = np.hypot(st.cx - 1500.0, st.cy - 1500.0)
    assert len(d) and d.min() >= 40.0


def test_library_sprites_are_nuclei(setup):
    _, _, lib = setup
    h = lib.tumour.data[:, 0]
    assert lib.tumour.data.shape[1] == 3 and len(lib.tumour) == N_TUMOUR
    peak = h.max(axis=(1, 2))
    assert 0.2 < float(np.median(peak)) < 0.8  # lighter than condensed chromatin
    # Membrane: the rim of a nucleus is darker than its middle (vesicular chromatin).
    c = h.shape[1] // 2
    assert np.mean(h[:, c, c]) < np.mean(peak)
