"""Networks around every limit and design rule of Xylo Audio 2, for ``spikefit bench vendor-agreement``.

Each limit is met just inside and just outside, each design rule satisfied and violated. Weights are
integers (the chip's own, see :func:`spikefit.targets.xylo_audio2.read`) unless a case is about
quantization; every network is built from a fixed seed, so the corpus is the same on every machine.
"""
from __future__ import annotations

import numpy as np

from spikefit.network import Dense, Flatten, Input, Network, Neurons, Output, Quantization
from spikefit.vendor import Case

FAN_OUT_NOT_CHECKED = ("the recurrent fan-out of 64 per hidden neuron is documented (xylo-overview.ipynb 'Max. fanout') "
                       "but neither rockpool's mapper nor xylosim checks it; spikefit holds the network to it")


def _w(rng, n_out: int, n_in: int, density: float = 0.5, lo: int = -100, hi: int = 100) -> np.ndarray:
    """Integer weights (n_out, n_in), about ``density`` of them non-zero."""
    w = rng.integers(lo, hi + 1, (n_out, n_in))
    w[w == 0] = 1
    return (w * (rng.random((n_out, n_in)) < density)).astype(np.float64)


def _fan_out(rng, n_out: int, n_in: int, k: int) -> np.ndarray:
    """Weights where every source (column) reaches exactly ``min(k, n_out)`` targets."""
    w = np.zeros((n_out, n_in))
    for j in range(n_in):
        rows = rng.choice(n_out, size=min(k, n_out), replace=False)
        w[rows, j] = rng.integers(1, 100, rows.size) * rng.choice([-1, 1], rows.size)
    return w


def _pop(name: str, n: int, vth: float = 200.0, **kw) -> Neurons:
    return Neurons(name, (n,), du=kw.pop("du", 0.5), dv=kw.pop("dv", 0.125), vth=vth, **kw)


def layered(n_in: int = 16, hidden=(32,), n_out: int = 8, *, seed: int = 0, recurrent=(), out_recurrent=False,
            chain_fan_out: int = 32) -> Network:
    """Input -> fc0 -> h0 [-> rec0 -> h0] -> fc1 -> h1 ... -> fcK -> o -> Output; hidden -> hidden layers
    give each source ``chain_fan_out`` targets (Xylo's recurrent fan-out)."""
    rng = np.random.default_rng(seed)
    nodes, edges = [Input("in", (n_in,))], []
    prev, width = "in", n_in
    for i, n in enumerate(hidden):
        w = _w(rng, n, width) if i == 0 else _fan_out(rng, n, width, chain_fan_out)
        nodes += [Dense(f"fc{i}", w), _pop(f"h{i}", n)]
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"h{i}")]
        if i in recurrent:
            nodes.append(Dense(f"rec{i}", _fan_out(rng, n, n, min(8, n))))
            edges += [(f"h{i}", f"rec{i}"), (f"rec{i}", f"h{i}")]
        prev, width = f"h{i}", n
    k = len(hidden)
    nodes += [Dense(f"fc{k}", _w(rng, n_out, width)), _pop("o", n_out, vth=100.0), Output("out", (n_out,))]
    edges += [(prev, f"fc{k}"), (f"fc{k}", "o"), ("o", "out")]
    if out_recurrent:
        nodes.append(Dense("rec_o", _fan_out(rng, n_out, n_out, 2)))
        edges += [("o", "rec_o"), ("rec_o", "o")]
    return Network({n.name: n for n in nodes}, edges)


def _add(net: Network, nodes: list, edges: list) -> Network:
    return Network({**net.nodes, **{n.name: n for n in nodes}}, net.edges + edges, dt=net.dt)


def _set(net: Network, layer: str, values, where=(0, 0)) -> Network:
    """Put ``values`` into layer's weight from row, column ``where`` on (one row)."""
    w = net.nodes[layer].weight
    r, c = where
    vals = np.atleast_1d(np.asarray(values, dtype=np.float64))
    w[r, c:c + vals.size] = vals
    return net


