"""spikefit Network -> the torch module of sinabs layers that spikefit-speck hands to sinabs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sinabs.activation as sa
import sinabs.layers as sl
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Pool2d
from spikefit_speck.convert import NoSinabsEquivalent, chip_threshold, to_sinabs
from spikefit_speck.graph import Graph
from spikefit_speck.corpus import Chain, fork, two_sources


def layers(model):
    module = model.module
    return list(module.layers.values() if hasattr(module, "layers") else module.children())


def test_conv_pool_dense_chain_becomes_the_same_sinabs_layers_with_the_same_weights():
    net = Chain("convert", (2, 10, 10)).conv(4, 3, bias=True).pool(2, "avg").dense(5).build()
    model = to_sinabs(net)
    assert model.input_shape == (2, 10, 10) and model.populations == ["lif1", "lif2"]
    kinds = [type(m) for m in layers(model)]
    assert kinds == [nn.Conv2d, sl.IAFSqueeze, nn.AvgPool2d, nn.Flatten, nn.Linear, sl.IAFSqueeze]
    conv, lin = layers(model)[0], layers(model)[4]
    np.testing.assert_array_equal(conv.weight.detach().numpy(), net.nodes["conv1"].weight)
    np.testing.assert_array_equal(conv.bias.detach().numpy(), net.nodes["conv1"].bias)
    np.testing.assert_array_equal(lin.weight.detach().numpy(), net.nodes["fc2"].weight)
    assert lin.bias is None
    assert isinstance(model.module, nn.Sequential)   # a chain: loadable with torch and sinabs alone
    iaf = layers(model)[1]
    # Speck fires at v >= threshold, spikefit at v > vth = 100: on the integer grid, threshold 101
    assert float(iaf.spike_threshold) == 101.0 and isinstance(iaf.reset_fn, sa.MembraneReset)
    assert float(iaf.min_v_mem) == -2.0 ** 15
    assert iaf.spike_fn is sa.MultiSpike
    with torch.no_grad():
        out = model.module(torch.ones((1, 2, 10, 10)))
    assert out.shape == (1, 5)


def test_thresholds_and_lower_bound_follow_the_weight_grid():
    assert chip_threshold(100.0, 1.0) == 101.0 and chip_threshold(100.5, 1.0) == 101.0
    assert chip_threshold(3.0, 0.5) == 3.5 and chip_threshold(0.3, None) == 0.3
    c = Chain("grid", (2, 6, 6)).conv(2, 3, vth=10.0).pool(2, "avg").dense(3, vth=4.0)
    for node in c.nodes:
        if hasattr(node, "weight"):
            node.weight = node.weight * 0.25
    model = to_sinabs(c.build())
    first, second = layers(model)[1], layers(model)[5]
    assert float(first.min_v_mem) == -(2.0 ** 15) * 0.25 and float(first.spike_threshold) == 10.25
    # after average pooling sinabs scales the weights by 1/4: the grid is 0.25 / 4
    assert float(second.min_v_mem) == -(2.0 ** 15) / 16 and float(second.spike_threshold) == 4.0625


def test_a_vector_input_is_fed_as_channels_and_flattened_before_the_linear_layer():
    model = to_sinabs(Chain("vector", (12,)).dense(6).dense(3).build())
    assert model.input_shape == (12, 1, 1)
    assert [type(m) for m in layers(model)] == [nn.Flatten, nn.Linear, sl.IAFSqueeze, nn.Linear, sl.IAFSqueeze]


def test_leaky_neurons_become_lif_layers_with_their_time_constants():
    model = to_sinabs(Chain("leaky", (2, 6, 6)).conv(2, 3, model="lif").dense(3, model="cuba-lif").build())
    lif, cuba = layers(model)[1], layers(model)[4]
    assert isinstance(lif, sl.LIFSqueeze) and lif.tau_syn is None
    assert float(torch.exp(-1 / lif.tau_mem.detach())) == pytest.approx(0.9, rel=1e-6)   # dv = 0.1 lost per step
    assert isinstance(cuba, sl.LIFSqueeze) and float(torch.exp(-1 / cuba.tau_syn.detach())) == pytest.approx(0.5, rel=1e-6)


def test_a_per_channel_population_bias_is_added_to_the_layer_bias():
    c = Chain("bias", (1, 5, 5)).conv(2, 3, bias=True)
    pop = c.nodes[-1]
    pop.bias = np.repeat([1.5, -2.0], 9)
    net = c.build()
    conv = layers(to_sinabs(net))[0]
    np.testing.assert_allclose(conv.bias.detach().numpy(), net.nodes["conv1"].bias + [1.5, -2.0])


def test_a_population_fed_by_two_layers_sums_them_with_merge():
    model = to_sinabs(two_sources("merge"))
    assert isinstance(model.module, Graph)
    assert sum(isinstance(m, sl.Merge) for m in layers(model)) == 1


def test_batch_size_and_subtractive_reset_reach_the_neurons():
    model = to_sinabs(Chain("sub", (3,)).dense(2).build(), batch_size=4, reset="subtract")
    iaf = layers(model)[2]
    assert iaf.batch_size == 4 and isinstance(iaf.reset_fn, sa.MembraneSubtract)
    with pytest.raises(NoSinabsEquivalent, match=r"reset 'hold' is not one of zero, subtract"):
        to_sinabs(Chain("sub", (3,)).dense(2).build(), reset="hold")


@pytest.mark.parametrize("build, message", [
    (lambda: Network({"a": Input("a", (4,)), "b": Input("b", (4,)), "fc": Dense("fc", np.ones((2, 8))),
                      "n": Neurons("n", (2,))}, [("a", "fc"), ("b", "fc"), ("fc", "n")]),
     r"the network has 2 inputs; Speck takes one input"),
    (lambda: Network.sequential(Input("in", (2, 3, 4, 5)), Dense("fc", np.ones((2, 120))), Neurons("n", (2,))),
     r"input 'in' has shape \(2, 3, 4, 5\); Speck takes \(channels, height, width\)"),
    (lambda: Network({"in": Input("in", (3,)), "fc": Dense("fc", np.ones((3, 3))), "n": Neurons("n", (3,)),
                      "rec": Dense("rec", np.ones((3, 3)))},
                     [("in", "fc"), ("fc", "n"), ("n", "rec"), ("rec", "n")]),
     r"edge rec -> n is recurrent; Speck's layers are feed-forward"),
    (lambda: Network.sequential(Input("in", (1, 4, 4)), Conv2d("c", np.ones((2, 1, 3, 3)), (1, 4, 4)),
                                Neurons("n", (2, 2, 2), bias=np.arange(8.0))),
     r"population 'n' has a bias that differs within a channel; Speck holds one bias per channel"),
    (lambda: Network.sequential(Input("in", (1, 4, 4)), Conv2d("c", np.ones((2, 1, 1, 1)), (1, 4, 4)),
                                Neurons("n", (2, 4, 4)), Pool2d("p", "sum", 2, (2, 4, 4), padding=1),
                                Flatten("f", (2, 3, 3)), Dense("fc", np.ones((2, 18))), Neurons("m", (2,))),
     r"pooling 'p' pads its input by \(1, 1\); Speck pools without padding"),
    (lambda: Network.sequential(Input("in", (4,)), Dense("fc", np.ones((9, 4))), Neurons("n", (9,)),
                                Conv2d("c", np.ones((1, 1, 3, 3)), (1, 3, 3)), Neurons("m", (1, 1, 1))),
     r"conv layer 'c' reads a flat vector; Speck convolves \(c, h, w\) maps"),
])
def test_networks_without_a_sinabs_equivalent_are_named(build, message):
    with pytest.raises(NoSinabsEquivalent, match=message):
        to_sinabs(build())


def test_unpooled_destinations_of_a_layer_that_also_pools_get_an_identity_pool():
    model = to_sinabs(fork("mixed", [2, 1]))
    pools = [m for m in layers(model) if isinstance(m, sl.SumPool2d)]
    assert sorted(tuple(p.kernel_size) for p in pools) == [(1, 1), (2, 2)]
    for same in ([2, 4], [1, 1]):   # every destination pooled, or none: nothing added
        kernels = [tuple(m.kernel_size) for m in layers(to_sinabs(fork("same", same))) if isinstance(m, sl.SumPool2d)]
        assert (1, 1) not in kernels


def test_sinabs_3_1_3_crashes_on_mixed_pooling_without_the_identity_pool():
    """The sinabs bug the identity pool works around (when this fails, sinabs fixed it: drop the pool)."""
    from spikefit_speck.check import dynapcnn

    model = to_sinabs(fork("bug", [2, 1]))
    graph = model.module
    key = next(k for k, m in graph.layers.items() if isinstance(m, sl.SumPool2d) and tuple(m.kernel_size) == (1, 1))
    graph.steps = [(k, [i if i != key else next(ii for kk, ii in graph.steps if kk == key)[0] for i in inputs])
                   for k, inputs in graph.steps if k != key]
    del graph.layers[key]
    with pytest.raises(IndexError, match="list index out of range"):
        dynapcnn().DynapcnnNetwork(graph, input_shape=model.input_shape, discretize=True)
