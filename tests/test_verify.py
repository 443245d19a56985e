"""verify(): each constraint on small hand-built networks, and the packing against a plain-Python
reference that follows docs/verify.md neuron by neuron."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import scipy.sparse as sp

from spikefit import (Conv2d, Dense, Flatten, Input, ModelError, Network, Neurons, Output, Pool2d,
                      Quantization, TargetSpec, UnknownTargetError)
from spikefit.spec import CoreSpec, LayerSpec, Limits, NeuronSpec
from spikefit.fitcheck import FitReport, grid_step, verify

verify_mod = importlib.import_module("spikefit.synapses")   # the synapse parts the check measures


def target(core=None, layers=None, neuron=None, **limits) -> TargetSpec:
    return TargetSpec("chip", limits=Limits(**limits), core=core or CoreSpec(),
                      layers=layers or LayerSpec(), neuron=neuron or NeuronSpec())


def chain(*weights, shape_in=None, pops=None, **kw) -> Network:
    """Input -> (Dense, Neurons) per weight matrix -> Output."""
    nodes = [Input("in", (weights[0].shape[1],) if shape_in is None else shape_in)]
    for i, w in enumerate(weights, 1):
        nodes.append(Dense(f"fc{i}", w))
        nodes.append(Neurons(f"lif{i}", (w.shape[0],), **((pops or {}).get(i, {}))))
    nodes.append(Output("out", (weights[-1].shape[0],)))
    return Network.sequential(*nodes, **kw)


# -- reference: the packing rule of docs/verify.md, one neuron at a time -----------------------

def brute_conv(conv: Conv2d) -> np.ndarray:
    """(out, in) weight matrix of a Conv2d by explicit loops."""
    c_out, c_in, kh, kw = conv.weight.shape
    _, h, w = conv.input_shape
    _, oh, ow = conv.output_shape
    (sy, sx), (py, px) = conv.stride, conv.padding
    m = np.zeros((c_out * oh * ow, c_in * h * w))
    for c in range(c_out):
        for y in range(oh):
            for x in range(ow):
                for ci in range(c_in):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = y * sy - py + ky, x * sx - px + kx
                            if 0 <= iy < h and 0 <= ix < w:
                                m[(c * oh + y) * ow + x, (ci * h + iy) * w + ix] += conv.weight[c, ci, ky, kx]
    return m


def reference_pack(net: Network, spec: TargetSpec):
    """Per core: (neurons, synapses, axons, parameter sets) following the rule neuron by neuron."""
    lim, core = spec.limits, spec.core
    incoming: dict[str, list[tuple[str, np.ndarray]]] = {}
    for sl in net.synapse_layers():
        w = brute_conv(sl.conn) if isinstance(sl.conn, Conv2d) else sl.conn.dense_weight()
        incoming.setdefault(sl.post.name, []).append((sl.pre.name, w))
    cores, open_core = [], None
    for name in net.topological_order():
        pop = net.nodes[name]
        if not isinstance(pop, Neurons):
            continue
        pset = tuple(float(getattr(pop, p)) for p in core.shared)
        if open_core is not None and not core.share_layers:
            open_core = None
        for i in range(pop.size):
            src = {(pre, int(j)) for pre, w in incoming.get(name, []) for j in np.flatnonzero(w[i])}
            syn = sum(int(np.count_nonzero(w[i])) for _, w in incoming.get(name, []))
            c = open_core
            fits = c is not None and (
                (lim.neurons_per_core is None or c["neurons"] + 1 <= lim.neurons_per_core)
                and (lim.synapses_per_core is None or c["synapses"] + syn <= lim.synapses_per_core)
                and (lim.axons_per_core is None or len(c["axons"] | src) <= lim.axons_per_core)
                and (core.max_parameter_sets is None or pset in c["sets"] or len(c["sets"]) < core.max_parameter_sets))
            if not fits:
                c = open_core = {"neurons": 0, "synapses": 0, "axons": set(), "sets": set()}
                cores.append(c)
            c["neurons"] += 1
            c["synapses"] += syn
            c["axons"] |= src
            c["sets"].add(pset)
    return [(c["neurons"], c["synapses"], len(c["axons"]), len(c["sets"])) for c in cores]


def packed(report: FitReport, net: Network):
    """Per-core (neurons, synapses) from the report's mapping, for comparison with the reference."""
    n = report.cores.cores
    neurons, synapses = np.zeros(n, int), np.zeros(n, int)
    fan_in = {}
    for sl in net.synapse_layers():
        w = brute_conv(sl.conn) if isinstance(sl.conn, Conv2d) else sl.conn.dense_weight()
        fan_in[sl.post.name] = fan_in.get(sl.post.name, 0) + np.count_nonzero(w, axis=1)
    for p in report.populations:
        core = report.core_of(p.name)
        np.add.at(neurons, core, 1)
        np.add.at(synapses, core, fan_in.get(p.name, np.zeros(p.neurons, int)))
    return neurons, synapses


