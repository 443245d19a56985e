"""NIR reading and writing: the continuous -> discrete mapping, dt detection, round trips, codebooks,
nested subgraphs and the one-line errors for files spikefit cannot read."""
from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from spikefit import plugins
from spikefit.emulator import EmulatorBackend
from spikefit.errors import ExportError, ModelError
from spikefit.network import (Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d,
                              Quantization)
from spikefit.nir_io import (NirExporter, detect_convention, network_to_nir, nir_to_network,
                             read_nir, write_nir)


# -- test oracle: spikefit.network's discrete semantics, written independently of the emulator ----
def reference_run(net: Network, x: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """Spikes (t, b, n) of every population for inputs ``x`` (t, b, n_in), and the smallest
    ``|v - vth|`` met: a spike decision that close to threshold could flip under float32 rounding."""
    T, B, _ = x.shape
    pops = [n for n in net.topological_order() if isinstance(net.nodes[n], Neurons)]
    layers = net.synapse_layers()
    spikes = {net.inputs[0].name: x, **{p: np.zeros((T, B, net.nodes[p].size)) for p in pops}}
    u = {p: np.zeros((B, net.nodes[p].size)) for p in pops}
    v = {p: np.zeros((B, net.nodes[p].size)) for p in pops}
    margin = np.inf
    for t in range(T):
        for p in pops:
            n = net.nodes[p]
            a = np.zeros((B, n.size))
            for la in (la for la in layers if la.post.name == p):
                src = spikes[la.pre.name]  # a recurrent edge reads step t-1 (no spikes before t=0)
                s = (src[t - 1] if t > 0 else np.zeros_like(src[0])) if la.recurrent else src[t]
                a = a + _drive(net, la.conn, s)
            u[p] = u[p] * (1 - n.du) + a
            v[p] = v[p] * (1 - n.dv) + u[p] + n.bias
            margin = min(margin, float(np.abs(v[p] - n.vth).min()))
            spikes[p][t] = v[p] > n.vth
            v[p][v[p] > n.vth] = 0.0
    return {p: spikes[p].astype(bool) for p in pops}, margin


def _drive(net: Network, conn, s: np.ndarray) -> np.ndarray:
    """Synaptic input of ``conn`` for source spikes ``s`` (b, n), through Flatten / Pool2d nodes."""
    path, node = [], net.nodes[net.predecessors(conn.name)[0]]
    while isinstance(node, (Flatten, Pool2d)):
        path.insert(0, node)
        node = net.nodes[net.predecessors(node.name)[0]]
    x = torch.from_numpy(np.asarray(s, dtype=np.float64))
    for st in path:
        if isinstance(st, Pool2d):
            y = F.avg_pool2d(x.reshape(-1, *st.input_shape), st.kernel, st.stride, st.padding)
            x = y * (st.kernel[0] * st.kernel[1] if st.kind_ == "sum" else 1)
        x = x.reshape(x.shape[0], -1)
    if isinstance(conn, Conv2d):
        b = None if conn.bias is None else torch.from_numpy(conn.bias)
        y = F.conv2d(x.reshape(-1, *conn.input_shape), torch.from_numpy(conn.weight), b, conn.stride, conn.padding)
        return y.reshape(y.shape[0], -1).numpy()
    out = x.numpy() @ conn.dense_weight().T
    return out + (0 if conn.bias is None else conn.bias)


def emulate(net: Network, x: np.ndarray) -> dict[str, np.ndarray]:
    """spikefit's float emulator (the reference semantics the fixed-point backends agree with)."""
    return EmulatorBackend(mode="float").run(net, x)


def assert_same_network(a: Network, b: Network) -> None:
    assert list(a.nodes) == list(b.nodes)
    assert a.edges == b.edges and a.dt == b.dt and a.metadata == b.metadata
    for name, x in a.nodes.items():
        y = b.nodes[name]
        assert type(x) is type(y), name
        for key, vx in vars(x).items():
            vy = getattr(y, key)
            if isinstance(vx, Quantization):
                assert vx.to_dict() == vy.to_dict(), (name, key)
            elif sp.issparse(vx) or sp.issparse(vy):
                assert sp.issparse(vx) and sp.issparse(vy), (name, key)
                assert np.array_equal(vx.toarray(), vy.toarray()), (name, key)
            elif isinstance(vx, np.ndarray) or vx is None:
                assert (vx is None and vy is None) or np.array_equal(vx, vy), (name, key)
            else:
                assert vx == vy, (name, key)


def spike_input(seed: int, t: int, b: int, shape, p: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, b, int(np.prod(shape)))) < p).astype(np.float64)


