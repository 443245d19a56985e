"""spikefit.fsc: Fisher scores against per-sample brute force, budgets, masks that stay zero."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spikefit import chipfit, fsc
from spikefit.cat import CatSpec, attach_cat
from spikefit.errors import DoesNotFitError, TrainingError
from spikefit.placement import place
from spikefit.spec import TargetSpec
from spikefit.nn import SNN, Conv, Flatten, LIF, Linear, Probe, count_loss

SCALE = 0.5


def _tiny(recurrent=False, seed=0) -> SNN:
    model = SNN.mlp(6, [5], 3, dv=0.125, recurrent=recurrent, gain=2.0, seed=seed)
    return model


def _data(n=7, t=6, n_in=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, n, n_in, generator=g) < 0.5).float()
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def _brute_force(model: SNN, x, y):
    """One sample at a time: autograd of L_n w.r.t. a (1, n) spike mask and w.r.t. each weight."""
    n = x.shape[1]
    neuron = {p.name: np.zeros(p.size) for p in model.populations()}
    synapse = {s.name: np.zeros(tuple(s.weight.shape)) for s in model.synapses()}
    for i in range(n):
        probe = Probe()
        out = model(x[:, i:i + 1], probe)
        loss = count_loss(out, y[i:i + 1], SCALE, reduction="sum")
        weights = [s.weight for s in model.synapses()]
        grads = torch.autograd.grad(loss, [probe.masks[p.name] for p in model.populations()] + weights,
                                    allow_unused=True)
        for p, g in zip(model.populations(), grads):
            neuron[p.name] += g.reshape(-1).numpy() ** 2
        for s, g in zip(model.synapses(), grads[len(model.populations()):]):
            # dL/dW_latent = dL/dW_eff for float weights (no quantizer): contribution = w * dL/dw
            synapse[s.name] += (s.effective_weight().detach() * g).numpy() ** 2
    return ({k: v / (2 * n) for k, v in neuron.items()}, {k: v / (2 * n) for k, v in synapse.items()})


@pytest.mark.parametrize("recurrent", [False, True])
def test_fisher_scores_equal_per_sample_brute_force(recurrent):
    model = _tiny(recurrent)
    x, y = _data()
    neuron, synapse = fsc.fisher_scores(model, x, y, SCALE, batch_size=3)  # batches split the samples
    ref_n, ref_s = _brute_force(model, x, y)
    for k in ref_n:
        np.testing.assert_allclose(neuron[k], ref_n[k], rtol=1e-4, atol=1e-9)
    for k in ref_s:
        np.testing.assert_allclose(synapse[k], ref_s[k], rtol=1e-4, atol=1e-9)
    assert sum(v.sum() for v in neuron.values()) > 0


def test_fisher_scores_of_a_convolution_match_brute_force():
    g = torch.Generator().manual_seed(1)
    model = SNN([Conv("conv1", (1, 4, 4), 2, 3, padding=1, gain=2.0, generator=g), LIF("lif1", (2, 4, 4)),
                 Flatten("flat", (2, 4, 4)), Linear("fc2", 32, 3, gain=2.0, generator=g), LIF("lif2", (3,))], (1, 4, 4))
    x, y = _data(n=5, n_in=16)
    neuron, synapse = fsc.fisher_scores(model, x, y, SCALE, batch_size=2)
    ref_n, ref_s = _brute_force(model, x, y)
    np.testing.assert_allclose(synapse["conv1"], ref_s["conv1"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(neuron["lif1"], ref_n["lif1"], rtol=1e-4, atol=1e-9)


def test_neuron_score_is_the_mask_gradient_squared():
    """F_i = 1/(2N) sum_n (sum_t s dL/ds)^2: check against spikes and dL/ds captured directly."""
    model = _tiny()
    x, y = _data(n=4)
    neuron, _ = fsc.fisher_scores(model, x, y, SCALE)
    spikes = {}
    hid = model.stage("lif1")
    h = hid.register_forward_hook(lambda m, i, o: spikes.__setitem__("s", o))
    out = model(x)
    h.remove()
    s = spikes["s"]
    s.retain_grad()
    count_loss(out, y, SCALE, reduction="sum").backward()
    g = (s * s.grad).sum(0).detach()                                 # (b, n)
    np.testing.assert_allclose(neuron["lif1"], (g ** 2).sum(0).numpy() / (2 * 4), rtol=1e-5, atol=1e-10)


def test_shrinkage_pulls_each_curvature_towards_its_connections_mean():
    w = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    h = np.array([[4.0, 1.0, 2.0], [7.0, 1.0, 0.0]])
    scores = w ** 2 * h
    scores[1, 2] = -np.inf                                          # pruned: not in the mean, stays pruned
    assert fsc.shrink_synapse_scores(scores, w, 0.0) is scores
    hbar = np.mean([4.0, 1.0, 2.0, 1.0])                            # unpruned non-zero weights only
    half = fsc.shrink_synapse_scores(scores, w, 0.5)
    np.testing.assert_allclose(half[0], w[0] ** 2 * (0.5 * h[0] + 0.5 * hbar))
    assert half[1, 0] == 0.0 and half[1, 1] == pytest.approx(9 * (0.5 + 0.5 * hbar)) and np.isneginf(half[1, 2])
    full = fsc.shrink_synapse_scores(scores, w, 1.0)                # magnitude order within the connection
    np.testing.assert_allclose(full[np.isfinite(full)], (w ** 2 * hbar)[np.isfinite(full)])
    with pytest.raises(TrainingError, match=r"^fisher_shrinkage 1.5 must lie in \[0, 1\]$"):
        fsc.shrink_synapse_scores(scores, w, 1.5)


def test_fisher_scores_apply_the_shrinkage():
    model = _tiny()
    x, y = _data()
    raw = fsc.fisher_scores(model, x, y, SCALE)[1]
    shrunk = fsc.fisher_scores(model, x, y, SCALE, shrinkage=0.5)[1]
    for k, s in ((s.name, s) for s in model.synapses()):
        np.testing.assert_allclose(shrunk[k], fsc.shrink_synapse_scores(raw[k], s.effective_weight().detach().numpy(), 0.5))


def test_pruned_synapses_score_minus_infinity():
    model = _tiny()
    with torch.no_grad():
        model.stage("fc1").mask[0, :3] = 0
    _, synapse = fsc.fisher_scores(model, *_data(), SCALE)
    assert np.isneginf(synapse["fc1"][0, :3]).all() and np.isfinite(synapse["fc1"][1:]).all()


def chip(core: dict | None = None, **limits) -> TargetSpec:
    return TargetSpec.from_dict({"name": "t", "limits": limits, **({"core": core} if core else {})})


def test_budgets_hold_after_pruning():
    model = SNN.mlp(30, [20], 4, seed=2)
    rng = np.random.default_rng(0)
    scores = {s.name: rng.random(tuple(s.weight.shape)) for s in model.synapses()}
    target = chip(synapses=300, fan_in=12, fan_out=3)
    fsc.prune_synapses(model, scores, target.limits)
    use = chipfit.usage(chipfit.report(model, target))
    assert use["synapses"] <= 300 and use["fan_in"] <= 12 and use["fan_out"] <= 3
    assert chipfit.binding(model, target) == []


@pytest.mark.parametrize("share", [True, False])
def test_per_core_budgets_hold_on_the_placement(share):
    model = SNN.mlp(30, [20], 4, seed=2)
    rng = np.random.default_rng(1)
    scores = {s.name: rng.random(tuple(s.weight.shape)) for s in model.synapses()}
    cores = 3 if share else 4                 # 20 + 4 neurons, 8 per core
    target = chip({"share_layers": share}, neurons_per_core=8, synapses_per_core=100, axons_per_core=10, cores=cores)
    assert chipfit.binding(model, target) == ["axons_per_core", "cores"]   # 30 sources per neuron; 3 neurons per core
    placement = place(model.to_network(), target, by_neurons=True)    # what pruning aims for
    assert placement.n_cores == cores
    fsc.prune_synapses(model, scores, target.limits, placement=placement)
    after = place(model.to_network(), target)                         # verify's placement
    assert after.synapses.max() <= 100 and after.axons.max() <= 10 and after.n_cores == cores
    assert chipfit.binding(model, target) == []
    if share:   # lif1's last 4 neurons and lif2's 4 share core 2: one budget for both layers
        assert placement.layers_on(2) == ["lif1", "lif2"] == after.layers_on(2)


def test_fan_out_in_cores():
    model = SNN.mlp(6, [10], 8, seed=0)  # lif2 (8 neurons) spans 2 cores of 4
    scores = {s.name: np.random.default_rng(2).random(tuple(s.weight.shape)) for s in model.synapses()}
    target = chip({"share_layers": False}, neurons_per_core=4, fan_out=1, fan_out_unit="cores")
    assert chipfit.binding(model, target) == ["fan_out"]
    placement = place(model.to_network(), target, by_neurons=True)
    fsc.prune_synapses(model, scores, target.limits, placement=placement)
    cols = model.stage("fc2").mask.numpy().T                          # (pre, post)
    core = placement.core_of("lif2")
    cores = np.stack([cols[:, core == c].any(1) for c in np.unique(core)], 1)
    assert (cores.sum(1) <= 1).all() and cols.sum() > 0
    assert chipfit.binding(model, target) == []
    with pytest.raises(TrainingError, match=r"fan_out in cores need the network's placement"):
        fsc.prune_synapses(model, scores, target.limits)


def test_masks_survive_optimizer_steps_and_export():
    model = _tiny()
    attach_cat(model, CatSpec(M=3, scope="layer", weight_bits=8))
    fsc.prune_to_sparsity(model, fsc.magnitude_scores(model), 0.6)
    masks = {s.name: s.mask.clone() for s in model.synapses()}
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = _data()
    for _ in range(3):
        opt.zero_grad()
        count_loss(model(x), y, SCALE).backward()
        opt.step()
        model.apply_masks()
    for s in model.synapses():
        off = masks[s.name] == 0
        assert (s.weight[off] == 0).all() and (s.effective_weight()[off] == 0).all()
    net = model.to_network()
    for s in model.synapses():
        w = net.nodes[s.name].weight
        dense = w.toarray() if sp.issparse(w) else w
        assert np.all(dense[masks[s.name].numpy() == 0] == 0)
    assert fsc.sparsity(model) == pytest.approx(0.6, abs=0.01)


def test_prune_to_sparsity_per_layer():
    model = SNN.mlp(20, [10], 5, seed=0)
    fsc.prune_to_sparsity(model, fsc.random_scores(model, np.random.default_rng(0)), 0.75, per_layer=True)
    for s in model.synapses():
        assert s.nonzero() == round(s.mask.numel() * 0.25)
    with pytest.raises(TrainingError, match="sparsity 1.0 must lie in"):
        fsc.prune_to_sparsity(model, fsc.magnitude_scores(model), 1.0)


def test_magnitude_ties_broken_by_latent_weight():
    model = SNN.mlp(4, [2], 2, seed=0)
    with torch.no_grad():
        fc1 = model.stage("fc1")
        fc1.weight.copy_(torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5]]))
        fc1.quant = _Snap()
        fc1.weight.add_(torch.tensor([[0.01, 0.02, 0.01, 0.03], [0.0, 0.0, 0.0, 0.0]]))
    s = fsc.magnitude_scores(model)["fc1"]
    assert np.argsort(-s.ravel())[:2].tolist() == [3, 2]


class _Snap(torch.nn.Module):
    """Rounds to 0.1 / 0.5 (two values), to create ties."""

    def forward(self, w):
        return torch.where(w.abs() > 0.3, 0.5 * torch.sign(w), 0.1 * torch.sign(w))


def test_neuron_pruning_meets_neuron_and_core_budgets():
    model = SNN.mlp(6, [20], 4, seed=0)
    scores = {"lif1": np.arange(20, dtype=float), "lif2": np.ones(4)}
    removed = fsc.prune_neurons(model, scores, chip(neurons=12).limits, chip(neurons=12))
    assert removed == 12 and model.stage("lif1").size == 8 and model.stage("lif2").size == 4
    # the kept neurons were the highest scoring (12..19): their incoming rows are preserved
    model2 = SNN.mlp(6, [20], 4, seed=0)
    assert torch.equal(model.stage("fc1").weight, model2.stage("fc1").weight[12:])
    model3 = SNN.mlp(6, [20], 4, seed=0)
    alone = chip({"share_layers": False}, cores=3, neurons_per_core=4)
    fsc.prune_neurons(model3, scores, alone.limits, alone)  # 2 hidden cores + 1 output
    assert model3.stage("lif1").size == 8 and place(model3.to_network(), alone).n_cores == 3
    model4 = SNN.mlp(6, [20], 4, seed=0)
    shared = chip(cores=3, neurons_per_core=4)              # layers share cores: 8 hidden + 4 outputs
    fsc.prune_neurons(model4, scores, shared.limits, shared)
    assert model4.stage("lif1").size == 8 and place(model4.to_network(), shared).n_cores == 3


def test_infeasible_targets_stop_before_training():
    model = SNN.mlp(6, [20], 10, seed=0)
    with pytest.raises(DoesNotFitError, match=r"target 't' cannot hold this network even pruned to one neuron per "
                                              r"hidden layer and one synapse per neuron: neurons needs 11 of 8"):
        chipfit.check_feasible(model, chip(neurons=8))
    with pytest.raises(DoesNotFitError, match=r"cores needs 4 of 2"):
        chipfit.check_feasible(model, chip({"share_layers": False}, cores=2, neurons_per_core=4))
    chipfit.check_feasible(model, chip(cores=3, neurons_per_core=4))  # shared: 1 hidden + 10 outputs on 3 cores
    chipfit.check_feasible(model, chip(neurons=11, fan_in=1))


def test_interpolated_budgets_are_geometric():
    model = SNN.mlp(10, [10], 2, seed=0)  # 120 synapses
    target = chip(synapses=30, neurons_per_core=64)
    use = chipfit.usage(chipfit.report(model, target))
    assert use["synapses"] == 120
    b = fsc.interpolate(target.limits, use, 0.5)
    assert b.synapses == 60 and b.neurons_per_core == 64
    assert fsc.interpolate(target.limits, use, 1.0).synapses == 30


def test_fsc_sparsity_may_remove_whole_neurons_and_meets_the_count_exactly():
    model = SNN.mlp(4, [3], 2, seed=0)                                # fc1 3x4, fc2 2x3: 18 weights
    synapse = {"fc1": np.full((3, 4), 1.0), "fc2": np.full((2, 3), 1.0)}
    synapse["fc1"][2, 0] = 0.1                                         # the cheapest single synapse
    neuron = {"lif1": np.array([5.0, 0.6, 9.0]), "lif2": np.ones(2)}   # neuron 1: 0.6 / 6 synapses = 0.1 each
    fsc.prune_to_sparsity(model, synapse, 7 / 18, neuron_scores=neuron)  # free 7: neuron 1 (6) + fc1[2, 0]
    fc1, fc2 = model.stage("fc1").mask.numpy(), model.stage("fc2").mask.numpy()
    assert fc1[1].sum() == 0 and fc2[:, 1].sum() == 0 and fc1[2, 0] == 0
    assert fc1.sum() + fc2.sum() == 11
    model2 = SNN.mlp(4, [3], 2, seed=0)
    fsc.prune_to_sparsity(model2, synapse, 3 / 18, neuron_scores=neuron)  # neuron 1 would free 6 > 3: skipped
    assert model2.stage("fc1").mask.numpy()[1].sum() == 4
    assert model2.stage("fc1").mask.sum() + model2.stage("fc2").mask.sum() == 15


def test_dead_neurons_are_removed():
    model = SNN.mlp(5, [6], 3, seed=0)
    with torch.no_grad():
        model.stage("fc1").mask[1] = 0        # neuron 1: no input, never spikes
        model.stage("fc2").mask[:, 4] = 0     # neuron 4: reaches nothing
    model.apply_masks()
    assert fsc.remove_dead_neurons(model) == 2
    assert model.stage("lif1").size == 4 and model.stage("fc2").weight.shape == (3, 4)


def test_total_budget_with_neuron_scores_meets_the_count():
    model = SNN.mlp(30, [20], 4, seed=2)
    rng = np.random.default_rng(0)
    scores = {s.name: rng.random(tuple(s.weight.shape)) for s in model.synapses()}
    neuron = {"lif1": rng.random(20) * 0.01, "lif2": np.ones(4)}
    target = chip(synapses=200, fan_in=25)
    fsc.prune_synapses(model, scores, target.limits, neuron)
    use = chipfit.usage(chipfit.report(model, target))
    assert use["synapses"] == 200 and use["fan_in"] <= 25