def random_sparse(rng, n_out, n_in, density, values=(1.0, -2.0, 3.0)):
    w = (rng.random((n_out, n_in)) < density) * rng.choice(values, (n_out, n_in))
    return w


# -- conv counted analytically ------------------------------------------------------------------

@pytest.mark.parametrize("stride,padding,shape", [((1, 1), (0, 0), (2, 6, 7)), ((1, 1), (1, 1), (2, 5, 5)),
                                                  ((2, 1), (1, 2), (3, 7, 6)), ((3, 2), (2, 0), (1, 8, 9))])
def test_conv_fan_in_fan_out_and_synapses_match_brute_force(stride, padding, shape):
    rng = np.random.default_rng(1)
    w = rng.integers(-2, 3, (4, shape[0], 3, 3)).astype(float)
    w[1] = 0.0                                          # an output channel without synapses
    conv = Conv2d("conv", w, shape, stride=stride, padding=padding)
    part = verify_mod._ConvPart(conv, Input("in", shape), Neurons("n", conv.output_shape), False, 0)
    ref = brute_conv(conv) != 0
    np.testing.assert_array_equal(part.fan_in, ref.sum(axis=1))
    np.testing.assert_array_equal(part.fan_out(), ref.sum(axis=0))
    ids, counts = part.window(0, len(part.fan_in))
    rows = np.repeat(np.arange(len(part.fan_in)), counts)
    got = np.zeros_like(ref)
    got[rows, ids] = True
    np.testing.assert_array_equal(got, ref)
    ids, counts = part.window(5, 23)                    # a window across channel borders
    np.testing.assert_array_equal(counts, ref[5:23].sum(axis=1))
    np.testing.assert_array_equal(np.sort(ids), np.sort(np.nonzero(ref[5:23])[1]))


def test_conv_network_packs_like_the_reference():
    rng = np.random.default_rng(2)
    w = rng.integers(-1, 2, (3, 2, 3, 3)).astype(float)
    net = Network.sequential(Input("in", (2, 6, 6)), Conv2d("conv", w, (2, 6, 6), padding=(1, 1)),
                             Neurons("c1", (3, 6, 6)), Flatten("flat", (3, 6, 6)),
                             Dense("fc", random_sparse(rng, 10, 108, 0.2)), Neurons("d1", (10,)))
    spec = target(neurons_per_core=20, axons_per_core=40, synapses_per_core=300)
    report = verify(net, spec)
    ref = reference_pack(net, spec)
    n, s = packed(report, net)
    assert list(zip(n, s)) == [r[:2] for r in ref]
    assert report.row("axons_per_core").usage == max(r[2] for r in ref)


# -- packing --------------------------------------------------------------------------------------

SPECS = [
    dict(neurons_per_core=7),
    dict(neurons_per_core=16, synapses_per_core=40),
    dict(neurons_per_core=16, axons_per_core=12),
    dict(neurons_per_core=9, synapses_per_core=35, axons_per_core=20),
    dict(axons_per_core=15),
]


