"""Stage 4, Class-Stratified Difficulty-Guided Learning (CSDGL): the final model.

A :class:`~wsdal_wsi.model.nets.ProjNet` (ResNet-18 trunk, linear classifier,
MLP projection head) is trained on the DLE-kept samples with class-balanced
sampling, two strongly augmented views per sample, and

    loss = CE(both views) + weight * SBCL

where SBCL (:func:`sbcl_loss`, after Hou et al., "Subclass-balancing contrastive
learning", ICCV 2023) has a subclass term (same subclass = positives, temperature
``tau``) and a weaker class term (same class, other subclass = positives, weight
``beta``, each anchor at its subclass's temperature). Subclass temperatures come
from each subclass's spread in the projection space (:func:`subclass_temperatures`:
mean distance to the centre / log(n + 10), clipped to the 20th-80th percentile,
scaled so their mean is ``tau``). The initial subclasses are DLE's (class x level);
every ``recluster_every`` epochs the projections are re-clustered per class by
cosine k-means (k = 4) and the temperatures recomputed. The trunk starts from the
DMU network's trained strong-view trunk (``settings.init = "dmu"``, ours) or from the
weights every stage starts from (``"pretrained"``, the method).

Outputs in ``RUN/csdgl/``: ``metrics.csv``, ``weights.pt``, ``done.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsdal_wsi.errors import TrainingError
from wsdal_wsi.model.nets import DualViewNet, ProjNet
from wsdal_wsi.train.augment import STRONG, augment_batch
from wsdal_wsi.train.common import SampleSet, StageContext, StageDir
from wsdal_wsi.train.data import Batch
from wsdal_wsi.train.distributed import broadcast_
from wsdal_wsi.train.engine import predict, to_input
from wsdal_wsi.train.presets import CSDGLSettings

__all__ = ["CSDGLSettings", "cosine_kmeans", "run_csdgl", "sbcl_loss", "subclass_temperatures"]


def sbcl_loss(
    z: Tensor, subclass: Tensor, cls: Tensor, *, tau: float, tau_sub: Tensor, beta: float
) -> Tensor:
    """Subclass-balancing contrastive loss of a batch.

    Parameters
    ----------
    z : Tensor ``(N, D)`` float
        L2-normalised projections (all views of the batch).
    subclass, cls : Tensor ``(N,)`` int64
        Subclass and class of each row.
    tau : float
        Temperature of the subclass term.
    tau_sub : Tensor ``(S,)`` float
        Temperature of each subclass, used for the class term of its anchors.
    beta : float
        Weight of the class term.

    Returns
    -------
    Tensor
        Scalar: mean over anchors with a same-subclass positive of the subclass
        term, plus ``beta`` times the mean over anchors with a same-class
        other-subclass positive of the class term (anchors without positives are
        left out of each mean).
    """
    with torch.autocast(device_type=z.device.type, enabled=False):  # similarities in fp32
        return _sbcl(z.float(), subclass, cls, tau=tau, tau_sub=tau_sub, beta=beta)


def _sbcl(
    z: Tensor, subclass: Tensor, cls: Tensor, *, tau: float, tau_sub: Tensor, beta: float
) -> Tensor:
    n = z.shape[0]
    sim = z @ z.T
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    same_sub = (subclass.view(-1, 1) == subclass.view(1, -1)) & ~eye
    same_cls_other = (cls.view(-1, 1) == cls.view(1, -1)) & ~same_sub & ~eye
    neg_inf = torch.finfo(sim.dtype).min

    logits1 = (sim / tau).masked_fill(eye, neg_inf)
    logp1 = logits1 - torch.logsumexp(logits1, dim=1, keepdim=True)
    n1 = same_sub.sum(1)
    l1 = -torch.where(same_sub, logp1, 0.0).sum(1) / n1.clamp_min(1)
    has1 = n1 > 0

    t = tau_sub.to(sim.dtype)[subclass].view(-1, 1)
    logits2 = (sim / t).masked_fill(same_sub | eye, neg_inf)
    logp2 = logits2 - torch.logsumexp(logits2, dim=1, keepdim=True)
    n2 = same_cls_other.sum(1)
    l2 = -torch.where(same_cls_other, logp2, 0.0).sum(1) / n2.clamp_min(1)
    has2 = n2 > 0

    # means over the anchors that have positives (no host sync: a 0/0 becomes 0)
    term1 = torch.where(has1, l1, 0.0).sum() / has1.sum().clamp_min(1)
    term2 = torch.where(has2, l2, 0.0).sum() / has2.sum().clamp_min(1)
    return term1 + beta * term2


def subclass_temperatures(
    z: Tensor,
    subclass: Tensor,
    *,
    n_subclasses: int,
    tau: float,
    percentiles: tuple[float, float] = (20.0, 80.0),
) -> Tensor:
    """Per-subclass temperatures from the spread of each subclass.

    phi_s = mean ||z - centre_s|| / log(n_s + 10); subclasses with fewer than 2
    members get the largest phi; phi is clipped to the given percentiles and
    scaled so that its mean is ``tau``.

    Parameters
    ----------
    z : Tensor ``(N, D)``
    subclass : Tensor ``(N,)`` int64 in ``[0, n_subclasses)``
    n_subclasses : int
    tau : float
    percentiles : (float, float)

    Returns
    -------
    Tensor ``(n_subclasses,)`` float32
    """
    z = z.float()
    phi = torch.zeros(n_subclasses, device=z.device)
    valid = torch.zeros(n_subclasses, dtype=torch.bool, device=z.device)
    for s in range(n_subclasses):
        m = subclass == s
        cnt = int(m.sum())
        if cnt > 1:
            zs = z[m]
            phi[s] = (zs - zs.mean(0)).norm(dim=1).mean() / np.log(cnt + 10)
            valid[s] = True
    if not bool(valid.any()):
        return torch.full((n_subclasses,), float(tau), device=z.device)
    phi[~valid] = phi[valid].max()
    lo, hi = np.percentile(phi.cpu().numpy(), percentiles)
    phi = phi.clamp(float(lo), float(hi))
    if float(phi.mean()) <= 1e-12:
        return torch.full((n_subclasses,), float(tau), device=z.device)
    return tau * phi / phi.mean()


def cosine_kmeans(z: Tensor, k: int, *, seed: int = 0, iters: int = 30) -> Tensor:
    """Spherical k-means of ``z (N, D)``: ``(N,)`` int64 cluster ids in ``[0, min(k, N))``.

    k-means++ initialisation from a seeded CPU generator; an emptied cluster is
    re-seeded with the point farthest from its centre.
    """
    n = z.shape[0]
    k = max(1, min(int(k), n))
    x = torch.nn.functional.normalize(z.float(), dim=1)
    g = torch.Generator().manual_seed(seed)
    first = int(torch.randint(0, n, (1,), generator=g))
    centres = [x[first]]
    for _ in range(1, k):
        sim = torch.stack([x @ c for c in centres], dim=1).max(dim=1).values
        d = (1 - sim).clamp_min(0).cpu() + 1e-12
        centres.append(x[int(torch.multinomial(d, 1, generator=g))])
    c = torch.stack(centres)
    assign = torch.zeros(n, dtype=torch.int64, device=z.device)
    for _ in range(iters):
        sim = x @ c.T
        new = sim.argmax(dim=1)
        best = sim.max(dim=1).values
        for j in range(k):
            m = new == j
            if not bool(m.any()):
                far = int(best.argmin())
                new[far] = j
                best[far] = 1.0
                m = new == j
            c[j] = torch.nn.functional.normalize(x[m].mean(0), dim=0)
        if torch.equal(new, assign):
            break
        assign = new
    return assign


def run_csdgl(
    ctx: StageContext,
    out_dir: Path,
    samples: SampleSet,
    subclass: np.ndarray,
    settings: CSDGLSettings,
    *,
    n_per_class: int = 4,
    dmu_dir: Path | None = None,
) -> tuple[ProjNet, dict[str, Any]]:
    """Run (or resume) CSDGL; return the final network (on ``ctx.device``) and statistics.

    Parameters
    ----------
    samples : SampleSet
        The DLE-kept samples.
    subclass : ndarray ``(M,)`` int64
        Their initial subclasses, ``label * n_per_class + level``.
    n_per_class : int
        Subclass ids per class in ``subclass`` (DLE levels + 1).
    dmu_dir : Path, optional
        The run's finished DMU stage, whose ``weights.pt`` gives the trunk when
        ``settings.init == "dmu"`` (required then).
    """
    stage = StageDir(out_dir)
    n_per_class = max(n_per_class, settings.k)
    input_px = settings.input_px if settings.input_px != ctx.patch_px else None
    arch_kwargs = {"width": ctx.width, "proj_dim": settings.proj_dim, "input_px": input_px}
    torch.manual_seed(ctx.seed * 1000 + 4)
    model = ProjNet(**arch_kwargs)
    if (done := stage.done) is not None:
        return stage.load_weights(model).to(ctx.device).eval(), done
    init = _init_trunk(ctx, model, settings, dmu_dir)
    batches = ctx.batches(
        samples.rows,
        samples.labels,
        batch_size=settings.batch_size,
        mode="balanced",
        seed_offset=4,
        drop_last=True,
    )
    epoch = _CSDGLEpoch(ctx, model, samples, subclass, settings=settings, n_per_class=n_per_class)
    metrics = ctx.fit_stage(
        model,
        batches,
        stage=stage,
        settings=settings,
        name="csdgl",
        description="CSDGL: final model",
        compute_loss=epoch.loss,
        n=len(samples),
        begin_epoch=epoch.begin,
        get_state=epoch.get_state,
        set_state=epoch.set_state,
    )
    stats = {
        "stage": "csdgl",
        "init": init,
        "arch": "proj_resnet18",
        "arch_kwargs": arch_kwargs,
        "epochs": settings.epochs,
        "n": len(samples),
        "final_loss": metrics[-1]["loss"] if metrics else None,
        **epoch.summary(),
    }
    return model.eval(), stage.write_done(stats)


def _init_trunk(
    ctx: StageContext, model: ProjNet, settings: CSDGLSettings, dmu_dir: Path | None
) -> str:
    """Load the starting weights into ``model.trunk``; return what was used."""
    if settings.init == "pretrained":
        return ctx.init_trunks(model.trunk)
    if dmu_dir is None:
        raise TrainingError('csdgl.init = "dmu" needs the run\'s DMU stage')
    dmu = StageDir(dmu_dir).load_weights(DualViewNet(width=ctx.width))
    model.trunk.load_state_dict(dmu.strong.trunk.state_dict())
    return f"DMU strong-view trunk ({Path(dmu_dir) / 'weights.pt'})"


class _CSDGLEpoch:
    """One CSDGL epoch, as :meth:`StageContext.fit_stage`'s callbacks, and the subclasses.

    The state (checkpointed): ``subclass`` ``(M,)`` int64 and ``tau_sub``
    ``(2 * n_per_class,)`` float32 on the CPU, whether the temperatures were
    computed (``ready``), and the number of re-clusterings so far.

    Parameters
    ----------
    ctx : StageContext
    model : ProjNet
        The network trained (its projections give the subclasses).
    samples : SampleSet
    subclass : ndarray ``(M,)`` int64
        The initial subclasses, ``label * n_per_class + level``.
    settings : CSDGLSettings
    n_per_class : int
        Subclass ids per class.
    """

    def __init__(
        self,
        ctx: StageContext,
        model: ProjNet,
        samples: SampleSet,
        subclass: np.ndarray,
        *,
        settings: CSDGLSettings,
        n_per_class: int,
    ) -> None:
        self.ctx, self.model, self.settings = ctx, model, settings
        self.n_per_class, self.n_sub = n_per_class, 2 * n_per_class
        labels = samples.labels
        self.seq = ctx.batches(
            samples.rows, labels, batch_size=settings.batch_size * 2, mode="sequential"
        )
        self.gen = torch.Generator(device=ctx.device)
        self.state: dict[str, Any] = {
            "subclass": torch.as_tensor(subclass, dtype=torch.int64),
            "tau_sub": torch.full((self.n_sub,), settings.tau),
            "ready": False,
            "reclusters": 0,
        }
        self.dev_state: dict[str, Tensor] = {}
        self.y_t = torch.as_tensor(labels, dtype=torch.int64, device=ctx.device)

    def begin(self, epoch: int) -> None:
        """Seed the epoch's augmentations; refresh the temperatures at the start and
        the subclasses every ``recluster_every`` epochs."""
        every = self.settings.recluster_every
        self.ctx.seed_augmentations(self.gen, epoch=epoch, stage=4)
        if not self.state["ready"]:
            self.refresh(recluster=False)
        elif every and epoch > 0 and epoch % every == 0:
            self.refresh(recluster=True)
        self.dev_state["sub"] = self.state["subclass"].to(self.ctx.device)
        self.dev_state["tau"] = self.state["tau_sub"].to(self.ctx.device)

    def refresh(self, *, recluster: bool) -> None:
        """Recompute the subclass temperatures from the projections, after
        re-clustering each class (cosine k-means) when ``recluster``."""
        ctx, settings, state = self.ctx, self.settings, self.state
        z = torch.from_numpy(
            predict(
                self.model,
                self.seq,
                ctx.device,
                fn=lambda m, x: m.forward_train(x)[1],
                patch_px=ctx.patch_px,
                mean=ctx.mean,
                std=ctx.std,
            )
        ).to(ctx.device)
        sub = state["subclass"].to(ctx.device)
        if recluster:
            _recluster(
                z,
                sub,
                self.y_t,
                k=settings.k,
                n_per_class=self.n_per_class,
                seed=ctx.seed + state["reclusters"],
            )
            state["reclusters"] += 1
        state["subclass"] = sub.cpu()
        state["tau_sub"] = subclass_temperatures(
            z, sub, n_subclasses=self.n_sub, tau=settings.tau, percentiles=settings.percentiles
        ).cpu()
        if ctx.world > 1:  # every process computed them from the same gathered projections;
            broadcast_(state["subclass"])  # rank 0's, bit for bit, for all
            broadcast_(state["tau_sub"])
        state["ready"] = True

    def loss(self, m: torch.nn.Module, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """CE on two strong views of batch ``b`` plus ``weight`` times their SBCL loss."""
        ctx, gen, settings = self.ctx, self.gen, self.settings
        sh = ctx.shifts(b.labels, gen)
        view = ctx.view(STRONG)
        v1, v2 = (
            augment_batch(b.patches, patch_px=ctx.patch_px, params=view, generator=gen, shift_px=sh)
            for _ in range(2)
        )
        x = to_input(torch.cat([v1, v2]), mean=ctx.mean, std=ctx.std)
        logits, z = m.forward_train(x)
        y2 = b.labels.repeat(2)
        sub2 = self.dev_state["sub"][b.positions].repeat(2)
        ce = torch.nn.functional.cross_entropy(logits.float(), y2)
        tau_sub = self.dev_state["tau"]
        sb = sbcl_loss(z, sub2, y2, tau=settings.tau, tau_sub=tau_sub, beta=settings.beta)
        return ce + settings.weight * sb, {"ce": ce, "sbcl": sb}

    def get_state(self) -> dict[str, Any]:
        """The state for the checkpoint (a shallow copy)."""
        return {k: v for k, v in self.state.items()}

    def set_state(self, s: dict[str, Any]) -> None:
        """Restore the state from a checkpoint."""
        self.state.update(s)

    def summary(self) -> dict[str, Any]:
        """Re-clusterings, final subclass sizes and temperatures (for ``done.json``)."""
        sub = self.state["subclass"].numpy()
        return {
            "reclusters": int(self.state["reclusters"]),
            "subclass_sizes": {str(s): int(np.sum(sub == s)) for s in range(self.n_sub)},
            "subclass_temperatures": [round(float(t), 5) for t in self.state["tau_sub"]],
        }


def _recluster(
    z: Tensor, sub: Tensor, labels: Tensor, *, k: int, n_per_class: int, seed: int
) -> None:
    """Re-cluster each class in place: ``sub (N,)`` int64 of a class ``c`` with two
    samples or more becomes ``c * n_per_class`` + its cosine k-means cluster of the
    projections ``z (N, D)`` (``labels (N,)`` int64)."""
    for c in (0, 1):
        m = labels == c
        if int(m.sum()) >= 2:
            sub[m] = c * n_per_class + cosine_kmeans(z[m], k, seed=seed)