def graph(*nodes, edges=None, **named):
    """A NIRGraph of ``named`` nodes chained in order (or with ``edges``)."""
    names = list(named)
    return nir.NIRGraph(nodes=dict(named), edges=edges or list(zip(names[:-1], names[1:])), type_check=False)


def a(*values):
    return np.array(values, dtype=np.float64)


# -- continuous -> discrete mapping ---------------------------------------------------------------
def test_cubalif_maps_by_forward_euler_hand_computed():
    # dt = 1 ms: du = dt/tau_syn = 0.25, dv = dt/tau_mem = 0.1,
    # gain = r * w_in * du * dv = 2 * 3 * 0.25 * 0.1 = 0.15, bias = dv * v_leak = 0.05
    g = graph(inp=nir.Input(a(1)), fc=nir.Linear(weight=np.array([[1.0]])),
              lif=nir.CubaLIF(tau_syn=a(4e-3), tau_mem=a(1e-2), r=a(2), v_leak=a(0.5), v_threshold=a(0.3), w_in=a(3)),
              out=nir.Output(a(1)))
    net = nir_to_network(g, dt=1e-3)
    pop = net.nodes["lif"]
    assert (pop.du, pop.dv, pop.vth) == pytest.approx((0.25, 0.1, 0.3))
    assert pop.bias == pytest.approx([0.05])
    assert net.nodes["fc"].weight == pytest.approx(np.array([[0.15]]))
    # One input spike at t=0. By hand: u0=.15 v0=.2 | u1=.1125 v1=.3425 > .3 spike |
    # u2=.084375 v2=.134375 | u3=.06328125 v3=.23421875 | u4=.0474609375 v4=.3082578125 > .3 spike
    x = np.zeros((6, 1, 1))
    x[0] = 1
    ref, _ = reference_run(net, x)
    assert np.flatnonzero(ref["lif"][:, 0, 0]).tolist() == [1, 4]
    assert np.array_equal(emulate(net, x)["lif"], ref["lif"])
    # The same from NIR's ODE, integrated by forward Euler in its own variables I and v.
    i = v = 0.0
    fired = []
    for t in range(6):
        i += 1e-3 / 4e-3 * (-i + 3 * x[t, 0, 0])
        v += 1e-3 / 1e-2 * (0.5 - v + 2 * i)
        if v > 0.3:
            fired.append(t)
            v = 0.0
    assert fired == [1, 4]


def test_lif_if_and_li_synapse_mappings():
    g = graph(inp=nir.Input(a(2)), fc=nir.Affine(weight=np.eye(2), bias=a(1, -1)),
              lif=nir.LIF(tau=a(5e-3, 5e-3), r=a(4, 4), v_leak=a(0.5, 0.5), v_threshold=a(1, 1)),
              fc2=nir.Linear(weight=np.ones((1, 2))), iff=nir.IF(r=a(500), v_threshold=a(2)),
              fc3=nir.Linear(weight=np.ones((1, 1))), syn=nir.LI(tau=a(4e-3), r=a(2), v_leak=a(0)),
              spk=nir.IF(r=a(1000), v_threshold=a(1)), out=nir.Output(a(1)))
    net = nir_to_network(g, dt=1e-3)
    lif, iff, spk = net.nodes["lif"], net.nodes["iff"], net.nodes["spk"]
    # LIF: du=1, dv=dt/tau=0.2, gain=r*dv=0.8 (weights and Affine bias), bias=dv*v_leak=0.1
    assert (lif.du, lif.dv) == pytest.approx((1.0, 0.2)) and lif.bias == pytest.approx([0.1, 0.1])
    assert net.nodes["fc"].weight == pytest.approx(0.8 * np.eye(2))
    assert net.nodes["fc"].bias == pytest.approx([0.8, -0.8])
    # IF: du=1, dv=0, gain=r*dt=0.5
    assert (iff.du, iff.dv, iff.vth) == (1.0, 0.0, 2.0) and net.nodes["fc2"].weight == pytest.approx(np.array([[0.5, 0.5]]))
    # LI feeding an IF is its synaptic current: du=dt/tau=0.25, gain=r_li*du * r*dt = 2*.25*1 = 0.5
    assert "syn" not in net.nodes and ("fc3", "spk") in net.edges
    assert (spk.du, spk.dv) == pytest.approx((0.25, 0.0)) and net.nodes["fc3"].weight == pytest.approx(np.array([[0.5]]))