@pytest.mark.parametrize("limits", SPECS)
@pytest.mark.parametrize("share", [True, False])
def test_packing_matches_reference_neuron_by_neuron(limits, share):
    rng = np.random.default_rng(len(str(limits)) + share)
    w1, w2, w3 = random_sparse(rng, 23, 30, 0.15), random_sparse(rng, 17, 23, 0.3), random_sparse(rng, 5, 17, 0.5)
    net = chain(w1, w2, w3, pops={2: {"vth": 2.0}})
    spec = target(core=CoreSpec(share_layers=share), **limits)
    report = verify(net, spec)
    ref = reference_pack(net, spec)
    assert report.cores.cores == len(ref)
    n, s = packed(report, net)
    assert list(zip(n.tolist(), s.tolist())) == [r[:2] for r in ref]
    if "axons_per_core" in limits:
        assert report.row("axons_per_core").usage == max(r[2] for r in ref)
        assert report.cores.axons_max == max(r[2] for r in ref)


def test_packing_with_recurrence_and_two_sources_matches_reference():
    """A population fed by two connections (one recurrent from itself) counts both sources' axons."""
    rng = np.random.default_rng(5)
    nodes = [Input("in", (12,)), Dense("fc1", random_sparse(rng, 20, 12, 0.3)), Neurons("lif1", (20,)),
             Dense("rec", random_sparse(rng, 20, 20, 0.2)), Dense("fc2", random_sparse(rng, 6, 20, 0.4)),
             Neurons("lif2", (6,))]
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "fc2"), ("fc2", "lif2")]
    net = Network({n.name: n for n in nodes}, edges)
    for limits in (dict(axons_per_core=14), dict(neurons_per_core=6, axons_per_core=30, synapses_per_core=25)):
        spec = target(**limits)
        report = verify(net, spec)
        ref = reference_pack(net, spec)
        n, s = packed(report, net)
        assert list(zip(n.tolist(), s.tolist())) == [r[:2] for r in ref]
        assert report.row("axons_per_core").usage == max(r[2] for r in ref)


def test_a_population_without_incoming_synapses_still_takes_core_space():
    nodes = [Input("in", (2,)), Dense("fc1", np.ones((3, 2))), Neurons("lif1", (3,)), Neurons("idle", (4,), bias=0.5),
             Dense("fc2", np.ones((2, 4))), Neurons("lif2", (2,))]
    net = Network({n.name: n for n in nodes}, [("in", "fc1"), ("fc1", "lif1"), ("idle", "fc2"), ("fc2", "lif2")])
    spec = target(neurons_per_core=4, axons_per_core=3, fan_out_cores=4)
    report = verify(net, spec)                          # idle: core 0; lif1: core 1; lif2: 4 axons per neuron
    ref = reference_pack(net, spec)
    assert [r[:3] for r in ref] == [(4, 0, 0), (3, 6, 2), (1, 4, 4), (1, 4, 4)]
    assert list(zip(*packed(report, net))) == [r[:2] for r in ref]
    assert (report.row("axons_per_core").usage, report.row("axons_per_core").ok) == (4, False)
    assert report.row("fan_out_cores").usage == 2       # idle reaches lif2's two cores
    assert {p.name: p.fan_in_max for p in report.populations} == {"lif1": 2, "idle": 0, "lif2": 4}


def test_share_layers_false_starts_every_population_on_a_new_core():
    rng = np.random.default_rng(3)
    net = chain(random_sparse(rng, 3, 4, 0.5), random_sparse(rng, 2, 3, 0.5))
    shared = verify(net, target(neurons_per_core=8))
    alone = verify(net, target(neurons_per_core=8, core=CoreSpec(share_layers=False)))
    assert shared.cores.cores == 1 and alone.cores.cores == 2
    assert [p.first_core for p in alone.populations] == [0, 1]


def test_axons_per_core_opens_a_new_core_when_the_next_neuron_brings_too_many_sources():
    w = np.zeros((4, 8))
    w[0, [0, 1]] = w[1, [1, 2]] = w[2, [3, 4]] = w[3, [4, 5]] = 1.0  # sources 0-2 then 3-5
    report = verify(chain(w), target(axons_per_core=4))
    assert report.cores.cores == 2
    np.testing.assert_array_equal(report.core_of("lif1"), [0, 0, 1, 1])
    assert report.row("axons_per_core").usage == 3


