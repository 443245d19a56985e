"""spikefit.cat: codebook invariants, straight-through gradients, soft assignment, uniform QAT."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spikefit import network as N
from spikefit.cat import (Codebook, CodebookQuantizer, CatSpec, TernaryQuantizer, UniformQuantizer, attach_cat,
                          core_groups, distinct_levels, distinct_per_group, harden, kmeans_1d, lloyd_step,
                          power_of_two_scale, resolve_mode, scope_groups, weight_grid)
from spikefit.quantizers import build_quantizer
from spikefit.spec import TargetSpec
from spikefit.errors import TrainingError
from spikefit.nn import SNN, Conv, Flatten, LIF, Linear


def test_weight_grid():
    assert weight_grid(8) == (-128, 127)
    assert weight_grid(9) == (-256, 255)
    assert weight_grid(2, narrow=True) == (-1, 1)
    assert weight_grid(None) is None


def test_power_of_two_scale_holds_the_largest_weight():
    s = power_of_two_scale(0.3, 127, 1.0)
    assert 0.3 / s <= 127 and 0.3 / s > 63          # the finest power-of-two grid that holds 0.3
    assert np.log2(1.0 / s) == int(np.log2(1.0 / s))  # vth / scale is a power of two


def test_scope_groups():
    assert scope_groups("layer", 5).tolist() == [0] * 5
    assert scope_groups("neuron", 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(TrainingError, match="core codebook groups come from the target's placement"):
        scope_groups("core", 3)
    with pytest.raises(TrainingError, match="unknown codebook scope 'row'"):
        scope_groups("row", 3)


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    v = np.concatenate([c + 0.01 * rng.standard_normal(50) for c in (-1.0, -0.2, 0.3, 2.0)])
    c = kmeans_1d([v, np.zeros(0)], 4)
    assert np.allclose(np.sort(c[0]), [-1.0, -0.2, 0.3, 2.0], atol=0.01)
    assert np.allclose(c[1], np.linspace(-1, 1, 4))  # empty group


def test_kmeans_of_a_large_group_runs_on_a_seeded_sample(monkeypatch):
    import spikefit.quantizers as Q

    v = np.random.default_rng(1).normal(0, 0.1, 40_000)
    whole = kmeans_1d([v], 4, True)
    monkeypatch.setattr(Q, "KMEANS_SAMPLE", 4_000)
    sampled = kmeans_1d([v], 4, True)
    assert np.array_equal(sampled, kmeans_1d([v], 4, True))          # seeded: the same sample every time
    assert not np.array_equal(sampled, whole)                          # it did cluster a sample
    assert np.allclose(sampled, whole, atol=0.01)                      # near the whole group's centres


def _model(conv: bool = False) -> SNN:
    if conv:
        g = torch.Generator().manual_seed(0)
        return SNN([Conv("conv1", (2, 5, 5), 4, 3, padding=1, generator=g), LIF("lif1", (4, 5, 5)),
                    Flatten("flat", (4, 5, 5)), Linear("fc2", 100, 3, generator=g), LIF("lif2", (3,))], (2, 5, 5))
    return SNN.mlp(20, [12], 5, seed=1)


@pytest.mark.parametrize("scope", ["layer", "neuron", "core", "chip"])
@pytest.mark.parametrize("M", [2, 4])
@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("mode", ["hard", "lloyd"])
def test_codebook_invariants(scope, M, conv, mode):
    model = _model(conv)
    groups = core_groups(model, TargetSpec.from_dict({"name": "t", "limits": {"neurons_per_core": 8}})) if scope == "core" else None
    attach_cat(model, CatSpec(M=M, scope=scope, weight_bits=6, mode=mode), groups)
    # train a little so codebooks move
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = (torch.rand(6, 4, *model.input_shape) < 0.5).float()
    for _ in range(3):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
        lloyd_step(model)
    net = model.to_network()
    chip_values = set()
    for name in ("conv1" if conv else "fc1", "fc2"):
        node = net.nodes[name]
        q = node.quant
        w = node.dense_weight() if isinstance(node, N.Dense) else node.weight
        ints = w / q.scale
        assert np.array_equal(ints, np.rint(ints)), "every weight is scale * integer"
        assert ints.min() >= -32 and ints.max() <= 31, "within the signed 6-bit range"
        assert not np.any(np.rint(q.codebook / q.scale) == 0), "zero is not a codebook value"
        rows = ints.reshape(ints.shape[0], -1)
        groups = q.groups if not isinstance(node, N.Conv2d) else q.groups.reshape(rows.shape[0], -1)[:, 0]
        for g in np.unique(groups):
            vals = np.unique(rows[groups == g])
            vals = vals[vals != 0]
            assert len(vals) <= M
            assert set(vals * q.scale) <= set(q.codebook[g]), "weights are codebook values"
        chip_values |= set(np.unique(w[w != 0]).tolist())
    if scope == "chip":
        assert len(chip_values) <= M
    assert max(distinct_per_group(model).values()) <= M


def test_hard_assignment_straight_through_gradients():
    cb = Codebook(np.array([[-1.0, 0.5, 2.0]]), scale=None, bits=None)
    q = CodebookQuantizer(cb, np.zeros(2, dtype=np.int64), "layer", mode="hard")
    w = torch.tensor([[-0.9, 0.4, 1.9], [0.6, 0.7, -2.0]], requires_grad=True)
    out = q(w)
    assert out.tolist() == [[-1.0, 0.5, 2.0], [0.5, 0.5, -1.0]]
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (out * g).sum().backward()
    assert torch.equal(w.grad, g)                                   # identity to the latent weight
    assert cb.centers.grad.tolist() == [[1.0 + 6.0, 2.0 + 4.0 + 5.0, 3.0]]  # sum over assigned weights


def test_auto_mode_is_lloyd_for_shared_codebooks_and_hard_per_neuron():
    assert [resolve_mode("auto", s) for s in ("layer", "core", "chip", "neuron")] == ["lloyd"] * 3 + ["hard"]
    assert resolve_mode("soft", "layer") == "soft" and resolve_mode("hard", "chip") == "hard"
    assert CatSpec(M=4, scope="layer").mode == "lloyd" and CatSpec(M=4, scope="neuron").mode == "hard"
    model = SNN.mlp(4, [3], 2, seed=0)
    attach_cat(model, CatSpec(M=2, scope="neuron", weight_bits=8))
    assert all(s.quant.mode == "hard" and s.quant.codebook.centers.requires_grad for s in model.synapses())
    with pytest.raises(TrainingError, match="^unknown CAT mode 'kmeans'; use one of auto, hard, lloyd, soft$"):
        CatSpec(M=4, mode="kmeans")


def test_lloyd_step_moves_each_value_to_the_mean_of_its_weights():
    model = SNN.mlp(4, [3], 2, seed=0)
    attach_cat(model, CatSpec(M=3, scope="chip", weight_bits=None, mode="lloyd"))  # one codebook, both connections
    fc1, fc2 = model.synapses()
    cb = fc1.quant.codebook
    assert fc2.quant.codebook is cb and fc1.quant.mode == "lloyd" and not cb.centers.requires_grad
    with torch.no_grad():
        cb.centers.copy_(torch.tensor([[-1.0, 0.5, 5.0]]))                 # 5.0: no weight near it
        fc1.weight.copy_(torch.tensor([[-0.9, 0.4, 0.1, 0.6], [-1.3, 0.7, 0.02, 0.6], [0.3, -0.8, 0.6, 0.55]]))
        fc2.weight.copy_(torch.tensor([[-1.1, 0.45, 0.6], [0.6, 0.6, -0.05]]))
    fc1.mask[2, 3] = 0                                                       # pruned: latent 0.55 does not count
    lloyd_step(model)
    # nearest of (-1, 0.5, 5, 0): -1 <- {-0.9, -1.3, -0.8, -1.1}; 0.5 <- {0.4, 0.6, 0.7, 0.6, 0.3, 0.6, 0.45,
    # 0.6, 0.6, 0.6}; 0 <- {0.1, 0.02, -0.05} (absent synapses, not a codebook value)
    neg = np.mean([-0.9, -1.3, -0.8, -1.1])
    pos = np.mean([0.4, 0.6, 0.7, 0.6, 0.3, 0.6, 0.45, 0.6, 0.6, 0.6])
    np.testing.assert_allclose(cb.centers.detach().numpy(), [[neg, pos, 5.0]], rtol=1e-6)
    assert cb.centers.grad is None
    spec = fc1.quant.spec()
    assert spec["mode"] == "lloyd" and not build_quantizer(spec).codebook.centers.requires_grad  # resumes as it was
    harden(model)
    assert fc1.quant.mode == "hard" and cb.centers.requires_grad                # later stages learn the values
    before = cb.centers.detach().clone()
    lloyd_step(model)
    assert torch.equal(cb.centers.detach(), before)                             # hard codebooks are not Lloyd's


def test_grid_codebook_gradient_passes_rounding():
    cb = Codebook(np.array([[-0.3, 0.26]]), scale=0.125, bits=4)
    assert cb.integers().tolist() == [[-2.0, 2.0]]
    cb.values().sum().backward()
    assert cb.centers.grad.tolist() == [[1.0, 1.0]]
    tiny = Codebook(np.array([[0.01, -0.01]]), scale=0.125, bits=4)
    assert tiny.integers().tolist() == [[1.0, -1.0]]               # never rounds to zero


def test_soft_assignment_anneals_to_hard():
    cb = Codebook(np.array([[-1.0, 1.0]]), scale=None, bits=None)
    q = CodebookQuantizer(cb, np.zeros(1, dtype=np.int64), "layer", mode="soft", tau=10.0)
    w = torch.tensor([[0.2, -0.5, 0.9]], requires_grad=True)
    soft = q(w)
    assert soft.abs().max() < 0.5                                   # hot: blends the values
    soft.sum().backward()
    assert w.grad.abs().sum() > 0 and cb.centers.grad.abs().sum() > 0
    q.tau = 1e-4
    assert torch.allclose(q(w), torch.tensor([[1.0, -1.0, 1.0]]))   # cold: the nearest value


def test_uniform_quantizer_learns_and_snaps_scale():
    q = UniformQuantizer(4, 0.1)
    w = torch.tensor([0.05, -0.33, 0.9], requires_grad=True)
    out = q(w)
    assert torch.allclose(out, torch.tensor([0.1, -0.3, 0.7]))      # round, clamp at 7 steps
    out.sum().backward()
    assert q.log_scale.grad is not None and q.log_scale.grad != 0
    q.freeze(vth=1.0)
    assert q.scale == 1.0 / 8 and not q.log_scale.requires_grad      # 0.1 -> nearest 1 / 2^k


def test_ternary():
    q = TernaryQuantizer()
    w = torch.tensor([0.1, -1.0, 0.8, 0.02, -0.6])
    ints, quant = q.export(w)
    # mean|w| = .504, threshold .353: keeps -1, .8, -.6 with scale .8
    assert ints.tolist() == [0, -1, 1, 0, -1] and quant.scale == pytest.approx(0.8)


def test_targets_without_codebook_get_uniform_qat():
    model = _model()
    attach_cat(model, CatSpec(M=None, weight_bits=8))
    assert all(isinstance(s.quant, UniformQuantizer) for s in model.synapses())
    harden(model)
    net = model.to_network()
    for s in ("fc1", "fc2"):
        node = net.nodes[s]
        ints = node.dense_weight() / node.quant.scale
        assert np.array_equal(ints, np.rint(ints)) and np.log2(1 / node.quant.scale).is_integer()


def test_harden_puts_latent_weights_on_their_values():
    model = _model()
    attach_cat(model, CatSpec(M=3, scope="neuron", weight_bits=8, mode="soft"))
    harden(model)
    for s in model.synapses():
        assert s.quant.mode == "hard"
        assert torch.equal(s.weight, s.effective_weight())


def test_weight_scaling_none_exports_integers_and_integer_threshold():
    model = _model()
    attach_cat(model, CatSpec(M=4, scope="layer", weight_bits=8, weight_scaling="none"))
    harden(model)
    net = model.to_network()
    for name in ("fc1", "fc2"):
        assert net.nodes[name].quant.scale == 1.0
        w = net.nodes[name].dense_weight()
        assert np.array_equal(w, np.rint(w))
    vth = net.nodes["lif1"].vth
    assert vth == int(vth) and vth > 1
    x = (torch.rand(6, 4, 20) < 0.5).float()
    ref = SNN.from_network(net)
    assert torch.equal(ref(x), model(x))                            # rescaling keeps the spikes


def test_codebook_larger_than_grid_is_refused():
    with pytest.raises(TrainingError, match="unique_weights M=300 exceeds the 255 non-zero values of a 8-bit weight"):
        CatSpec(M=300, weight_bits=8)


def test_zero_level_makes_absent_synapses_not_codebook_values():
    cb = Codebook(np.array([[-1.0, 0.5, 2.0]]), scale=None, bits=None)
    q = CodebookQuantizer(cb, np.zeros(1, dtype=np.int64), "layer", zero=True)
    w = torch.tensor([[0.2, -0.45, 0.3, 1.1]])
    assert q(w).tolist() == [[0.0, 0.0, 0.5, 0.5]]                  # nearest level, 0 included
    q.zero = False
    assert q(w).tolist() == [[0.5, -1.0, 0.5, 0.5]]
    c = kmeans_1d([np.array([-1.0, -1.1, 0.01, -0.02, 0.9, 1.0])], 2, zero=True)
    assert np.allclose(np.sort(c[0]), [-1.05, 0.95])               # the pinned zero absorbs the small ones


def test_codebook_rows_hold_distinct_values_after_hardening():
    model = SNN.mlp(6, [4], 3, seed=0)
    attach_cat(model, CatSpec(M=4, scope="layer", weight_bits=6))
    q = model.synapses()[0].quant
    with torch.no_grad():
        q.codebook.centers.copy_(torch.tensor([[0.26, 0.24, -0.5, 0.25]]) / 0.25 * q.codebook.scale)  # 1, 1, -2, 1
    distinct_levels(model)
    ints = q.codebook.integers().detach().numpy()[0]
    assert sorted(ints.tolist()) == [-2, 1, 2, 3]          # the copies of 1 move to the nearest free integers
    assert 0 not in ints.tolist()
    harden(model)
    net = model.to_network()
    cb = np.rint(net.nodes["fc1"].quant.codebook / net.nodes["fc1"].quant.scale)
    assert all(len(set(row.tolist())) == len(row) for row in cb)
