"""Tests of CSDGL: the SBCL loss and temperatures against naive code, k-means, the stage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import ConfigError, TrainingError
from wsdal_wsi.model.nets import DualViewNet
from wsdal_wsi.train.common import SampleSet, StageContext, StageDir
from wsdal_wsi.train.csdgl import (
    CSDGLSettings,
    cosine_kmeans,
    run_csdgl,
    sbcl_loss,
    subclass_temperatures,
)


def naive_sbcl(z, sub, cls, tau, tau_sub, beta):
    n = len(z)
    s = [[float(z[i] @ z[j]) for j in range(n)] for i in range(n)]
    t1, t2 = [], []
    for i in range(n):
        pos1 = [j for j in range(n) if j != i and sub[j] == sub[i]]
        if pos1:
            den = sum(math.exp(s[i][a] / tau) for a in range(n) if a != i)
            t1.append(-sum(math.log(math.exp(s[i][p] / tau) / den) for p in pos1) / len(pos1))
        pos2 = [j for j in range(n) if cls[j] == cls[i] and sub[j] != sub[i]]
        if pos2:
            t = float(tau_sub[sub[i]])
            den = sum(math.exp(s[i][a] / t) for a in range(n) if a != i and sub[a] != sub[i])
            t2.append(-sum(math.log(math.exp(s[i][p] / t) / den) for p in pos2) / len(pos2))
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return mean(t1) + beta * mean(t2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sbcl_matches_naive(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(10, 5, generator=g, dtype=torch.float64), dim=1)
    sub = torch.tensor([0, 0, 1, 1, 1, 2, 4, 4, 5, 7])
    cls = sub // 4
    tau_sub = torch.rand(8, generator=g, dtype=torch.float64) * 0.2 + 0.05
    got = sbcl_loss(z, sub, cls, tau=0.1, tau_sub=tau_sub, beta=0.7)
    want = naive_sbcl(z.float().double(), sub.tolist(), cls.tolist(), 0.1, tau_sub.float(), 0.7)
    assert float(got) == pytest.approx(want, rel=1e-4)


def test_sbcl_is_smaller_when_subclasses_are_tight():
    sub = torch.tensor([0, 0, 1, 1, 4, 4, 5, 5])
    cls = sub // 4
    dirs = torch.nn.functional.normalize(
        torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=1
    )
    tight = dirs[sub]
    loose = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    tau_sub = torch.full((8,), 0.1)
    assert sbcl_loss(tight, sub, cls, tau=0.1, tau_sub=tau_sub, beta=0.5) < sbcl_loss(
        loose, sub, cls, tau=0.1, tau_sub=tau_sub, beta=0.5
    )


def test_temperatures_match_naive():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(30, 4, generator=g), dim=1)
    sub = torch.tensor([0] * 10 + [1] * 15 + [2] * 4 + [5])  # 3, 4, 6, 7 empty; 5 a singleton
    got = subclass_temperatures(z, sub, n_subclasses=8, tau=0.1, percentiles=(20, 80))
    phi = np.zeros(8)
    for s in range(8):
        m = (sub == s).numpy()
        if m.sum() > 1:
            zs = z.numpy()[m]
            phi[s] = np.linalg.norm(zs - zs.mean(0), axis=1).mean() / np.log(m.sum() + 10)
    phi[[3, 4, 5, 6, 7]] = phi.max()
    phi = np.clip(phi, *np.percentile(phi, (20, 80)))
    np.testing.assert_allclose(got.numpy(), 0.1 * phi / phi.mean(), rtol=1e-5)
    assert float(got.mean()) == pytest.approx(0.1)


def test_cosine_kmeans_finds_directions():
    g = torch.Generator().manual_seed(0)
    axes = torch.eye(6)[:3]
    truth = torch.arange(3).repeat_interleave(20)
    z = axes[truth] + 0.1 * torch.randn(60, 6, generator=g)
    a = cosine_kmeans(z * torch.rand(60, 1, generator=g) * 5, 3, seed=1)  # scale-free
    # same partition as the truth, whatever the numbering
    pairs = {(int(x), int(y)) for x, y in zip(a, truth, strict=True)}
    assert len(pairs) == 3
    assert cosine_kmeans(z[:2], 4).tolist() in ([0, 1], [1, 0])


def _inputs(blob_store):
    """A small store's training samples, their subclasses and a CPU stage context."""
    store, _ = blob_store(n_pos=16, n_neg=16, n_images=2, n_val_images=1)
    rows = store.select(split="train")
    labels = store.label[rows].astype(np.int64)
    samples = SampleSet(rows, labels, np.array(["x"] * len(rows), dtype=object))
    subclass = labels * 4 + np.arange(len(rows)) % 4
    ctx = StageContext(store=store, device=torch.device("cpu"), seed=0, width=4)
    return ctx, samples, subclass


def test_run_csdgl(tmp_path, blob_store):
    ctx, samples, subclass = _inputs(blob_store)
    settings = CSDGLSettings(
        epochs=3,
        batch_size=16,
        lr=2e-3,
        recluster_every=1,
        input_px=32,
        proj_dim=16,
        init="pretrained",
    )
    model, stats = run_csdgl(ctx, tmp_path / "csdgl", samples, subclass, settings)
    assert stats["init"] == "random init"
    assert stats["reclusters"] == 2 and stats["arch_kwargs"]["input_px"] is None
    assert sum(stats["subclass_sizes"].values()) == len(samples)
    assert len(stats["subclass_temperatures"]) == 8
    metrics = (tmp_path / "csdgl" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("epoch,loss") and len(metrics) == 4 and ",ce," in metrics[0] + ","
    again, stats2 = run_csdgl(ctx, tmp_path / "csdgl", samples, subclass, settings)
    assert stats2 == stats
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(again(x), model(x))


def test_csdgl_starts_from_the_dmu_strong_trunk(tmp_path, blob_store, monkeypatch):
    ctx, samples, subclass = _inputs(blob_store)
    torch.manual_seed(123)
    dmu = DualViewNet(width=4)
    StageDir(tmp_path / "dmu").save_weights(dmu)
    settings = CSDGLSettings(epochs=1, batch_size=16, lr=2e-3, recluster_every=0, proj_dim=16)
    assert settings.init == "dmu"  # the default
    with pytest.raises(TrainingError, match="needs the run's DMU stage"):
        run_csdgl(ctx, tmp_path / "nodmu", samples, subclass, settings)

    seen = {}
    real_fit = StageContext.fit_stage

    def fit_stage(self, model, *args, **kwargs):  # the trunk as training begins
        seen.update({k: v.clone() for k, v in model.trunk.state_dict().items()})
        return real_fit(self, model, *args, **kwargs)

    monkeypatch.setattr(StageContext, "fit_stage", fit_stage)
    _, stats = run_csdgl(
        ctx, tmp_path / "csdgl", samples, subclass, settings, dmu_dir=tmp_path / "dmu"
    )
    assert stats["init"].startswith("DMU strong-view trunk")
    strong, weak = dmu.strong.trunk.state_dict(), dmu.weak.trunk.state_dict()
    assert seen.keys() == strong.keys()
    for k, v in strong.items():
        torch.testing.assert_close(seen[k], v)
    assert any(not torch.equal(seen[k], weak[k]) for k in weak if weak[k].is_floating_point())
    with pytest.raises(ConfigError, match=r"csdgl\.init must be one of dmu, pretrained, got 'x'"):
        CSDGLSettings(init="x")
