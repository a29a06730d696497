from __future__ import annotations

import numpy as np

from wsdal_wsi.synth.objects import KIND_NAMES, MITOSIS_PHASES, VARIANT_NAMES, Objects, slide_rng


def test_streams_are_keyed_by_seed_tag_and_indices():
    a = slide_rng(5, "nuclei", -3, 7).random(4)
    assert np.array_equal(a, slide_rng(5, "nuclei", -3, 7).random(4))
    assert not np.array_equal(a, slide_rng(5, "nuclei", -3, 8).random(4))
    assert not np.array_equal(a, slide_rng(6, "nuclei", -3, 7).random(4))
    assert not np.array_equal(a, slide_rng(5, "figure", -3, 7).random(4))


def test_truth_vocabulary():
    assert KIND_NAMES == ("Mitosis", "Apoptotic body", "Pyknotic nucleus", "Lymphocyte")
    assert "metaphase (edge-on)" in MITOSIS_PHASES and "telophase" in MITOSIS_PHASES
    assert set(VARIANT_NAMES) == {1, 2, 3}


def test_objects_concat_keeps_order():
    def one(kind: int, n: int) -> Objects:
        return Objects(
            xy=np.full((n, 2), float(kind)),
            kind=np.full(n, kind, np.int8),
            variant=np.zeros(n, np.int8),
            hard=np.zeros(n, bool),
            angle=np.zeros(n, np.float32),
            size=np.ones(n, np.float32),
            dark=np.ones(n, np.float32),
            cluster=np.full(n, -1, np.int32),
        )

    both = Objects.concat([one(0, 2), one(3, 1)])
    assert len(both) == 3 and both.kind.tolist() == [0, 0, 3] and both.xy[2, 0] == 3.0