def test_norse_convention_fixes_tau_and_reads_inputs_as_current_jumps():
    # Norse 1.1.0 writes tau = dt / tau_inv (dt = 1 ms): tau_syn_inv = 200, tau_mem_inv = 100 become
    # 5e-6 and 1e-5; its LIFCell adds each input to the current in full, so gain = r * w_in * dv.
    g = graph(inp=nir.Input(a(1)), fc=nir.Affine(weight=np.array([[2.0]]), bias=a(0)),
              lif=nir.CubaLIF(tau_syn=a(5e-6), tau_mem=a(1e-5), r=a(1), v_leak=a(0), v_threshold=a(1)),
              out=nir.Output(a(1)))
    conv = detect_convention(g)
    assert (conv.name, conv.dt, conv.jumps) == ("norse-1.1", 1e-3, True)
    net = nir_to_network(g)
    assert (net.nodes["lif"].du, net.nodes["lif"].dv) == pytest.approx((0.2, 0.1))
    assert net.nodes["fc"].weight == pytest.approx(np.array([[0.2]]))
    assert net.metadata["nir_convention"] == {"name": "norse-1.1", "dt": 1e-3}


@pytest.mark.parametrize("params, expect", [
    # snnTorch 1.0.0: dt = 1e-4 hard-coded, r = tau/dt, w_in = tau_syn/dt (float32 values)
    (dict(tau=np.float32([1e-3]), r=np.float32([10.0])), ("snntorch", 1e-4)),
    # unit gain at another step is no snnTorch file: NIR's equations with the default step
    (dict(tau=a(0.02), r=a(10.0)), ("nir", 1e-3)),
    # nothing recognisable: NIR's equations with the default step
    (dict(tau=a(0.02), r=a(3.0)), ("nir", 1e-3)),
])
def test_dt_detection(params, expect):
    g = graph(inp=nir.Input(a(1)), fc=nir.Linear(weight=np.ones((1, 1))),
              lif=nir.LIF(v_leak=a(0), v_threshold=a(1), **params), out=nir.Output(a(1)))
    conv = detect_convention(g)
    assert (conv.name, conv.dt) == pytest.approx(expect)
    net = nir_to_network(g)
    assert net.dt == pytest.approx(expect[1])
    dv = expect[1] / float(params["tau"][0])
    assert net.nodes["lif"].dv == pytest.approx(dv, rel=1e-6)
    assert net.nodes["fc"].weight == pytest.approx(np.array([[params["r"][0] * dv]]), rel=1e-6)  # gain r*dt/tau


def test_explicit_dt_applies_the_equations_as_written(tmp_path):
    net = Network.sequential(Input("in", (3,)), Dense("fc", np.full((2, 3), 0.5)),
                             Neurons("lif", (2,), du=0.25, dv=0.1, vth=1.0), Output("out", (2,)), dt=1e-3)
    path = write_nir(net, tmp_path / "net.nir")
    assert detect_convention(nir.read(path, type_check=False)).name == "spikefit"
    twice = read_nir(path, dt=2e-3)  # each step now lasts twice as long: du, dv and gain double
    lif = twice.nodes["lif"]
    assert (lif.du, lif.dv, twice.dt) == pytest.approx((0.5, 0.2, 2e-3))
    assert twice.nodes["fc"].weight == pytest.approx(np.full((2, 3), 0.5 * 4))  # r*w_in*du*dv = 4


# -- round trips ------------------------------------------------------------------------------------
def _dense_net():
    rng = np.random.default_rng(1)
    return Network.sequential(
        Input("in", (6,)), Dense("fc1", rng.normal(size=(5, 6)), bias=rng.normal(size=5)),
        Neurons("h", (5,), du=0.3, dv=0.07, vth=1.25, bias=rng.normal(size=5) * 0.1),
        Dense("fc2", rng.normal(size=(4, 5))), Neurons("o", (4,), du=1.0, dv=0.2, vth=0.8), Output("out", (4,)),
        dt=1e-3, metadata={"trained_on": "digits", "epochs": 3})


