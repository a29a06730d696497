"""How patches are read from the slides into the patch store: its settings (a preset's ``extract``).

Kept apart from :mod:`wsdal_wsi.train.presets` (which re-exports it) because it is
about reading slides, which the patch store, the samplers and stain normalisation
share, not about training a stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsdal_wsi.errors import ConfigError

__all__ = ["ExtractSettings"]


@dataclass(frozen=True)
class ExtractSettings:
    """How patches are read from the slides into the patch store.

    Attributes
    ----------
    patch_px : int
        The network's patch side (pixels at ``target_mpp``): 80 (20 µm at 0.25 µm/px).
    context_px : int
        Stored side (>= patch_px) so rotations need no invented corners.
    target_mpp : float
        Resolution of the patches (µm/px).
    n_jitter : int
        Jittered copies per positive click (upstream: about 4).
    jitter_px : float
        Largest shift of a jittered copy (pixels at ``target_mpp``; upstream 16).
    clear_radius_px : float
        A candidate is a usable negative only if it is at least this far from every
        positive and ignored point (pixels at ``target_mpp``; upstream 80).
    snap_um : float
        A click's patch (positive or negative class) is centred on the nearest
        candidate nucleus within this distance (µm), where inference centres its
        patches; the click itself when there is none (0: never snap). Ours; see
        :mod:`wsdal_wsi.train.extract`.
    jitter_negatives : bool
        At training time, shift the negatives as the jittered copies of the
        positives were shifted (:func:`~wsdal_wsi.train.augment.matched_shifts`), so
        that being off-centre does not mean "mitosis". Ours. Keep ``jitter_px`` at
        most ``(context_px - patch_px) / 2``, so no shifted patch leaves its context.
    max_candidates_per_image : int
        Candidates kept per training image (a seeded random subset beyond it):
        NS's mining pool and the random negatives.
    max_val_candidates_per_image : int
        Candidates kept per validation image, where they choose the threshold (a
        subset would under-count false positives, so keep this large).
    read_threads : int
        Threads reading slides.
    stain_normalise : bool
        Estimate every training slide's stains (:mod:`wsdal_wsi.stain`), keep their
        median as the model's reference and read every patch mapped onto it;
        prediction maps each slide onto the same reference before the candidate
        detector and the classifier see it. On the development data (data seeds
        0-2) it raised WS-DAL's test F1 from 0.56 to 0.77 (with the one-SE threshold)
        and its F1 on stain-shifted slides from 0.07 to 0.57 (``benchmarks/RESULTS.md``).
        A run whose ``config.json`` predates this setting had False.
    """

    patch_px: int = 80
    context_px: int = 112
    target_mpp: float = 0.25
    n_jitter: int = 4
    jitter_px: float = 16.0
    clear_radius_px: float = 80.0
    snap_um: float = 4.0
    jitter_negatives: bool = True
    max_candidates_per_image: int = 20000
    max_val_candidates_per_image: int = 200000
    read_threads: int = 4
    stain_normalise: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.stain_normalise, bool):
            raise ConfigError(
                f"stain_normalise must be true or false, got {self.stain_normalise!r}"
            )