def _scaled(net: Network, layer: str, factor: int) -> Network:
    net.nodes[layer].weight *= factor
    return net


def _budget_cases() -> list[Case]:
    return [
        Case("xylo/hidden-1000-output-8", layered(hidden=(1000,), seed=1), True),
        Case("xylo/hidden-1001-output-7", layered(hidden=(1001,), n_out=7, seed=2), False),
        Case("xylo/hidden-999-output-9", layered(hidden=(999,), n_out=9, seed=3), False),
        Case("xylo/hidden-500+500-chain", layered(hidden=(500, 500), seed=4), True),
        Case("xylo/hidden-500+501-chain", layered(hidden=(500, 501), seed=5), False),
        Case("xylo/output-1", layered(n_out=1, seed=6), True),
        Case("xylo/output-9", layered(n_out=9, seed=7), False),
        Case("xylo/inputs-16", layered(n_in=16, seed=8), True),
        Case("xylo/inputs-1", layered(n_in=1, seed=9), True),
        Case("xylo/inputs-17", layered(n_in=17, seed=10), True,
             "rockpool only warns above 16 inputs (DRCWarning le_16_input_channels) and XyloSim simulates any "
             "number; the chip has 16 input channels, so spikefit refuses (limits.inputs)"),
    ]


def _rule_cases() -> list[Case]:
    rng = np.random.default_rng(20)
    cases = [
        Case("xylo/one-neuron-layer", Network.sequential(Input("in", (16,)), Dense("fc0", _w(rng, 8, 16)),
                                                         _pop("o", 8), Output("out", (8,))), False),
        Case("xylo/two-neuron-layers", layered(seed=21), True),
        Case("xylo/hidden-recurrent", layered(seed=22, recurrent=(0,)), True),
        Case("xylo/output-recurrent", layered(seed=23, out_recurrent=True), False),
        Case("xylo/chain-3-hidden", layered(hidden=(64, 48, 32), seed=24), True),
        Case("xylo/chain-4-hidden-recurrent-middle", layered(hidden=(40, 40, 40, 20), seed=25, recurrent=(1, 2)), True),
    ]
    net = layered(hidden=(32, 32, 32), seed=26)
    cases.append(Case("xylo/skip-hidden-to-hidden", _add(net, [Dense("skip", _fan_out(rng, 32, 32, 4))],
                                                         [("h0", "skip"), ("skip", "h2")]), True))
    net = layered(hidden=(32, 16), seed=27)
    cases.append(Case("xylo/two-hidden-layers-to-output", _add(net, [Dense("fcx", _w(rng, 8, 32))],
                                                               [("h0", "fcx"), ("fcx", "o")]), True))
    cases.append(Case("xylo/consecutive-weights-at-input", Network.sequential(
        Input("in", (16,)), Dense("fc0", _w(rng, 24, 16)), Dense("fc0b", _w(rng, 32, 24)), _pop("h0", 32),
        Dense("fc1", _w(rng, 8, 32)), _pop("o", 8), Output("out", (8,))), False))
    cases.append(Case("xylo/consecutive-weights-at-output", Network.sequential(
        Input("in", (16,)), Dense("fc0", _w(rng, 32, 16)), _pop("h0", 32), Dense("fc1", _w(rng, 12, 32)),
        Dense("fc1b", _w(rng, 8, 12)), _pop("o", 8), Output("out", (8,))), False))
    net = layered(seed=28)
    cases.append(Case("xylo/input-to-output-neurons", _add(net, [Dense("skip_in", _w(rng, 8, 16))],
                                                           [("in", "skip_in"), ("skip_in", "o")]), False))
    net = layered(hidden=(32, 16), seed=29)
    cases.append(Case("xylo/two-input-layers", _add(net, [Dense("fc_in2", _w(rng, 16, 16))],
                                                    [("in", "fc_in2"), ("fc_in2", "h1")]), False))
    cases.append(Case("xylo/input-feeds-neurons-directly", Network.sequential(
        Input("in", (16,)), _pop("h0", 16), Dense("fc1", _w(rng, 8, 16)), _pop("o", 8), Output("out", (8,))), False))
    net = layered(seed=30)
    cases.append(Case("xylo/output-feeds-back-to-hidden", _add(net, [Dense("back", _w(rng, 32, 8))],
                                                               [("o", "back"), ("back", "h0")]), False))
    net = layered(n_out=4, seed=31)
    cases.append(Case("xylo/output-feeds-output", _add(net, [Dense("fc_o2", _w(rng, 4, 4)), _pop("o2", 4),
                                                             Output("out2", (4,))],
                                                       [("o", "fc_o2"), ("fc_o2", "o2"), ("o2", "out2")]), False))
    net = Network.sequential(Input("in", (1, 4, 4)), Flatten("flat", (1, 4, 4)), Dense("fc0", _w(rng, 32, 16)),
                             _pop("h0", 32), Dense("fc1", _w(rng, 8, 32)), _pop("o", 8), Output("out", (8,)))
    cases.append(Case("xylo/flatten-input", net, True))
    net = layered(hidden=(64,), seed=32)
    import scipy.sparse as sp

    net.nodes["fc1"] = Dense("fc1", sp.csr_array(net.nodes["fc1"].weight))
    cases.append(Case("xylo/sparse-weights", net, True))
    cases.append(Case("xylo/decays-if-and-fast", Network.sequential(
        Input("in", (16,)), Dense("fc0", _w(rng, 32, 16)), Neurons("h0", (32,), du=1.0, dv=0.0, vth=50.0),
        Dense("fc1", _w(rng, 8, 32)), Neurons("o", (8,), du=0.125, dv=1.0, vth=20.0), Output("out", (8,))), True))
    return cases


