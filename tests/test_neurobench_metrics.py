"""spikefit's synaptic operations against NeuroBench's own SynapticOperations metric on the same
network and the same spikes, and NeuroBench's sparsity and footprint metrics (docs/energy.md)."""
from __future__ import annotations

import numpy as np
import pytest

from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d
from spikefit.neurobench_metrics import StepNetBackend, neurobench_metrics
from spikefit.runner import execute
from spikefit.trainer import network_usage

RNG = np.random.default_rng(7)


def sparse_weights(shape, zero: float, scale: float = 0.6) -> np.ndarray:
    w = RNG.normal(0.0, scale, shape)
    w[RNG.random(shape) < zero] = 0.0
    return w


def spikes(t: int, b: int, n: int, rate: float = 0.3) -> np.ndarray:
    return (RNG.random((t, b, n)) < rate).astype(np.float32)


def recurrent_net() -> Network:
    nodes = [Input("in", (12,)), Dense("fc1", sparse_weights((16, 12), 0.4)),
             Neurons("h", (16,), du=0.5, dv=0.25, vth=0.8, bias=RNG.normal(0, 0.05, 16)),
             Dense("rec", sparse_weights((16, 16), 0.7, 0.3)),
             Dense("fc2", sparse_weights((5, 16), 0.3)), Neurons("out_pop", (5,), vth=0.5), Output("out", (5,))]
    edges = [("in", "fc1"), ("fc1", "h"), ("h", "rec"), ("rec", "h"), ("h", "fc2"), ("fc2", "out_pop"),
             ("out_pop", "out")]
    return Network({n.name: n for n in nodes}, edges)


def conv_net(pool: bool) -> Network:
    c1 = Conv2d("c1", sparse_weights((3, 1, 3, 3), 0.3, 0.8), (1, 8, 8), padding=(1, 1))
    nodes = [Input("in", (1, 8, 8)), c1, Neurons("n1", (3, 8, 8), vth=0.6)]
    if pool:
        nodes.append(Pool2d("p", "sum", (2, 2), (3, 8, 8)))
    side = 4 if pool else 8
    nodes += [Flatten("f", (3, side, side)), Dense("fc", sparse_weights((4, 3 * side * side), 0.5, 0.3)),
              Neurons("n2", (4,), vth=0.5), Output("out", (4,))]
    return Network.sequential(*nodes)


@pytest.mark.parametrize("make, n_in", [(recurrent_net, 12), (lambda: conv_net(False), 64)],
                         ids=["dense-recurrent", "conv"])
def test_synops_equal_neurobench(make, n_in):
    net, x = make(), spikes(10, 6, n_in)
    res = execute(net, StepNetBackend(), x)             # spikefit's count on the model NeuroBench runs
    assert all(v > 0 for v in res.synops.values()) and all(v > 0 for v in res.spikes.values())
    nb = neurobench_metrics(net, x, batch_size=4)       # two batches: NeuroBench averages per sample
    assert res.synops_total > 0 and nb["synops"]["effective_macs"] == 0.0  # binary spikes: accumulates only
    assert nb["synops"]["effective_acs"] == pytest.approx(res.synops_total / res.samples, rel=1e-12)
    neurons = sum(p.size for p in net.populations())
    assert nb["activation_sparsity"] == pytest.approx(1 - sum(res.spikes.values()) / (neurons * 10 * 6))
    assert nb["connection_sparsity"] == pytest.approx(round(network_usage(net)["sparsity"], 4))
    weights = sum(int(np.prod(c.weight.shape)) for c in net.connections())
    bias = sum(p.size for p in net.populations())       # StepLIF keeps its bias as a float32 buffer
    assert nb["footprint_bytes"] == 4 * (weights + bias) and nb["samples"] == 6 and nb["steps"] == 10


def test_pooling_is_the_documented_difference():
    """After a sum pool, NeuroBench sees pooled counts (one operation per non-zero pooled value, a MAC
    when a window held two spikes or more); spikefit charges every spike through the folded pool and
    connection. Both follow from the same spikes, as docs/energy.md states."""
    net, x = conv_net(True), spikes(8, 5, 64, 0.5)
    res = execute(net, StepNetBackend(), x)
    nb = neurobench_metrics(net, x)
    s1 = res.outputs["n1"].reshape(8, 5, 3, 8, 8)
    pooled = s1.reshape(8, 5, 3, 4, 2, 4, 2).sum(axis=(4, 6)).reshape(8, 5, -1)  # (t, b, 48) spikes per window
    fanout = (net.nodes["fc"].weight != 0).sum(axis=0)                               # synapses per pooled value
    conv_ops = res.synops["c1"]
    assert res.synops["fc"] == int(pooled.sum(axis=(0, 1)) @ fanout)                  # every spike
    nb_fc = int((pooled > 0).sum(axis=(0, 1)) @ fanout)                               # every non-zero window
    total_nb = nb["synops"]["effective_acs"] + nb["synops"]["effective_macs"]
    assert total_nb * 5 == pytest.approx(conv_ops + nb_fc)
    assert nb["synops"]["effective_macs"] > 0 and res.synops["fc"] > nb_fc


def test_missing_package_is_a_one_line_error(monkeypatch):
    import builtins

    from spikefit.errors import BackendError

    real = builtins.__import__

    def no_neurobench(name, *args, **kwargs):
        if name.startswith("neurobench"):
            raise ImportError("No module named 'neurobench'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_neurobench)
    with pytest.raises(BackendError, match=r"need the neurobench package .*pip install -c constraints.txt snntorch==1\.0\.0 "
                                           r"&& pip install -c constraints.txt --no-deps neurobench==2\.3\.0`$"):
        neurobench_metrics(recurrent_net(), spikes(2, 1, 12))


def test_run_neurobench_cli(tmp_path):
    import json

    from clitools import invoke
    from spikefit.nir_io import write_nir

    net, x = recurrent_net(), spikes(6, 3, 12)
    model = write_nir(net, tmp_path / "r.nir")
    np.save(tmp_path / "x.npy", x)
    r = invoke("run", model, "--inputs", tmp_path / "x.npy", "--neurobench", "--json")
    assert r.exit_code == 0, r.output
    nb = json.loads(r.stdout)["neurobench"]
    assert nb == neurobench_metrics(net, x) and nb["synops"]["effective_acs"] > 0
    text = invoke("run", model, "--inputs", tmp_path / "x.npy", "--neurobench").stdout
    assert "neurobench 2.3.0 (3 samples x 6 steps" in text and "activation sparsity" in text