def test_parameter_sets_per_core_split_populations_with_different_thresholds():
    rng = np.random.default_rng(4)
    ws = [random_sparse(rng, 3, 4, 0.6), random_sparse(rng, 3, 3, 0.6), random_sparse(rng, 3, 3, 0.6)]
    pops = {1: {"vth": 1.0}, 2: {"vth": 2.0}, 3: {"vth": 1.0}}
    one = verify(chain(*ws, pops=pops), target(neurons_per_core=100, core=CoreSpec(shared=["vth"])))
    assert [p.first_core for p in one.populations] == [0, 1, 2]
    assert one.row("parameter_sets").usage == 1 and one.row("parameter_sets").ok
    two = verify(chain(*ws, pops=pops), target(neurons_per_core=100, core=CoreSpec(shared=["vth"], parameter_sets=2)))
    assert two.cores.cores == 1 and two.row("parameter_sets").usage == 2
    dv = verify(chain(*ws, pops=pops), target(neurons_per_core=100, core=CoreSpec(shared=["dv"])))
    assert dv.cores.cores == 1                         # all share dv = 0


@pytest.mark.parametrize("limit,name", [("synapses_per_core", "synapses_per_core"), ("axons_per_core", "axons_per_core")])
def test_a_neuron_that_alone_exceeds_a_core_gets_its_own_core_and_fails_the_row(limit, name):
    w = np.zeros((5, 10))
    w[:, 0] = 1.0
    w[2, :] = 1.0                                       # neuron 2: 10 synapses from 10 sources
    report = verify(chain(w), target(**{limit: 6}))
    np.testing.assert_array_equal(report.core_of("lif1"), [0, 0, 1, 2, 2])
    row = report.row(name)
    assert (row.usage, row.ok, row.worst) == (10, False, "core 1 (layer lif1)")
    assert row.detail == "1 of 3 cores exceed it: a neuron alone needs 10, more than one core holds"


# -- per-neuron and per-core rows -----------------------------------------------------------------

def test_fan_in_and_fan_out_name_the_worst_neuron():
    w1 = np.zeros((4, 3))
    w1[2] = [1, 1, 1]
    w2 = np.zeros((6, 4))
    w2[:, 1] = 1.0
    report = verify(chain(w1, w2), target(fan_in=2, fan_out=5))
    fi, fo = report.row("fan_in"), report.row("fan_out")
    assert (fi.usage, fi.ok, fi.worst) == (3, False, "layer lif1 neuron 2")
    assert (fo.usage, fo.ok, fo.worst) == (6, False, "layer lif1 neuron 1")
    assert fi.detail == "1 of 10 neurons exceed 2 incoming non-zero synapses"


def test_fan_out_counted_over_all_target_layers():
    """A population feeding two layers: its fan-out sums both."""
    nodes = [Input("in", (2,)), Dense("a", np.ones((3, 2))), Neurons("p", (3,)),
             Dense("b", np.ones((4, 3))), Neurons("q", (4,)), Dense("c", np.ones((5, 3))), Neurons("r", (5,))]
    edges = [("in", "a"), ("a", "p"), ("p", "b"), ("b", "q"), ("p", "c"), ("c", "r")]
    report = verify(Network({n.name: n for n in nodes}, edges), target(fan_out=9))
    assert report.row("fan_out").usage == 9 and report.row("fan_out").ok
    assert report.row("fan_out").worst == "layer p neuron 0"


def test_fan_out_in_cores_and_fan_out_cores():
    w2 = np.zeros((8, 4))
    w2[:, 0] = 1.0                                      # neuron 0 of lif1 reaches all 8 neurons of lif2
    w2[0, 1] = 1.0
    net = chain(np.eye(4), w2)
    spec = target(neurons_per_core=4, fan_out=1, fan_out_unit="cores", fan_out_cores=1)
    report = verify(net, spec)                         # cores: lif1 -> 0, lif2 -> 1, 2
    row = report.row("fan_out (cores)")
    assert (row.usage, row.ok, row.worst) == (2, False, "layer lif1 neuron 0")
    foc = report.row("fan_out_cores")
    assert (foc.usage, foc.ok, foc.worst) == (2, False, "core 0 (layer lif1)")
    assert foc.detail == "1 of 3 cores send spikes to more than 1 cores"