def _weight_cases() -> list[Case]:
    q = Quantization(8, 0.01)
    quantized = layered(seed=40)
    for name in ("fc0", "fc1"):
        c = quantized.nodes[name]
        quantized.nodes[name] = Dense(name, c.weight * 0.01, quant=q)
    quantized9 = layered(seed=41)
    for name in ("fc0", "fc1"):
        c = quantized9.nodes[name]
        quantized9.nodes[name] = Dense(name, np.clip(c.weight * 2, -256, 254) * 0.01, quant=Quantization(9, 0.01))
    _set(quantized9, "fc0", [2.54, -2.56])
    shared = layered(hidden=(32, 32), seed=46, recurrent=(0,))
    _scaled(shared, "rec0", 2)
    _set(shared, "rec0", [254], (0, 0))
    shared.nodes["rec0"].weight[1, 0] = 0
    _set(shared, "fc1", [127], (0, 0))
    return [
        Case("xylo/weights-int8-extremes", _set(layered(seed=42), "fc0", [127, -128, 127, -128]), True),
        Case("xylo/weights-128", _set(layered(seed=43), "fc0", [128, 1]), False),
        Case("xylo/weights-2x-int8-shift-1", _set(_scaled(layered(seed=44), "fc0", 2), "fc0", [254, -256]), True),
        Case("xylo/weights-3x-int8", _set(_scaled(layered(seed=45), "fc0", 3), "fc0", [381, -384]), False),
        Case("xylo/weights-shift-7", _set(_scaled(layered(seed=47), "fc1", 128), "fc1", [127 * 128, -128 * 128]), True),
        Case("xylo/weights-shift-8", _set(_scaled(layered(seed=48), "fc1", 256), "fc1", [127 * 256, -128 * 256]), True,
             "XyloSim takes any int8 weight shift; Xylo's CTRL1 register holds each matrix's shift in 3 bits "
             "(0..7, xa2_devkit_utils.py), so spikefit refuses a matrix that needs a shift of 8"),
        Case("xylo/recurrent-matrix-one-shift", shared, False),
        Case("xylo/per-matrix-shifts", _set(_scaled(layered(seed=49), "fc1", 4), "fc1", [508, -512]), True),
        Case("xylo/output-weights-3x-int8", _set(_scaled(layered(seed=50), "fc1", 3), "fc1", [381]), False),
        Case("xylo/quantized-int8", quantized, True),
        Case("xylo/quantized-9-bit-even", quantized9, True),   # int8 << 1: the shift joins the layer's scale
    ]


