"""spikefit.nn: LIF dynamics, surrogate gradient, conversion to and from the Network description."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spikefit import network as N
from spikefit.emulator import EmulatorBackend
from spikefit.errors import ModelError
from spikefit.nn import LIF, SNN, Conv, Flatten, Linear, snap_decay


def _lif_run(a, **kw):
    pop = LIF("p", (a.shape[-1],), **kw)
    return pop(torch.as_tensor(a, dtype=torch.float32)).detach().numpy()


def test_lif_matches_hand_computed_values():
    # du = 0.5, dv = 0.25, vth = 1, constant input 0.625 then 0:
    # t0: u = .625          v = .625                 no spike
    # t1: u = .3125+.625    v = .46875+.9375 = 1.40625  spike, v = 0
    # t2: u = .46875+.625   v = 1.09375              spike, v = 0
    # t3: u = .546875       v = .546875              no spike
    a = np.array([0.625, 0.625, 0.625, 0.0]).reshape(4, 1, 1)
    s = _lif_run(a, du=0.5, dv=0.25, vth=1.0)
    assert s.reshape(-1).tolist() == [0, 1, 1, 0]


def test_threshold_is_strict_and_reset_is_to_zero():
    # du = 1 (u = input), dv = 0 (IF): v = .5, 1.0 (== vth: no spike), 1.5 (spike -> 0), .5
    a = np.full((4, 1, 1), 0.5)
    assert _lif_run(a, du=1.0, dv=0.0, vth=1.0).reshape(-1).tolist() == [0, 0, 1, 0]


def test_bias_is_added_every_step():
    pop = LIF("p", (2,), du=1.0, dv=0.0, vth=1.0, bias=True)
    with torch.no_grad():
        pop.bias.copy_(torch.tensor([0.5, 0.25]))
    s = pop(torch.zeros(4, 1, 2)).detach().numpy()[:, 0]
    # neuron 0: v = .5, 1.0, 1.5* ,.5 ; neuron 1: .25 .5 .75 1.0 (never above)
    assert s[:, 0].tolist() == [0, 0, 1, 0] and s[:, 1].tolist() == [0, 0, 0, 0]


def test_recurrent_connection_delivers_previous_step():
    rec = Linear("rec", 1, 1)
    with torch.no_grad():
        rec.weight.fill_(1.5)
    pop = LIF("p", (1,), du=1.0, dv=0.0, vth=1.0, recurrent=rec)
    a = torch.tensor([2.0, 0.0, 0.0, 0.0]).reshape(4, 1, 1)
    # t0: v = 2 spike; t1: input 0 + 1.5 (spike of t0) -> spike; t2: 1.5 -> spike; ...
    assert pop(a).reshape(-1).tolist() == [1, 1, 1, 1]
    with torch.no_grad():
        rec.weight.fill_(0.75)
    # t1: .75; t2: .75 + 0 (no spike at t1) = .75 -> never again
    assert pop(a).reshape(-1).tolist() == [1, 0, 0, 0]


def test_feed_forward_delivers_within_the_step():
    model = SNN.mlp(1, [1], 1, du=1.0, dv=0.0)
    with torch.no_grad():
        for s in model.synapses():
            s.weight.fill_(2.0)
    x = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    assert model(x).reshape(-1).tolist() == [1, 0, 0]  # input at t0 -> hidden t0 -> output t0


def test_surrogate_gradient_reaches_every_weight():
    torch.manual_seed(0)
    model = SNN.mlp(8, [6], 3, dv=0.125, seed=1)
    x = (torch.rand(10, 4, 8) < 0.5).float()
    model(x).sum().backward()
    for s in model.synapses():
        assert s.weight.grad is not None and torch.isfinite(s.weight.grad).all()
        assert s.weight.grad.abs().sum() > 0


def test_decays_snap_to_4096ths():
    assert snap_decay(0.1) == round(0.1 * 4096) / 4096
    pop = LIF("p", (1,), du=0.3, dv=0.1)
    assert pop.du * 4096 == round(pop.du * 4096) and pop.dv * 4096 == round(pop.dv * 4096)


def _dyadic(model: SNN, seed: int = 0):
    """Weights that are multiples of 1/64: float32 and float64 sums are exact, spikes must agree."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for s in model.synapses():
            s.weight.copy_(torch.randint(-40, 60, s.weight.shape, generator=g).float() / 64)


@pytest.mark.parametrize("recurrent", [False, True])
def test_spikes_equal_the_reference_float_emulator(recurrent):
    model = SNN.mlp(12, [9], 4, du=0.5, dv=0.25, recurrent=recurrent, seed=2)
    _dyadic(model)
    x = (np.random.default_rng(0).random((10, 5, 12)) < 0.4).astype(np.float32)
    ours = model(torch.as_tensor(x)).detach().numpy()
    ref = EmulatorBackend(mode="float").run(model.to_network(), x)["lif2"]
    assert np.array_equal(ours.astype(bool), ref)
    assert ours.sum() > 0