def test_cores_neurons_synapses_inputs_outputs():
    rng = np.random.default_rng(6)
    w1, w2 = random_sparse(rng, 10, 6, 0.5), random_sparse(rng, 3, 10, 0.5)
    report = verify(chain(w1, w2), target(neurons=12, cores=2, neurons_per_core=4, synapses=10, inputs=6, outputs=3))
    got = {r.name: (r.usage, r.ok) for r in report.rows}
    nnz = int(np.count_nonzero(w1) + np.count_nonzero(w2))
    assert got["neurons"] == (13, False) and got["cores"] == (4, False)
    assert got["synapses"] == (nnz, nnz <= 10) and got["inputs"] == (6, True) and got["outputs"] == (3, True)


def test_outputs_are_the_populations_feeding_output_nodes_or_the_last_one():
    nodes = [Input("in", (2,)), Dense("a", np.ones((3, 2))), Neurons("p", (3,)), Dense("b", np.ones((4, 3))),
             Neurons("q", (4,)), Output("o1", (3,))]
    net = Network({n.name: n for n in nodes}, [("in", "a"), ("a", "p"), ("p", "b"), ("b", "q"), ("p", "o1")])
    assert verify(net, target(outputs=3)).row("outputs").usage == 3
    no_output = Network.sequential(Input("in", (2,)), Dense("a", np.ones((3, 2))), Neurons("p", (3,)),
                                   Dense("b", np.ones((4, 3))), Neurons("q", (4,)))
    assert verify(no_output, target(outputs=3)).row("outputs").usage == 4


def test_undeclared_limits_produce_no_rows():
    report = verify(chain(np.ones((2, 2))), target())
    assert [r.name for r in report.rows] == ["layer_kinds", "neuron_model"]
    assert report.ok


# -- weights --------------------------------------------------------------------------------------

def unique_net(n_values: int) -> Network:
    w = np.zeros((6, 8))
    w[3, :n_values] = np.arange(1, n_values + 1)        # neuron 3: n distinct non-zero weights
    w[0, :4] = [1, 1, 2, 2]
    return chain(w)


def test_unique_weights_per_neuron_names_the_neuron():
    spec = target(unique_weights=4, weight_bits=9)
    row = verify(unique_net(5), spec).row("unique_weights")
    assert (row.name, row.usage, row.limit, row.ok) == ("unique_weights (per neuron)", 5, 4, False)
    assert row.worst == "layer lif1 neuron 3"
    fits = verify(unique_net(4), spec)
    assert fits.row("unique_weights").ok and fits.row("unique_weights").usage == 4


def test_unique_weights_of_a_conv_neuron_are_its_channel_kernel():
    w = np.zeros((2, 1, 3, 3))
    w[0, 0] = [[1, 2, 3], [4, 0, 0], [0, 0, 0]]
    w[1, 0, 1, 1] = 7
    net = Network.sequential(Input("in", (1, 4, 4)), Conv2d("conv", w, (1, 4, 4), padding=(1, 1)),
                             Neurons("c", (2, 4, 4)))
    row = verify(net, target(unique_weights=3)).row("unique_weights")
    assert (row.usage, row.ok, row.worst) == (4, False, "layer c neuron 0 (0, 0, 0)")


@pytest.mark.parametrize("scope,usage", [("core", 5), ("layer", 6), ("chip", 7)])
def test_unique_weights_per_core_layer_chip(scope, usage):
    w1 = np.array([[1.0, 2, 0], [3, 0, 0], [0, 4, 5], [6, 6, 6]])
    w2 = np.array([[7.0, 1, 2, 3]])
    net = chain(w1, w2)   # cores of 3 neurons: {0,1,2} -> 1..5; {3, lif2 0} -> 6,7,1,2,3
    report = verify(net, target(unique_weights=4, unique_weights_scope=scope, neurons_per_core=3))
    row = report.row("unique_weights")
    assert (row.name, row.usage, row.ok) == (f"unique_weights (per {scope})", usage, False)
    if scope == "core":
        assert row.worst == "core 0 (layer lif1)"
    if scope == "layer":
        assert row.worst == "layer fc1"


