"""Label audit: the annotations the model believes are wrong, back to the annotator.

From DMU's per-sample table, per annotation (settings:
:class:`~wsdal_wsi.train.presets.AuditSettings`), when DMU called at least
``noisy_min_fraction`` of its patches ``noisy`` or never learned them **and** DMU's
network agrees firmly:

* a **positive click** (aggregating its jittered copies) with p(mitosis) below
  ``click_max_p``: *"click with no mitosis under it"*; where the pathologist made
  enough negative-class clicks, clicks are instead judged by the look-alike
  classifier (:mod:`wsdal_wsi.train.audit_lookalike`): shown when their
  p(look-alike) is at least ``lookalike_min_p``, whatever DMU's verdict;
* a **negative-class click** with p(mitosis) at least ``candidate_min_p``:
  *"likely mitosis near a negative-class click"*;
* a **candidate used as a negative** (random or mined, inside an exhaustively
  annotated area) with p(mitosis) at least ``candidate_min_p``: *"likely mitosis
  not annotated"*.

DMU's verdict alone was right less than half of the time on the development data;
the agreement is what makes the audit right when it speaks (numbers in
:class:`~wsdal_wsi.train.presets.AuditSettings`). The flags are ranked surest first
(the network's confidence against the annotation: 1 - p for a click of a mitosis,
p for the others; then the noisy fraction). Each becomes a QuPath point annotation
of class ``WS-DAL review`` named ``"WS-DAL review: <reason>"`` with the
measurements ``WS-DAL probability`` (the DMU network's p(mitosis)), ``WS-DAL noisy
fraction`` and ``WS-DAL audit rank`` (1 = surest), in
``RUN/audit/<image key>.geojson`` (one file per training image, empty when nothing
was flagged) plus ``RUN/audit/review.csv`` listing all of them in rank order (and
``click_lookalike.npy``, the look-alike classifier's score per DMU-table row, where
it judged the clicks).
Importing the GeoJSON into QuPath puts the points on the slide; nothing of the
pathologist's own annotations is changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath.geojson_write import point_feature, write_features
from wsdal_wsi.qupath.model import PROBABILITY_MEASUREMENT, tool_name
from wsdal_wsi.train.audit_settings import AuditSettings
from wsdal_wsi.train.common import StageDir
from wsdal_wsi.train.store import PatchStore

__all__ = [
    "AUDIT_RANK_MEASUREMENT",
    "LOOKALIKE_MEASUREMENT",
    "REASONS",
    "REVIEW_CLASS",
    "AnnotationFlags",
    "flag_annotations",
    "write_audit",
]

#: The QuPath class of the review objects.
REVIEW_CLASS = "WS-DAL review"

#: The measurement giving a review object's place in the audit (1 = surest).
AUDIT_RANK_MEASUREMENT = "WS-DAL audit rank"

#: The measurement giving a click's p(look-alike) from the look-alike classifier.
LOOKALIKE_MEASUREMENT = "WS-DAL look-alike probability"

#: Reason per kind of annotation.
REASONS = {
    "positive_click": "click with no mitosis under it",
    "negative_click": "likely mitosis near a negative-class click",
    "candidate": "likely mitosis not annotated",
}


@dataclass
class AnnotationFlags:
    """DMU's verdict per annotation (clicks aggregated over their jittered copies).

    Attributes (all ``(K,)``)
    ----------
    image_key : ndarray of str
    xy_level0 : ndarray ``(K, 2)`` float64
        The annotated point (the click, not a jittered copy).
    kind : ndarray of str
        ``positive_click``, ``negative_click`` or ``candidate``.
    noisy_fraction : ndarray float64
        Fraction of the annotation's patches flagged noisy or never learned.
    p_mitosis : ndarray float64
        Mean DMU p(mitosis) over its patches.
    flagged : ndarray bool
    sureness : ndarray float64
        How firmly DMU's network contradicts the annotation: ``1 - p_mitosis``
        for a positive click, ``p_mitosis`` for the others.
    click_id : ndarray int64
        The store's click id (-1 for candidates).
    row : ndarray int64
        A store row of the annotation (the click itself where present).
    lookalike : ndarray float64
        The look-alike classifier's p(look-alike) of a positive click (NaN where it
        did not judge).
    """

    image_key: np.ndarray
    xy_level0: np.ndarray
    kind: np.ndarray
    noisy_fraction: np.ndarray
    p_mitosis: np.ndarray
    flagged: np.ndarray
    sureness: np.ndarray
    click_id: np.ndarray
    row: np.ndarray
    lookalike: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)


def flag_annotations(
    table: Mapping[str, np.ndarray],
    store: PatchStore,
    *,
    settings: AuditSettings = AuditSettings(),
    click_lookalike: np.ndarray | None = None,
) -> AnnotationFlags:
    """Aggregate DMU's per-sample outcomes into per-annotation flags.

    An annotation is flagged when its noisy fraction is at least
    ``settings.noisy_min_fraction``, DMU's p(mitosis) agrees (below
    ``settings.click_max_p`` for a positive click, at least
    ``settings.candidate_min_p`` for the others) and the store does not mark it
    trusted (a pathologist's answer). ``click_lookalike`` (per table row, NaN where
    none; :func:`~wsdal_wsi.train.audit_lookalike.click_lookalike`) replaces that
    rule for the positive clicks it scores: flagged at p(look-alike) >=
    ``settings.lookalike_min_p``, ranked by it.
    """
    bad = (np.asarray(table["outcome"]) == "noisy") | np.asarray(table["never_learned"]).astype(
        bool
    )
    rows = np.asarray(table["row"]).astype(np.int64)
    label = np.asarray(table["label"]).astype(np.int64)
    p = np.asarray(table["p_mitosis"]).astype(np.float64)
    cid = store.click_id[rows]
    src = store.source[rows]
    look = (
        np.full(len(rows), np.nan)
        if click_lookalike is None
        else np.asarray(click_lookalike, np.float64)
    )
    out: dict[str, list] = {
        k: [] for k in ("image_key", "x", "y", "kind", "frac", "p", "cid", "row", "look")
    }

    def add(i_rows: np.ndarray, kind: str, anchor: int, click: int) -> None:
        out["image_key"].append(str(store.image_key[anchor]))
        out["x"].append(float(store.xy_level0[anchor, 0]))
        out["y"].append(float(store.xy_level0[anchor, 1]))
        out["kind"].append(kind)
        out["frac"].append(float(np.mean(bad[i_rows])))
        out["p"].append(float(np.mean(p[i_rows])))
        out["cid"].append(int(click))
        out["row"].append(int(anchor))
        out["look"].append(float(np.mean(look[i_rows])))

    pos = np.flatnonzero((label == 1) & (cid >= 0))
    for c in np.unique(cid[pos]):
        members = pos[cid[pos] == c]
        clicks = members[src[members] == "click"]
        anchor = rows[clicks[0]] if len(clicks) else rows[members[0]]
        add(members, "positive_click", anchor, c)
    for i in np.flatnonzero((label == 0) & (src == "negative_click")):
        add(np.array([i]), "negative_click", rows[i], cid[i])
    for i in np.flatnonzero((label == 0) & (src == "candidate")):
        add(np.array([i]), "candidate", rows[i], -1)
    frac = np.array(out["frac"], np.float64)
    kind = np.array(out["kind"], dtype=object)
    p_ann = np.array(out["p"], np.float64)
    click = kind == "positive_click"
    agrees = np.where(click, p_ann < settings.click_max_p, p_ann >= settings.candidate_min_p)
    flagged = (frac >= settings.noisy_min_fraction) & agrees
    lookalike = np.array(out["look"], np.float64)
    judged = click & np.isfinite(lookalike)
    flagged = np.where(judged, lookalike >= settings.lookalike_min_p, flagged)
    sureness = np.where(click, 1.0 - p_ann, p_ann)
    sureness = np.where(judged, lookalike, sureness)
    trusted = store.trusted[np.array(out["row"], np.int64)].astype(bool)
    return AnnotationFlags(
        image_key=np.array(out["image_key"], dtype=object),
        xy_level0=np.stack([np.array(out["x"]), np.array(out["y"])], axis=1).reshape(-1, 2),
        kind=kind,
        noisy_fraction=frac,
        p_mitosis=p_ann,
        flagged=flagged & ~trusted,
        sureness=sureness,
        click_id=np.array(out["cid"], np.int64),
        row=np.array(out["row"], np.int64),
        lookalike=lookalike,
    )


def _measurements(flags: AnnotationFlags, i: int, rank: int) -> dict[str, float | int]:
    m: dict[str, float | int] = {
        PROBABILITY_MEASUREMENT: round(float(flags.p_mitosis[i]), 4),
        "WS-DAL noisy fraction": round(float(flags.noisy_fraction[i]), 4),
        AUDIT_RANK_MEASUREMENT: rank,
    }
    if np.isfinite(flags.lookalike[i]):
        m[LOOKALIKE_MEASUREMENT] = round(float(flags.lookalike[i]), 4)
    return m


def write_audit(
    out_dir: Path,
    table: Mapping[str, np.ndarray],
    store: PatchStore,
    *,
    settings: AuditSettings = AuditSettings(),
    run_info: Mapping[str, Any] | None = None,
    click_lookalike: Callable[[], np.ndarray | None] | None = None,
) -> dict[str, Any]:
    """Write the review objects per training image, surest first; return the statistics.

    ``click_lookalike`` computes the look-alike classifier's per-row scores (see
    :func:`flag_annotations`); called only when the stage is not done yet.
    """

    stage = StageDir(out_dir)
    if (done := stage.done) is not None:
        return done
    look = click_lookalike() if click_lookalike is not None else None
    if look is not None:  # per DMU-table row; kept for inspection
        stage.save_array("click_lookalike.npy", look)
    flags = flag_annotations(table, store, settings=settings, click_lookalike=look)
    sel = np.flatnonzero(flags.flagged)
    sel = sel[np.lexsort((-flags.noisy_fraction[sel], -flags.sureness[sel]))]  # surest first
    rank = {int(i): r + 1 for r, i in enumerate(sel)}
    reasons = np.array([REASONS[k] for k in flags.kind[sel]], dtype=object)
    keys = sorted({str(im["key"]) for im in store.images if im["split"] == "train"})
    per_image: dict[str, int] = {}
    for key in keys:
        im = store.image(key)
        mine = sel[flags.image_key[sel] == key]
        features = [
            point_feature(
                float(flags.xy_level0[i, 0]),
                float(flags.xy_level0[i, 1]),
                REVIEW_CLASS,
                name=tool_name(f"review: {REASONS[flags.kind[i]]}"),
                measurements=_measurements(flags, int(i), rank[int(i)]),
            )
            for i in mine
        ]
        write_features(
            stage.path / f"{key}.geojson",
            features,
            provenance=provenance(
                slide=str(im["slide"]),
                model="WS-DAL DMU label audit",
                settings={**dataclasses.asdict(settings), **dict(run_info or {})},
            ),
        )
        per_image[key] = len(features)
    stage.save_table(
        "review.csv",
        {
            "rank": np.arange(1, len(sel) + 1),
            "image_key": flags.image_key[sel],
            "x_level0": flags.xy_level0[sel, 0],
            "y_level0": flags.xy_level0[sel, 1],
            "reason": reasons,
            "p_mitosis": flags.p_mitosis[sel],
            "noisy_fraction": flags.noisy_fraction[sel],
            "p_lookalike": flags.lookalike[sel],
        },
    )
    stats = {
        "stage": "audit",
        "n_flagged": len(sel),
        "clicks_judged_by": "look-alike classifier" if look is not None else "DMU",
        "by_reason": {r: int(np.sum(reasons == r)) for r in REASONS.values()},
        "per_image": per_image,
    }
    return stage.write_done(stats)
