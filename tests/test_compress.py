"""spikefit.compress: every baseline keeps what it promises (schedules, gradients, counts, centroids)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from spikefit import fsc
from spikefit.baselines import plan, run_method
from spikefit.compress import pruners as P
from spikefit.compress.quantizers_qat import DKMQuantizer, KMeansQATQuantizer, LSQQuantizer, grad_scale
from spikefit.compress.stages import GradualMagnitude
from spikefit.datasets import load_dataset
from spikefit.errors import TrainingError
from spikefit.nn import SNN, count_loss
from spikefit.quantizers import Codebook
from spikefit.trainer import FitConfig, default_model
from spikefit.training.config import steps_for
from spikefit.training.engine import Engine, TrainData

CFG = FitConfig(hidden=(16,), steps=6, batch_size=32, warmup_epochs=1, cat_epochs=1, prune_rounds=2, prune_epochs=1,
                finetune_epochs=1, train_limit=160, test_limit=60, fisher_samples=64, threads=1)


def engine_for(method, M, sparsity, cfg=CFG, callbacks=None):
    ds = load_dataset("digits")
    torch.manual_seed(cfg.seed)
    data = TrainData.build(ds, steps_for(ds, cfg), "rate", cfg)
    return Engine(default_model(ds, cfg), data, plan(method, M, sparsity, cfg), cfg, stage_accuracy=False,
                  callbacks=callbacks)


# -- pruning -------------------------------------------------------------------------------------

def test_gmp_cubic_schedule():
    assert P.gmp_level(0.0, 0.9) == 0.0 and P.gmp_level(1.0, 0.9) == pytest.approx(0.9)
    assert P.gmp_level(0.5, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    levels = [P.gmp_level(p, 0.9) for p in np.linspace(0, 1, 11)]
    assert all(b >= a for a, b in zip(levels, levels[1:]))


@pytest.mark.parametrize("method", ["gmp", "gmp-layer"])
def test_gmp_reaches_the_exact_sparsity_on_schedule(method):
    cfg = replace(CFG, prune_rounds=3, prune_epochs=1)           # a 3-epoch pruning stage, pruned over 2 of them
    seen = []
    eng = engine_for(method, 4, 0.75, cfg,
                     [lambda e: seen.append((e["stage"], e["epoch"], fsc.sparsity(e["model"])))])
    eng.run()
    prune = [s for st, _, s in seen if st == "prune"]
    assert len(prune) == 3
    assert 0 < prune[0] < 0.75                                   # part-way after the first epoch
    assert prune[1] == pytest.approx(0.75, abs=1e-3) and prune[2] == pytest.approx(prune[1])
    assert fsc.sparsity(eng.model) == pytest.approx(0.75, abs=1e-3)
    if method == "gmp-layer":
        for s in eng.model.synapses():
            assert 1 - s.nonzero() / s.mask.numel() == pytest.approx(0.75, abs=1e-2)


def test_gmp_ranks_latent_weights_not_codebook_values():
    model = SNN.mlp(6, [5], 3, seed=0)
    stage = GradualMagnitude("prune", 0, 1e-3, sparsity=0.5)
    scores = P.latent_magnitude_scores(model)
    stage.enter(type("E", (), {"model": model})())
    for s in model.synapses():
        kept = s.mask.numpy() > 0
        assert kept.mean() == pytest.approx(0.5, abs=0.1)
    flat = np.concatenate([v.ravel() for v in scores.values()])
    kept = np.concatenate([s.mask.numpy().ravel() > 0 for s in model.synapses()])
    assert flat[kept].min() >= flat[~kept].max()


def test_rewiring_keeps_the_synapse_count_constant():
    model = SNN.mlp(20, [16], 4, seed=1)
    fsc.prune_to_sparsity(model, P.latent_magnitude_scores(model), 0.75, per_layer=True)
    counts = [s.nonzero() for s in model.synapses()]
    masks = [s.mask.clone() for s in model.synapses()]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for s in model.synapses():
            s.weight.add_(0.01)                                  # dormant latents are 0 after apply_masks
    moved = sum(P.rewire(model, 0.2, gen) for _ in range(5))
    assert moved > 0
    assert [s.nonzero() for s in model.synapses()] == counts
    assert any(not torch.equal(m, s.mask) for m, s in zip(masks, model.synapses()))
    for s in model.synapses():                                   # a pruned synapse has a zero latent weight
        assert float((s.weight.detach() * (1 - s.mask)).abs().max()) == 0.0
    with pytest.raises(TrainingError, match="rewiring rate 1.5 must lie in"):
        P.rewire(model, 1.5, gen)


@pytest.mark.parametrize("method", ["rewire", "rigl"])
def test_rewiring_methods_train_at_the_budget(method):
    r = run_method(method, "digits", 4, 0.75, 0, CFG)
    assert r["measured_sparsity"] == pytest.approx(0.75, abs=0.01) and r["allocation"] == "global"


def test_snip_scores_are_mask_gradients():
    model = SNN.mlp(8, [6], 3, seed=2)
    x = (torch.rand(5, 12, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    y = torch.arange(12) % 3
    with torch.no_grad():
        model.synapses()[0].mask[0, :3] = 0
    model.apply_masks()
    sc = P.snip_scores(model, x, y, 1.0, batch_size=5)           # batches of 5: the sum is the same
    weights = [s.effective_weight().detach().clone().requires_grad_(True) for s in model.synapses()]
    orig = [s.effective_weight for s in model.synapses()]
    for s, w in zip(model.synapses(), weights):
        s.effective_weight = (lambda w=w: w)
    loss = count_loss(model(x), y, 1.0, reduction="sum")
    grads = torch.autograd.grad(loss, weights)
    for s, f in zip(model.synapses(), orig):
        s.effective_weight = f
    for s, w, g in zip(model.synapses(), weights, grads):
        want = (w * g / 12).detach().abs().double().numpy()
        got = sc[s.name]
        alive = s.mask.numpy() > 0
        assert np.all(np.isneginf(got[~alive]))
        np.testing.assert_allclose(got[alive], want[alive], rtol=1e-4, atol=1e-9)


def test_fsc_averages_its_scores_over_the_pruning_epochs(monkeypatch):
    evaluations = []
    real = fsc.fisher_scores

    def counted(*a, **k):
        evaluations.append(a[1].shape[1])
        return real(*a, **k)

    eng = engine_for("fsc", 4, 0.75)
    monkeypatch.setattr(fsc, "fisher_scores", counted)
    eng.run()
    monkeypatch.setattr(fsc, "fisher_scores", real)
    # round 1: all 64 samples, its recovery epoch: a quarter of them; round 2 (the last): all 64
    assert evaluations == [64, 16, 64]
    neuron, synapse = eng.fisher_ema
    assert set(synapse) == {s.name for s in eng.model.synapses()}
    assert fsc.sparsity(eng.model) == pytest.approx(0.75, abs=0.01)
    point = engine_for("fsc-point", 4, 0.75)
    point.run()
    assert point.fisher_ema is None and fsc.sparsity(point.model) == pytest.approx(0.75, abs=0.01)


def test_fisher_ema_blends_each_evaluation_and_restarts_a_changed_layer():
    from spikefit.training.stages import fisher_ema

    eng = engine_for("fsc", 4, 0.5)
    x, y = eng.data.x_fisher, eng.data.y_fisher
    a = fisher_ema(eng, x[:, :32], y[:32])
    b = fsc.fisher_scores(eng.model, x[:, 32:], y[32:], eng.logit_scale, shrinkage=eng.config.fisher_shrinkage)
    avg = fisher_ema(eng, x[:, 32:], y[32:])
    for k in a[1]:
        np.testing.assert_allclose(avg[1][k], 0.5 * a[1][k] + 0.5 * b[1][k], rtol=1e-6)
    for k in a[0]:
        np.testing.assert_allclose(avg[0][k], 0.5 * a[0][k] + 0.5 * b[0][k], rtol=1e-6)
    name = eng.model.synapses()[0].name
    eng.fisher_ema = ({}, {name: np.zeros((3, 3))})            # a connection of another shape: new scores
    again = fisher_ema(eng, x[:, 32:], y[32:])
    np.testing.assert_allclose(again[1][name], b[1][name], rtol=1e-6)


def test_equal_width_matches_the_synapse_budget():
    assert P.synapse_count(80, (256,), 10) == 23040
    assert P.equal_width(80, (256,), 10, 2304) == (25,)          # 25 * 90 = 2250 <= 2304 < 26 * 90
    w = P.equal_width(64, (100, 50), 10, 5000)
    assert P.synapse_count(64, w, 10) <= 5000
    with pytest.raises(TrainingError, match="fewer than a network with one neuron"):
        P.equal_width(80, (256,), 10, 10)


def test_dense_reference_trains_the_narrower_network():
    r = run_method("dense", "digits", 4, 0.75, 0, CFG)
    assert r["hidden"] == [4] and r["measured_sparsity"] == 0.0
    assert r["synapses"] == 4 * (64 + 10)


# -- quantization -----------------------------------------------------------------------------------

def test_lsq_step_gets_the_scaled_gradient():
    torch.manual_seed(0)
    w = torch.randn(10, 20, requires_grad=True)
    q = LSQQuantizer(4, w)
    assert q.qmax == 2 and q.g == pytest.approx(1 / np.sqrt(200 * 2))
    out = q(w)
    assert len(torch.unique(out.detach() / q.scale).round()) <= 5        # ±1, ±2 and 0
    (out * torch.linspace(-1, 1, 200).reshape(10, 20)).sum().backward()
    g_lsq = float(q.step.grad) / q.s0                                  # d/ds of s = s0 * step
    s = torch.tensor(q.scale, requires_grad=True)                      # the same, without the gradient scale
    (torch.clamp(torch.round(w.detach() / s) + (w.detach() / s - (w.detach() / s).detach()), -2, 2) * s
     * torch.linspace(-1, 1, 200).reshape(10, 20)).sum().backward()
    assert g_lsq != 0 and g_lsq == pytest.approx(float(s.grad) * q.g, rel=1e-5)
    assert w.grad is not None and float(w.grad.abs().sum()) > 0
    x = torch.tensor(3.0, requires_grad=True)
    grad_scale(x, 0.25).backward()
    assert float(x.grad) == 0.25
    with pytest.raises(TrainingError, match="LSQ needs an even number of non-zero levels"):
        LSQQuantizer(3, w)


def _two_clusters():
    g = torch.Generator().manual_seed(0)
    return torch.cat([-1 + 0.05 * torch.randn(50, generator=g), 1 + 0.05 * torch.randn(50, generator=g)]).reshape(10, 10)


def test_dkm_centroids_move_by_the_soft_assignment():
    w = _two_clusters().requires_grad_(True)
    q = DKMQuantizer(Codebook(np.array([[-0.5, 0.4]]), None, None), np.zeros(10, dtype=np.int64), "layer",
                     tau=0.1, iters=4, zero=False)
    q.sigma2.fill_(float(w.detach().var()))
    assert not q.codebook.centers.requires_grad
    q.train()
    out = q(w)
    c = q.codebook.centers.detach().numpy()[0]
    assert c[0] == pytest.approx(-1.0, abs=0.1) and c[1] == pytest.approx(1.0, abs=0.1)
    out.pow(2).sum().backward()
    assert float(w.grad.abs().sum()) > 0                       # through the attention and the EM steps
    q.eval()
    before = q.codebook.centers.clone()
    q(torch.zeros(10, 10))
    assert torch.equal(before, q.codebook.centers)             # no update outside training
    q.mode = "hard"
    assert set(np.round(q(w).detach().numpy().ravel(), 5)) <= set(np.round(c, 5))


def test_kmeans_qat_reclusters_the_latent_weights():
    w = _two_clusters().requires_grad_(True)
    q = KMeansQATQuantizer(Codebook(np.array([[-0.2, 0.1]]), None, None), np.zeros(10, dtype=np.int64), "layer",
                           iters=3, zero=True)
    q.train()
    out = q(w)
    c = q.codebook.centers.detach().numpy()[0]
    np.testing.assert_allclose(c, [float(w.detach()[:5].mean()), float(w.detach()[5:].mean())], atol=1e-5)
    out.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))             # straight-through


@pytest.mark.parametrize("method, distinct", [("lsq", 4), ("dkm", 4), ("kmeans-qat", 4), ("cat-lloyd", 4),
                                              ("cat-hard", 4)])
def test_qat_methods_deploy_at_most_M_values(method, distinct):
    r = run_method(method, "digits", 4, 0.0, 0, CFG)
    assert 1 <= r["max_distinct"] <= distinct


def test_regrowth_keeps_counts_and_revives_the_steepest_dormant_synapses():
    model = SNN.mlp(8, [6], 3, seed=3)
    fsc.prune_to_sparsity(model, P.latent_magnitude_scores(model), 0.5, per_layer=True)
    x = (torch.rand(5, 16, 8, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    y = torch.arange(16) % 3
    grads = P.dense_gradient(model, x, y, 1.0)
    s0 = model.synapses()[0]
    assert float(grads[s0.name][s0.mask == 0].abs().sum()) > 0   # pruned entries have a gradient too
    counts = [s.nonzero() for s in model.synapses()]
    dormant = s0.mask == 0
    best = int(torch.argmax(torch.where(dormant, grads[s0.name].abs(), -1.0)))
    scores = P.latent_magnitude_scores(model)
    assert P.regrow(model, scores, grads, 0.2) > 0
    assert [s.nonzero() for s in model.synapses()] == counts
    assert s0.mask.reshape(-1)[best] == 1 and s0.weight.reshape(-1)[best] == 0


@pytest.mark.parametrize("method", ["fsc-gmp", "fsc-regrow"])
def test_fsc_variants_reach_the_sparsity(method):
    r = run_method(method, "digits", 4, 0.75, 0, CFG)
    assert r["measured_sparsity"] == pytest.approx(0.75, abs=0.01) and r["fsc_neurons"] is True


def test_cat_lloyd_learns_its_codebook_after_the_cat_stage_and_fixes_it_to_fine_tune():
    seen = []

    def record(e):
        q = e["model"].synapses()[0].quant
        if q is not None:
            seen.append((e["stage"], q.mode, q.codebook.centers.requires_grad))

    eng = engine_for("cat-lloyd", 4, 0.0, callbacks=[record])
    eng.run()
    assert ("compress", "lloyd", False) in seen and ("train", "hard", True) in seen
    assert ("finetune", "hard", False) in seen
    q = eng.model.synapses()[0].quant
    assert q.mode == "hard" and q.fixed and not q.codebook.centers.requires_grad
    k = engine_for("kmeans-qat", 4, 0.0)
    k.run()
    assert not k.model.synapses()[0].quant.codebook.centers.requires_grad


@pytest.mark.parametrize("scope, mode", [("layer", "lloyd"), ("neuron", "hard")])
def test_cat_runs_its_default_mode_by_scope(scope, mode):
    seen = set()

    def record(e):
        q = e["model"].synapses()[0].quant
        if q is not None and e["stage"] == "compress":
            seen.add((q.mode, q.codebook.centers.requires_grad))

    ds = load_dataset("digits")
    torch.manual_seed(CFG.seed)
    data = TrainData.build(ds, steps_for(ds, CFG), "rate", CFG)
    Engine(default_model(ds, CFG), data, plan("cat", 4, 0.0, CFG, scope=scope), CFG, stage_accuracy=False,
           callbacks=[record]).run()
    assert seen == {(mode, mode == "hard")}


def test_qat_scopes():
    r = run_method("kmeans-qat", "digits", 2, 0.0, 0, CFG, scope="neuron")
    assert 1 <= r["max_distinct"] <= 2
    with pytest.raises(TrainingError, match="method 'lsq' does not run at scope 'neuron'; use scope 'layer'$"):
        run_method("lsq", "digits", 4, 0.0, 0, CFG, scope="neuron")


@pytest.mark.parametrize("method", ["rewire", "rigl"])
def test_rewiring_moves_synapses_at_a_constant_count(method):
    cfg = replace(CFG, prune_rounds=3, prune_epochs=1)
    seen = []

    def record(e):
        if e["stage"] == "prune":
            seen.append([(s.nonzero(), s.mask.clone()) for s in e["model"].synapses()])

    engine_for(method, 4, 0.75, cfg, [record]).run()
    assert len(seen) == 3
    assert [n for n, _ in seen[0]] == [n for n, _ in seen[-1]]            # the count per connection holds
    assert any(not torch.equal(a, b) for (_, a), (_, b) in zip(seen[0], seen[1]))   # and synapses moved