def test_many_distinct_values_take_the_sorting_path_and_agree_with_bit_masks():
    """Over 256 distinct values network-wide the per-neuron sets are sorted instead of bit masks."""
    rng = np.random.default_rng(7)
    w = rng.integers(1, 600, (40, 50)) * (rng.random((40, 50)) < 0.3)
    for scope in ("neuron", "core"):
        spec = target(unique_weights=8, unique_weights_scope=scope, neurons_per_core=7)
        row = verify(chain(w.astype(float)), spec).row("unique_weights")
        if scope == "neuron":
            want = max(len(set(r[r != 0])) for r in w)
        else:
            want = max(len(set(w[i:i + 7][w[i:i + 7] != 0])) for i in range(0, 40, 7))
        assert row.usage == want
    small = w % 40                                      # < 256 values: bit masks
    row = verify(chain(small.astype(float)), target(unique_weights=8)).row("unique_weights")
    assert row.usage == max(len(set(r[r != 0])) for r in small)


def test_a_value_missing_from_the_sample_is_still_counted(monkeypatch):
    monkeypatch.setattr(verify_mod, "SAMPLE", 64)       # sample every few synapses only
    w = np.zeros((50, 40))
    w[:, :20] = 2.0
    w[37, 3] = 5.0                                      # a single rare value, off the sampling stride
    report = verify(chain(sp.csr_array(w)), target(unique_weights=1))
    row = report.row("unique_weights")
    assert (row.usage, row.worst) == (2, "layer lif1 neuron 37")
    assert report.layers[0].unique_weights == 2
    bits = verify(chain(sp.csr_array(w)), target(weight_bits=2))  # the value check without per-neuron sets
    assert (bits.row("weight_bits").usage, bits.layers[0].unique_weights, bits.layers[0].scale) == (4, 2, 1.0)