def _conv_model() -> SNN:
    g = torch.Generator().manual_seed(0)
    conv = Conv("conv1", (1, 6, 6), 3, 3, stride=1, padding=1, generator=g)
    return SNN([conv, LIF("lif1", (3, 6, 6), dv=0.125), Flatten("flat", (3, 6, 6)),
                Linear("fc2", 108, 4, generator=g), LIF("lif2", (4,))], (1, 6, 6))


@pytest.mark.parametrize("make", [lambda: SNN.mlp(10, [7], 3, dv=0.125, seed=0),
                                  lambda: SNN.mlp(10, [7, 5], 3, recurrent=True, seed=0),
                                  _conv_model])
def test_network_round_trip_is_lossless(make):
    model = make()
    net = model.to_network()
    back = SNN.from_network(net)
    net2 = back.to_network()
    assert list(net.nodes) == list(net2.nodes) and net.edges == net2.edges
    for name, node in net.nodes.items():
        other = net2.nodes[name]
        if isinstance(node, (N.Dense, N.Conv2d)):
            assert np.array_equal(node.dense_weight() if isinstance(node, N.Dense) else node.weight,
                                  other.dense_weight() if isinstance(other, N.Dense) else other.weight)
        if isinstance(node, N.Neurons):
            assert (node.du, node.dv, node.vth) == (other.du, other.dv, other.vth)
    x = (torch.rand(6, 3, *model.input_shape) < 0.5).float()
    assert torch.equal(model(x), back(x))


def test_quantized_pruned_round_trip_keeps_codebook_and_zeros():
    from spikefit.cat import CatSpec, attach_cat, harden

    model = SNN.mlp(16, [12], 4, seed=3)
    attach_cat(model, CatSpec(M=4, scope="neuron", weight_bits=8))
    harden(model)
    with torch.no_grad():
        fc1 = model.stage("fc1")
        fc1.mask[:, :12] = 0  # 75 % pruned -> exported sparse
    model.apply_masks()
    net = model.to_network()
    d1 = net.nodes["fc1"]
    assert isinstance(d1.weight, sp.csr_array) and d1.kind == "sparse"
    assert np.all(d1.dense_weight()[:, :12] == 0)
    q = d1.quant
    assert q.scope == "neuron" and q.codebook.shape == (12, 4) and q.groups.tolist() == list(range(12))
    ints = d1.dense_weight() / q.scale
    assert np.array_equal(ints, np.rint(ints))
    back = SNN.from_network(net).to_network()
    assert np.array_equal(back.nodes["fc1"].dense_weight(), d1.dense_weight())
    assert np.array_equal(back.nodes["fc1"].quant.codebook, q.codebook)
    assert back.nodes["fc1"].quant.scale == q.scale


def test_nir_round_trip(tmp_path):
    from spikefit.nir_io import read_nir, write_nir

    model = SNN.mlp(10, [7], 3, dv=0.125, seed=0)
    write_nir(model.to_network(), tmp_path / "m.nir")
    back = SNN.from_network(read_nir(tmp_path / "m.nir"))
    x = (torch.rand(8, 4, 10) < 0.5).float()
    assert torch.equal(model(x), back(x))


def test_remove_neurons_equals_silencing_them():
    model = SNN.mlp(10, [8], 3, seed=4)
    x = (torch.rand(8, 5, 10) < 0.5).float()
    keep = np.array([0, 2, 3, 5, 7])
    with torch.no_grad():
        silenced = SNN.from_arch(model.arch())
        silenced.load_state_dict(model.state_dict())
        silenced.stage("fc2").weight[:, [1, 4, 6]] = 0
    model.remove_neurons("lif1", keep)
    assert model.stage("lif1").size == 5 and model.stage("fc1").weight.shape == (5, 10)
    assert torch.equal(model(x), silenced(x))
    with pytest.raises(ModelError, match="population 'lif2' is the readout"):
        model.remove_neurons("lif2", np.arange(2))


def _net(*nodes, edges=None):
    return N.Network({n.name: n for n in nodes}, edges or list(zip([n.name for n in nodes[:-1]],
                                                                   [n.name for n in nodes[1:]])))


def test_from_network_names_unsupported_nodes():
    w = np.ones((3, 4))
    branch = _net(N.Input("in", (4,)), N.Dense("a", w), N.Neurons("p", (3,)), N.Dense("b", np.ones((2, 4))),
                  N.Neurons("q", (2,)), edges=[("in", "a"), ("a", "p"), ("in", "b"), ("b", "q")])
    with pytest.raises(ModelError, match="node 'in' has inputs"):
        SNN.from_network(branch)
    no_pop = _net(N.Input("in", (4,)), N.Dense("fc", w), N.Output("out", (3,)))
    with pytest.raises(ModelError, match="node 'fc': a connection must feed a Neurons population"):
        SNN.from_network(no_pop)
    odd_decay = _net(N.Input("in", (4,)), N.Dense("fc", w), N.Neurons("p", (3,), du=0.3333))
    with pytest.raises(ModelError, match="node 'p': du=0.3333"):
        SNN.from_network(odd_decay)