def _neuron(vth_h: float = 200.0, vth_o: float = 100.0, bias_h=None, bias_o=None, scale: float | None = None,
            seed: int = 60) -> Network:
    rng = np.random.default_rng(seed)
    s = 1.0 if scale is None else scale
    q = None if scale is None else Quantization(8, scale)
    return Network.sequential(
        Input("in", (16,)), Dense("fc0", _w(rng, 32, 16) * s, quant=q), _pop("h0", 32, vth=vth_h, bias=bias_h),
        Dense("fc1", _w(rng, 8, 32) * s, quant=q), _pop("o", 8, vth=vth_o, bias=bias_o), Output("out", (8,)))


def _neuron_cases() -> list[Case]:
    return [
        Case("xylo/threshold-32767", _neuron(vth_h=32766.0), True),
        Case("xylo/threshold-32768", _neuron(vth_h=32767.0), False),
        Case("xylo/threshold-32767-at-scale-0.5", _neuron(vth_h=16383.0, scale=0.5), True),
        Case("xylo/threshold-32768-at-scale-0.5", _neuron(vth_h=16383.5, scale=0.5), False),
        Case("xylo/output-threshold-32768", _neuron(vth_o=32767.0), False),
        Case("xylo/bias-32767", _neuron(bias_h=np.full(32, 32767.0)), True),
        Case("xylo/bias-32768", _neuron(bias_h=np.full(32, 32768.0)), False),
        Case("xylo/bias-minus-32768", _neuron(bias_o=np.full(8, -32768.0)), True),
        Case("xylo/bias-minus-32769", _neuron(bias_o=np.full(8, -32769.0)), False),
    ]


def _layer_bias_case() -> Case:
    net = layered(seed=70)
    c = net.nodes["fc0"]
    net.nodes["fc0"] = Dense("fc0", c.weight, bias=np.full(c.weight.shape[0], 3.0))
    return Case("xylo/weight-layer-bias", net, True,
                "rockpool drops the bias of a weight layer with only a DRCWarning (weight_nodes_have_no_biases), "
                "so the mapped network differs from this one; spikefit refuses it")


def _fan_out_cases() -> list[Case]:
    rng = np.random.default_rng(80)

    def rec(k: int, seed: int, out_all: bool = False) -> Network:
        net = layered(hidden=(100,), seed=seed, recurrent=(0,))
        w = _fan_out(rng, 100, 100, 8)
        w[:, 0] = 0
        w[rng.choice(100, size=k, replace=False), 0] = 5
        net.nodes["rec0"].weight[:] = w
        if out_all:
            net.nodes["fc1"].weight[:, 0] = 7
        return net

    return [
        Case("xylo/recurrent-fan-out-64", rec(64, 81), True),
        Case("xylo/recurrent-fan-out-65", rec(65, 82), True, FAN_OUT_NOT_CHECKED),
        Case("xylo/recurrent-64-plus-8-output-synapses", rec(64, 83, out_all=True), True),
        Case("xylo/chain-fan-out-80", layered(hidden=(80, 80), seed=84, chain_fan_out=80), True, FAN_OUT_NOT_CHECKED),
    ]


def corpus() -> list[Case]:
    """The Xylo Audio 2 corpus: budgets, design rules, weights, thresholds and biases, fan-out."""
    return _budget_cases() + _rule_cases() + _weight_cases() + _neuron_cases() + [_layer_bias_case()] + _fan_out_cases()