def _sparse_net():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(7, 6)) * (rng.random((7, 6)) < 0.3)
    return Network.sequential(Input("in", (6,)), Dense("fc", sp.csr_array(w)),
                              Neurons("if", (7,), du=1.0, dv=0.0, vth=0.5, bias=np.linspace(0.01, 0.07, 7)),
                              Dense("fc2", sp.csr_array(np.eye(3, 7))), Neurons("syn_if", (3,), du=0.125, dv=0.0, vth=0.3),
                              Output("out", (3,)), dt=5e-4)


def _conv_net():
    rng = np.random.default_rng(3)
    codebook = np.array([[-0.5, -0.125, 0.375, 0.75]])
    return Network.sequential(
        Input("in", (1, 8, 8)), Conv2d("c1", rng.normal(size=(3, 1, 3, 3)), (1, 8, 8), padding=(1, 1), bias=a(0.1, 0, -0.1)),
        Neurons("l1", (3, 8, 8), du=0.5, dv=0.1, vth=1.0), Pool2d("p1", "sum", (2, 2), (3, 8, 8)),
        Conv2d("c2", codebook[0, rng.integers(0, 4, size=(2, 3, 3, 3))], (3, 4, 4), stride=(1, 1),
               quant=Quantization(4, 0.125, codebook, scope="layer")), Neurons("l2", (2, 2, 2), du=1.0, dv=0.05, vth=0.9),
        Pool2d("p2", "avg", (2, 2), (2, 2, 2)), Flatten("flat", (2, 1, 1)), Dense("fc", rng.normal(size=(3, 2))),
        Neurons("o", (3,), du=0.2, dv=0.3, vth=0.4), Output("out", (3,)))


def _recurrent_net():
    rng = np.random.default_rng(4)
    nodes = [Input("in", (4,)), Dense("fc", rng.normal(size=(6, 4))), Neurons("r", (6,), du=0.4, dv=0.1, vth=1.0),
             Dense("rec", rng.normal(size=(6, 6)) * (1 - np.eye(6))), Dense("fc2", rng.normal(size=(2, 6))),
             Neurons("o", (2,), du=1.0, dv=0.0, vth=1.0, bias=a(0.25, -0.5)), Output("out", (2,))]
    edges = [("in", "fc"), ("fc", "r"), ("r", "rec"), ("rec", "r"), ("r", "fc2"), ("fc2", "o"), ("o", "out")]
    return Network({n.name: n for n in nodes}, edges, dt=2e-3)


@pytest.mark.parametrize("make", [_dense_net, _sparse_net, _conv_net, _recurrent_net],
                         ids=["dense", "sparse", "conv-pool", "recurrent"])
def test_round_trip_is_exact(tmp_path, make):
    net = make()
    back = read_nir(write_nir(net, tmp_path / "net.nir"))
    assert_same_network(net, back)
    x = spike_input(0, 12, 2, net.inputs[0].shape)
    ref, _ = reference_run(net, x)
    assert all(np.array_equal(ref[p], s) for p, s in emulate(back, x).items())


def test_written_file_reads_in_nir_with_type_check(tmp_path):
    for make in (_dense_net, _sparse_net, _conv_net, _recurrent_net):
        g = nir.read(write_nir(make(), tmp_path / "net.nir"))  # nir's own type inference and checks pass
        assert g.metadata["spikefit"]["dt"] == make().dt


def test_populations_become_the_simplest_nir_neuron(tmp_path):
    g = nir.read(write_nir(_sparse_net(), tmp_path / "n.nir"), type_check=False)
    kinds = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert kinds["if"] == "IF" and kinds["syn_if"] == "IF" and kinds["syn_if.synapse"] == "LI"
    assert kinds["fc"] == "Affine"  # the IF bias rides on the connection bias (IF has no leak voltage)
    assert np.allclose(g.nodes["fc"].bias, np.linspace(0.01, 0.07, 7))
    dense = nir.read(write_nir(_dense_net(), tmp_path / "d.nir"), type_check=False)
    assert {type(v).__name__ for v in dense.nodes.values()} >= {"CubaLIF", "LIF", "Affine", "Linear"}