def test_unique_weights_of_a_neuron_span_all_its_incoming_connections():
    nodes = [Input("in", (3,)), Dense("fc1", np.array([[1.0, 2, 0], [1, 1, 1]])), Neurons("lif1", (2,)),
             Dense("rec", np.array([[0, 3.0], [0, 1]]))]
    net = Network({n.name: n for n in nodes}, [("in", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1")])
    row = verify(net, target(unique_weights=2)).row("unique_weights")
    assert (row.usage, row.ok, row.worst) == (3, False, "layer lif1 neuron 0")


@pytest.mark.parametrize("limits", [dict(fan_in=2), dict(fan_in=2, unique_weights=1), dict(fan_in=2, weight_bits=2)])
def test_stored_zeros_are_not_synapses(limits):
    """Pruning may zero entries of a sparse matrix in place; they are not synapses."""
    dense = Dense("fc1", sp.csr_array(np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])))
    dense.weight.data[:2] = 0.0                         # neuron 0 keeps one synapse
    net = Network.sequential(Input("in", (3,)), dense, Neurons("lif1", (2,)))
    report = verify(net, target(synapses=10, **limits))
    assert report.row("fan_in").usage == 1 and report.row("synapses").usage == 2
    assert dense.weight.nnz == 4                        # the network itself is left as it was


def test_weight_bits_from_the_coarsest_integer_grid():
    w = np.array([[0.25, -0.5, 0.75], [1.0, 0, -1.25]])  # grid 0.25: integers -5..4 -> 4 bits
    report = verify(chain(w), target(weight_bits=4))
    row = report.row("weight_bits")
    assert (row.usage, row.ok) == (4, True) and report.layers[0].scale == 0.25
    assert verify(chain(w * 3), target(weight_bits=3)).row("weight_bits").usage == 4
    assert verify(chain(np.array([[-4.0, 0]])), target(weight_bits=1)).row("weight_bits").usage == 1


def test_weight_bits_with_quantization_metadata_uses_its_scale():
    w = np.array([[0.5, 1.0], [-1.5, 0.0]])
    plain = chain(w)
    quant = Network.sequential(Input("in", (2,)), Dense("fc1", w, quant=Quantization(8, 0.125)), Neurons("lif1", (2,)))
    assert verify(plain, target(weight_bits=8)).row("weight_bits").usage == 3   # grid 0.5: -3..2
    row = verify(quant, target(weight_bits=8)).row("weight_bits")             # scale 0.125: -12, 8, 4 share 4
    assert (row.usage, row.worst) == (3, "layer fc1 (scale 0.5)")             # -3..2 on the scale 0.5
    off = Network.sequential(Input("in", (2,)), Dense("fc1", w, quant=Quantization(8, 0.2)), Neurons("lif1", (2,)))
    row = verify(off, target(weight_bits=8)).row("weight_bits")
    assert row.usage is None and not row.ok and "quantization scale 0.2" in row.detail


def test_float_weights_are_not_on_an_integer_grid():
    rng = np.random.default_rng(8)
    row = verify(chain(rng.normal(size=(20, 30))), target(weight_bits=16)).row("weight_bits")
    assert (row.usage, row.ok, row.worst) == (None, False, "layer fc1")
    assert row.detail == "weights of layer fc1 are not on an integer grid; quantize them (e.g. spikefit fit)"


def test_weight_scaling_none_and_chip():
    w1, w2 = np.array([[0.5, 1.0]]), np.array([[3.0]])
    net = chain(w1, w2)
    row = verify(net, target(weight_bits=8, weight_scaling="none")).row("weight_bits")
    assert not row.ok and "not integers" in row.detail
    assert verify(chain(np.array([[2.0, -3]]), np.array([[7.0]])), target(weight_bits=8, weight_scaling="none")
                  ).row("weight_bits").usage == 4
    layer = verify(net, target(weight_bits=8)).row("weight_bits")
    chip = verify(net, target(weight_bits=8, weight_scaling="chip")).row("weight_bits")
    assert layer.usage == 3 and chip.usage == 4            # layer: 1.0 -> 2 (3 bits); chip: 3.0 -> 6 (4 bits)


def test_grid_step():
    assert grid_step(np.array([0.3, 0.6, -0.9])) == pytest.approx(0.3)
    assert grid_step(np.array([2.0, 3.0])) == pytest.approx(1.0)
    assert grid_step(np.float32([0.1, 0.7, 1.3]).astype(np.float64)) == pytest.approx(0.1, rel=1e-6)
    assert grid_step(np.random.default_rng(0).normal(size=200)) is None
    assert grid_step(np.array([1.0, 1e-6])) is None         # needs more than 17 bits


def test_nan_weights_are_a_model_error():
    with pytest.raises(ModelError, match="weights of layer 'fc1' contain NaN"):
        verify(chain(np.array([[1.0, np.nan]])), target(weight_bits=8))


# -- structure ------------------------------------------------------------------------------------

def test_layer_kinds_recurrent_conv_limits_and_dense_sparse_equivalence():
    rng = np.random.default_rng(9)
    nodes = [Input("in", (4,)), Dense("fc1", np.ones((5, 4))), Neurons("lif1", (5,)),
             Dense("rec", sp.csr_array(random_sparse(rng, 5, 5, 0.5) + np.eye(5)))]
    net = Network({n.name: n for n in nodes}, [("in", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1")])
    row = verify(net, target(layers=LayerSpec(kinds=["dense"]))).row("layer_kinds")
    assert (row.usage, row.ok, row.worst) == ("dense, sparse, recurrent", False, "layer rec (recurrent)")
    assert verify(net, target(layers=LayerSpec(kinds=["sparse", "recurrent"]))).row("layer_kinds").ok
    conv = Network.sequential(Input("in", (3, 6, 6)), Conv2d("conv", np.ones((8, 3, 5, 5)), (3, 6, 6)),
                              Neurons("c", (8, 2, 2)))
    rows = verify(conv, target(layers=LayerSpec(kinds=["dense"], max_kernel=3, max_channels=8))).rows
    got = {r.name: (r.usage, r.ok) for r in rows}
    assert got["layer_kinds"] == ("conv2d", False) and got["max_kernel"] == (5, False) and got["max_channels"] == (8, True)


def test_pooling_is_folded_into_the_next_layer():
    w = np.ones((2, 4))                                  # reads the 2x2 pooled map
    net = Network.sequential(Input("in", (1, 4, 4)), Conv2d("conv", np.ones((1, 1, 1, 1)), (1, 4, 4)),
                             Neurons("c", (1, 4, 4)), Pool2d("pool", "sum", (2, 2), (1, 4, 4)),
                             Flatten("flat", (1, 2, 2)), Dense("fc", w), Neurons("d", (2,)))
    report = verify(net, target(fan_in=10, layers=LayerSpec(kinds=["conv2d", "dense", "flatten"])))
    assert report.row("fan_in").usage == 16              # each output sees all 16 neurons of c
    assert report.layers[1].synapses == 32
    assert report.row("layer_kinds").worst == "layer pool (sumpool2d)"


def test_neuron_model_row():
    net = chain(np.ones((2, 2)), np.ones((2, 2)), pops={1: {"du": 0.5}, 2: {"dv": 0.1}})
    row = verify(net, target(neuron=NeuronSpec(models=["lif"]))).row("neuron_model")
    assert (row.usage, row.limit, row.ok, row.worst) == ("cuba-lif", "lif", False, "layer lif1 (cuba-lif)")
    assert verify(net, target()).row("neuron_model").ok


# -- the report and the entry point ---------------------------------------------------------------

def test_report_to_dict_is_json_and_table_lists_every_row():
    rng = np.random.default_rng(10)
    net = chain(random_sparse(rng, 8, 6, 0.5), random_sparse(rng, 3, 8, 0.5))
    spec = target(neurons_per_core=4, axons_per_core=6, fan_in=3, unique_weights=2, weight_bits=3)
    report = verify(net, spec)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] == report.ok and d["target"] == "chip"
    assert [r["name"] for r in d["rows"]] == [r.name for r in report.rows]
    assert d["cores"]["cores"] == report.cores.cores and len(d["layers"]) == 2
    text = report.table()
    for r in report.rows:
        assert r.name in text
    assert "cores:" in text and "fc2" in text


def test_verify_takes_a_registered_target_name():
    report = verify(unique_net(5), "truenorth")
    assert report.target == "truenorth"
    assert report.row("unique_weights").worst == "layer lif1 neuron 3"
    with pytest.raises(UnknownTargetError, match="unknown target 'truenorht'"):
        verify(unique_net(5), "truenorht")
    with pytest.raises(ModelError, match="verify needs a spikefit.Network"):
        verify("model.nir", "truenorth")


def test_shape_mismatch_is_a_model_error():
    nodes = [Input("in", (3,)), Dense("fc1", np.ones((2, 4))), Neurons("lif1", (2,))]
    with pytest.raises(ModelError, match="layer 'fc1' reads 4 inputs but its source 'in' has 3"):
        verify(Network.sequential(*nodes), target())


def test_a_common_factor_of_a_layers_integers_joins_its_scale():
    """With one scale per layer, a power of two that all its integers share joins the scale: 254 = 127 << 1."""
    from spikefit.network import Quantization

    w = np.array([[254.0, -128.0], [2.0, 0.0]])
    layer = Dense("fc1", w, quant=Quantization(weight_bits=9, scale=1.0))
    net = Network.sequential(Input("in", (2,)), layer, Neurons("lif1", (2,)))
    row = verify(net, target(weight_bits=8)).row("weight_bits")
    assert (row.usage, row.ok, row.worst) == (8, True, "layer fc1 (scale 2)")
    chip = verify(net, target(weight_bits=8, weight_scaling="none")).row("weight_bits")
    assert (chip.usage, chip.ok) == (9, False)                   # raw integers: no scale to absorb it
    odd = Network.sequential(Input("in", (2,)), Dense("fc1", w * 3 + 1, quant=Quantization(weight_bits=12, scale=1.0)),
                             Neurons("lif1", (2,)))
    assert verify(odd, target(weight_bits=8)).row("weight_bits").usage == 11   # nothing shared: 763 needs 11 bits
