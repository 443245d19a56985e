"""Backend speck-sim: sinabs's discretized forward pass, held against Speck's neuron written out in numpy."""
from __future__ import annotations

import numpy as np
import pytest

import spikefit
from spikefit.errors import BackendError
from spikefit.fixedpoint import connection_matrix
from spikefit.network import Dense, Input, Network, Neurons
from spikefit.runner import execute
from spikefit_speck.backend import SpeckSimBackend
from spikefit_speck.corpus import Chain, fork

LOW = -(2 ** 15)   # Speck's 16-bit membrane stops here, in integer steps of the layer's weight grid


def speck_reference(net: Network, x: np.ndarray, step: dict[str, float], reset: str = "zero") -> dict[str, np.ndarray]:
    """Speck's integrate-and-fire, independently of sinabs: v += W s + b; floor(v / th) spikes when
    v >= th, th the first grid value above vth; then v = 0 (or v -= spikes * th); v never below -2^15
    grid steps. W folds the pooling."""
    out: dict[str, np.ndarray] = {}
    t, b, _ = x.shape
    for sl in net.synapse_layers():
        w = connection_matrix(net, sl.conn).toarray()
        src = x if isinstance(sl.pre, Input) else out[sl.pre.name]
        bias = np.zeros(w.shape[0]) if sl.conn.bias is None else np.repeat(sl.conn.bias, w.shape[0] // sl.conn.bias.size)
        pop, v = sl.post, np.zeros((b, w.shape[0]))
        th = (np.floor(pop.vth / step[pop.name]) + 1) * step[pop.name]
        spikes = np.zeros((t, b, w.shape[0]), dtype=np.int64)
        for k in range(t):
            v = v + src[k] @ w.T + bias
            n = np.where(v >= th, np.floor(v / th), 0)
            v = np.where(n > 0, 0.0, v) if reset == "zero" else v - n * th
            v = np.maximum(v, LOW * step[pop.name])
            spikes[k] = n
        out[pop.name] = spikes
    return out


def spikes_in(shape, seed: int, p: float = 0.4) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float64)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_dense_chain_matches_speck_neuron_spike_for_spike(reset):
    net = Chain("dense", (20,), wmax=40).dense(16, bias=True, vth=60.0).dense(6, vth=45.0).build()
    x = spikes_in((25, 4, 20), seed=1)
    got = SpeckSimBackend(reset=reset).run(net, x)
    ref = speck_reference(net, x, {"lif1": 1.0, "lif2": 1.0}, reset)
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(got[name], ref[name])
    assert got["lif1"].max() >= 2       # several spikes in one step: Speck's neuron, not spikefit's
    assert got["lif2"].sum() > 0


def test_conv_avgpool_dense_on_a_half_step_grid_is_exact():
    c = Chain("conv", (2, 10, 10), wmax=30).conv(4, 3, vth=40.0).pool(2, "avg").dense(5, vth=10.0)
    for node in c.nodes:
        if hasattr(node, "weight"):
            node.weight = node.weight * 0.5              # int8 on a grid of 0.5: sinabs's scale becomes 2
    net = c.build()
    x = spikes_in((12, 3, 200), seed=2)
    got = SpeckSimBackend().run(net, x)
    ref = speck_reference(net, x, {"lif1": 0.5, "lif2": 0.5 / 4})
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(got[name], ref[name])
    assert got["lif1"].sum() > 0 and got["lif2"].sum() > 0


def test_runs_through_the_runner_as_a_registered_backend():
    net = Chain("runner", (1, 6, 6), wmax=20).conv(3, 3, vth=20.0).pool(2).dense(4, vth=5.0).build()
    be = spikefit.get_backend("speck-sim")
    assert isinstance(be, SpeckSimBackend)
    x = spikes_in((10, 5, 36), seed=3)
    res = execute(net, be, x)
    assert res.backend == "speck-sim" and res.output == "lif2" and res.predictions.shape == (5,)
    assert res.outputs["lif1"].shape == (10, 5, 3 * 4 * 4)


def test_bad_inputs_and_networks_are_one_line_errors():
    net = Chain("bad", (8,)).dense(4).build()
    with pytest.raises(BackendError, match=r"inputs have 9 channels, the network's input \(8, 1, 1\) needs 8"):
        SpeckSimBackend().run(net, np.zeros((3, 1, 9)))
    with pytest.raises(BackendError, match=r"inputs of shape \(3, 8\) must be time-major spikes \(t, b, n\)"):
        SpeckSimBackend().run(net, np.zeros((3, 8)))
    rec = Network({"in": Input("in", (3,)), "fc": Dense("fc", np.ones((3, 3))), "n": Neurons("n", (3,)),
                   "rec": Dense("rec", np.ones((3, 3)))}, [("in", "fc"), ("fc", "n"), ("n", "rec"), ("rec", "n")])
    with pytest.raises(BackendError, match=r"speck-sim cannot run this network: edge rec -> n is recurrent"):
        SpeckSimBackend().run(rec, np.zeros((3, 1, 3)))
    lif = Chain("lif", (2, 6, 6)).conv(2, 3, model="lif").build()
    with pytest.raises(BackendError, match=r"sinabs refused the network: UnsupportedLayerType: The provided SNN "
                                           r"contains LIF layers"):
        SpeckSimBackend().run(lif, np.zeros((3, 1, 72)))


def test_spikes_when_spikefit_semantics_spike_and_more_than_once_per_step():
    """speck-sim against the float emulator (spikefit's v > vth, one spike, reset to zero): the same
    neurons spike at the same steps; Speck emits floor(v / threshold) spikes where spikefit emits one."""
    net = Chain("cmp", (1, 8, 8), wmax=20).conv(4, 3, vth=60.5).pool(2).dense(10, vth=30.5).build()
    x = spikes_in((20, 50, 64), seed=0, p=0.3)
    ref = spikefit.get_backend("emulator-float").run(net, x)
    got = SpeckSimBackend().run(net, x)
    assert got["lif1"].max() == 1 and np.array_equal(got["lif1"] > 0, ref["lif1"])
    assert np.array_equal(got["lif2"] > 0, ref["lif2"])
    assert got["lif2"].max() > 1 and (got["lif2"] > 1).sum() > 50


def test_a_layer_pooled_to_one_destination_and_not_to_the_other_runs_both():
    net = fork("fork", [2, 1])
    x = spikes_in((10, 2, 2 * 18 * 18), seed=4)
    got = SpeckSimBackend().run(net, x)
    ref = speck_reference(net, x, {name: 1.0 for name in ("lif1", "flif0", "flif1")})
    for name in ("lif1", "flif0", "flif1"):
        np.testing.assert_array_equal(got[name], ref[name])
    assert got["flif0"].shape == (10, 2, 4 * 6 * 6) and got["flif1"].shape == (10, 2, 4 * 14 * 14)