def test_codebook_survives_the_trip(tmp_path):
    codebook = np.array([[-0.5, 0.25, 0.75], [-0.25, 0.5, 1.0]])
    groups = np.array([0, 1, 0, 1])
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 3, size=(4, 5))
    w = codebook[groups[:, None], idx] * (rng.random((4, 5)) < 0.6)
    quant = Quantization(weight_bits=6, scale=0.25, codebook=codebook, scope="neuron", groups=groups)
    net = Network.sequential(Input("in", (5,)), Dense("fc", w, quant=quant), Neurons("o", (4,), du=0.5, dv=0.25),
                             Output("out", (4,)))
    path = write_nir(net, tmp_path / "q.nir")
    meta = nir.read(path, type_check=False).nodes["fc"].metadata["spikefit"]
    assert np.array_equal(meta["codebook_index"], np.where(w != 0, idx, -1))
    assert_same_network(net, read_nir(path))
    scaled = read_nir(path, dt=2e-3)  # gain 4: the codebook scales with the weights
    assert np.allclose(scaled.nodes["fc"].quant.codebook, 4 * codebook)
    with h5py.File(path, "r+") as f:  # another tool changes one weight and keeps the metadata
        f["node/nodes/fc/weight"][0, int(np.argmax(w[0] != 0))] += 0.1
    with pytest.raises(ModelError, match=r"weights of NIR node 'fc' no longer match their codebook indices "
                                         r"\(1 synapses differ\).*remove metadata\['spikefit'\]"):
        read_nir(path)


def test_target_and_metadata_travel_in_graph_metadata(tmp_path):
    target = plugins.list_targets()[0]
    path = plugins.get_exporter("nir").export(_dense_net(), tmp_path / "t.nir", target)
    meta = nir.read(path, type_check=False).metadata["spikefit"]
    assert meta["target"] == target.name and meta["dt"] == 1e-3 and meta["format"] == 1
    assert read_nir(path).metadata == {"trained_on": "digits", "epochs": 3}
    assert isinstance(plugins.get_exporter("nir"), NirExporter)


def test_read_accepts_a_graph_in_memory():
    net = _recurrent_net()
    assert_same_network(net, nir_to_network(network_to_nir(net)))
    assert_same_network(net, read_nir(network_to_nir(net)))


def test_nested_subgraph_is_inlined_with_its_recurrent_edge(tmp_path):
    n = 3
    rec = nir.NIRGraph(nodes={"input": nir.Input(np.array([n])),
                              "lif": nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n)),
                              "w_rec": nir.Linear(weight=0.5 * np.ones((n, n))), "output": nir.Output(np.array([n]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")], type_check=False)
    g = graph(input=nir.Input(a(2)), fc=nir.Affine(weight=np.ones((n, 2)), bias=np.zeros(n)), r1=rec, output=nir.Output(a(n)))
    nir.write(tmp_path / "nested.nir", g)
    net = read_nir(tmp_path / "nested.nir")
    assert set(net.edges) == {("input", "fc"), ("fc", "r1.lif"), ("r1.lif", "r1.w_rec"), ("r1.w_rec", "r1.lif"),
                              ("r1.lif", "output")}
    assert net.dt == pytest.approx(1e-4)  # snnTorch's unit gain: r = tau/1e-4
    assert [la.recurrent for la in net.synapse_layers()] == [False, True]


# -- errors -----------------------------------------------------------------------------------------
def test_file_errors(tmp_path):
    with pytest.raises(ModelError, match=r"^model file '.*missing.nir' does not exist$"):
        read_nir(tmp_path / "missing.nir")
    (tmp_path / "text.nir").write_text("not a graph")
    with pytest.raises(ModelError, match=r"^model file '.*text.nir' is not an HDF5 NIR file \(no HDF5 signature\)"):
        read_nir(tmp_path / "text.nir")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(ModelError, match=r"is not an HDF5 NIR file \(no 'node' group\)"):
        read_nir(tmp_path / "other.h5")
    good = write_nir(_dense_net(), tmp_path / "good.nir").read_bytes()
    (tmp_path / "cut.nir").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match=r"^model file '.*cut.nir' is not an HDF5 NIR file \(OSError: .*\); write it again"):
        read_nir(tmp_path / "cut.nir")
    with pytest.raises(ModelError, match=r"is a folder, not a NIR file"):
        read_nir(tmp_path)


def test_unknown_node_type_in_file_is_named(tmp_path):
    path = write_nir(_dense_net(), tmp_path / "net.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/h/type"]
        f["node/nodes/h/type"] = np.bytes_("Spiral")
    with pytest.raises(ModelError, match=r"node 'h' has type 'Spiral', unknown to nir 1\.0\.\d+; spikefit reads Input, Output"):
        read_nir(path)


@pytest.mark.parametrize("nodes, message", [
    (dict(d=nir.Delay(delay=a(1))), r"NIR node 'd' has type Delay, which spikefit cannot read; it reads Input, Output, "
                                    r"Affine, Linear, Conv2d, Flatten, SumPool2d, AvgPool2d, IF, LIF, CubaLIF, LI"),
    (dict(fc=nir.Linear(weight=np.ones((1, 1))), fc2=nir.Linear(weight=np.ones((1, 1)))),
     r"NIR nodes 'fc' \(Linear\) and 'fc2' \(Linear\) are consecutive weight layers.*\(W = W2 @ W1, b = W2 @ b1 \+ b2\)"),
    (dict(fc=nir.Linear(weight=np.ones((1, 1)))), r"NIR node 'fc' \(Linear\) feeds Output 'out' directly; its result is an "
                                                 r"analog current, not spikes"),
    (dict(fc=nir.Linear(weight=np.ones((1, 1))), if1=nir.IF(r=a(1e3), v_threshold=a(1)),
          li=nir.LI(tau=a(1e-2), r=a(1), v_leak=a(0))),
     r"NIR node 'li' \(LI\) is a non-spiking leaky integrator; spikefit reports spikes only"),
    (dict(lif=nir.LIF(tau=a(1e-2), r=a(1), v_leak=a(0), v_threshold=a(1))),
     r"NIR node 'lif' \(LIF\) receives 'inp' \(Input\) directly, without a weight node"),
    (dict(fc=nir.Linear(weight=np.ones((1, 1))),
          lif=nir.LIF(tau=a(1e-2), r=a(1), v_leak=a(0), v_threshold=a(1), v_reset=a(-0.5))),
     r"v_reset -0\.5 of NIR node 'lif' \(LIF\) is not 0; spikefit neurons reset to 0"),
    (dict(fc=nir.Linear(weight=np.ones((2, 1))),
          lif=nir.LIF(tau=a(1e-2, 2e-2), r=a(1, 1), v_leak=a(0, 0), v_threshold=a(1, 1))),
     r"tau of NIR node 'lif' varies across neurons \(0\.01 \.\. 0\.02\); spikefit populations share one value per layer"),
    (dict(fc=nir.Linear(weight=np.ones((1, 1))), lif=nir.LIF(tau=a(5e-4), r=a(2), v_leak=a(0), v_threshold=a(1))),
     r"tau 0\.0005 s of NIR node 'lif' is shorter than the step dt=0\.001 s \(dt/tau = 2 > 1\); read it with a smaller dt"),
])
def test_unreadable_graphs_fail_with_one_line(nodes, message):
    with pytest.raises(ModelError, match=message) as err:
        nir_to_network(graph(inp=nir.Input(a(1)), **nodes, out=nir.Output(a(1))), dt=1e-3)
    assert "\n" not in str(err.value)


def test_populations_nir_cannot_express_fail_to_export(tmp_path):
    base = [Input("in", (2,)), Dense("fc", np.ones((2, 2)))]
    stuck = Network.sequential(*base, Neurons("n", (2,), du=0.0, dv=0.1))
    with pytest.raises(ExportError, match=r"population 'n' has du = 0 \(a synaptic current that never decays\)"):
        write_nir(stuck, tmp_path / "x.nir")
    biased = Network.sequential(*base, Neurons("n", (2,), du=0.5, dv=0.0, bias=a(0.1, 0.1)))
    with pytest.raises(ExportError, match=r"population 'n' has du < 1, dv = 0 and a bias, which NIR cannot express"):
        write_nir(biased, tmp_path / "x.nir")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_failed_write_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = write_nir(_dense_net(), tmp_path / "keep.nir")
    before = path.read_bytes()

    def broken(filename, graph, **kw):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        write_nir(_conv_net(), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.nir"]
