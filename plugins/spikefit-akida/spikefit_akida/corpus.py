"""Networks around every AKD1000 limit and rule (vendors.md, docs/akida.md): each limit just inside
and just outside, each design rule kept and broken. Deterministic: weights are seeded integers
(scale 1), so every layer's integer weights are the values written here.

``expect`` is what akida 2.19.3's ``map(AKD1000(), hw_only=True)`` answers (None: no akida.Model
expresses the network, so the vendor checks nothing); ``known_difference`` marks where spikefit is
expected to disagree with the vendor, and says why.
"""
from __future__ import annotations

import numpy as np

from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d
from spikefit.vendor import Case

FOUR, TWO, ONE = (-7, 7), (-1, 1), (0, 1)      # integer ranges of 4-, 2- and 1-bit layers


def _ints(rng, shape, span, force=None) -> np.ndarray:
    lo, hi = span
    w = rng.integers(lo, hi + 1, size=shape).astype(np.float64)
    flat = w.reshape(-1)
    flat[0], flat[-1] = lo, hi                    # the span's ends occur, so the layer needs its width
    if lo == 0 and hi == 0:
        flat[:] = 0
    if force is not None:
        flat[len(flat) // 2] = force
    return w


def net(inp, *layers, seed: int = 0, name: str = "akida") -> Network:
    """A chain from an Input of shape ``inp``. Layers:
    ("fc", units, span[, force]) / ("conv", filters, k, span, stride, padding[, force]) (k an int or
    (kh, kw); padding None: k // 2) / ("pool", kind, kernel) (kernel None: global) / ("flatten",) /
    ("neurons", dv) after a connection with act=False / ("noact",) turns off the next connection's
    population. Each connection is followed by an IF population unless the next entry is "noact"."""
    rng = np.random.default_rng(seed)
    nodes = [Input("in", inp)]
    shape, i, skip = tuple(inp), 0, False
    for spec in layers:
        kind = spec[0]
        if kind == "noact":
            skip = True
            continue
        i += 1
        if kind == "fc":
            n = int(np.prod(shape))
            nodes.append(Dense(f"fc{i}", _ints(rng, (spec[1], n), spec[2], *spec[3:4])))
            shape = (spec[1],)
        elif kind == "conv":
            f, k, span, stride, pad = spec[1:6]
            kh, kw = (k, k) if isinstance(k, int) else k
            pad = (kh // 2, kw // 2) if pad is None else pad
            nodes.append(Conv2d(f"conv{i}", _ints(rng, (f, shape[0], kh, kw), span, *spec[6:7]), shape,
                                stride=stride, padding=pad))
            shape = nodes[-1].output_shape
        elif kind == "pool":
            kernel = tuple(shape[1:]) if spec[2] is None else spec[2]
            nodes.append(Pool2d(f"pool{i}", spec[1], kernel, shape))
            shape = nodes[-1].output_shape
            continue
        elif kind == "flatten":
            nodes.append(Flatten(f"flat{i}", shape))
            shape = nodes[-1].output_shape
            continue
        elif kind == "neurons":
            nodes.append(Neurons(f"lif{i}", shape, dv=spec[1]))
            continue
        if skip:
            skip = False
        else:
            nodes.append(Neurons(f"n{i}", shape))
    nodes.append(Output("out", shape))
    return Network.sequential(*nodes, metadata={"name": name})


def _fc_chain(n: int, units: int = 2) -> tuple:
    return tuple(("fc", units, ONE) for _ in range(n))


def _big_fcs(n: int) -> tuple:
    """``n`` fully connected layers too large for an FNP3 (each takes an FNP2): 1000 <-> 100 units."""
    return tuple(("fc", 100 if j % 2 == 0 else 1000, FOUR) for j in range(n))


def _spatial(x: int) -> list:
    """(4, x, 256) -> stride-2 1-bit convolutions until x <= 32 -> a global-pooled convolution."""
    layers = []
    while x > 32:
        layers.append(("conv", 8, 3, ONE, 2, None))
        x = (x + 1) // 2
    layers += [("conv", 8, 3, ONE, 1, None), ("pool", "avg", None), ("flatten",)]
    return layers


def _cases() -> list[tuple]:
    """(name, network, expect, known_difference)."""
    c = []
    add = c.append
    # -- fully connected input (all inputs, zeros included) and units ---------------------------------
    add(("fc/inputs-57334", net((57334,), ("fc", 2, FOUR)), True, ""))
    add(("fc/inputs-57335", net((57335,), ("fc", 2, FOUR)), False, ""))
    sparse = net((57335,), ("fc", 2, FOUR))
    w = sparse.nodes["fc1"].weight
    w[:, 64:] = 0.0                                # 64 non-zero inputs per unit; Akida counts all 57,335
    add(("fc/inputs-57335-mostly-zero", sparse, False, ""))
    add(("fc/units-131071", net((4,), ("fc", 131071, ONE)), True, ""))
    add(("fc/units-131072", net((4,), ("fc", 131072, ONE)), False, ""))
    # -- fully connected processors: 18 FNP3 + 4 FNP2 -------------------------------------------------
    add(("fc/layers-22", net((16,), *_fc_chain(22)), True, ""))
    add(("fc/layers-23", net((16,), *_fc_chain(23)), False, ""))
    add(("fc/fnp2-4", net((1000,), *_big_fcs(4)), True, ""))
    add(("fc/fnp2-5", net((1000,), *_big_fcs(5)), False, ""))
    # an FNP3 holds units * (6 * ceil(inputs / 32) + 4) <= 10752 at 4 bits: 1075 units of 16 inputs
    add(("fc/fnp3-1075-then-fnp2-4", net((16,), ("fc", 1075, FOUR), *_big_fcs(4)), True, ""))
    add(("fc/fnp2-1076-then-fnp2-4", net((16,), ("fc", 1076, FOUR), *_big_fcs(4)), False, ""))
    # -- weights ----------------------------------------------------------------------------------------
    add(("weights/4bit-7", net((64,), ("fc", 16, FOUR), ("fc", 4, FOUR)), True, ""))
    add(("weights/4bit-minus8", net((64,), ("fc", 16, (-8, 7)), ("fc", 4, FOUR)), False, ""))
    add(("weights/4bit-8", net((64,), ("fc", 16, (-7, 8)), ("fc", 4, FOUR)), False, ""))
    add(("weights/2bit-and-1bit", net((64,), ("fc", 16, TWO), ("fc", 4, ONE)), True, ""))
    add(("weights/input-conv-8bit-127", net((1, 16, 16), ("conv", 8, 3, (-128, 127), 1, None), ("flatten",),
                                            ("fc", 4, FOUR)), True, ""))
    add(("weights/input-conv-minus129", net((1, 16, 16), ("conv", 8, 3, (-129, 127), 1, None), ("flatten",),
                                            ("fc", 4, FOUR)), False, ""))
    add(("weights/hidden-conv-8bit", net((4, 16, 16), ("conv", 8, 3, (-100, 100), 1, None), ("flatten",),
                                         ("fc", 4, FOUR)), False, ""))
    add(("weights/input-conv-all-zero", net((1, 16, 16), ("conv", 8, 3, (0, 0), 1, None), ("flatten",),
                                            ("fc", 4, FOUR)), False, ""))
    fine = net((64,), ("fc", 16, FOUR))
    fine.nodes["fc1"].weight[0, 0] = 2 ** 0.5            # a grid of step 1/985: integers up to 6895
    add(("weights/fine-grid-beyond-int8", fine, False, ""))
    offgrid = net((64,), ("fc", 16, FOUR))
    offgrid.nodes["fc1"].weight[:] = np.random.default_rng(7).normal(size=(16, 64))   # no integer grid
    add(("weights/off-grid", offgrid, None, ""))
    # -- kernels, strides, padding -----------------------------------------------------------------------
    for k in (1, 7):
        add((f"conv/kernel-{k}", net((4, 16, 16), ("conv", 8, k, FOUR, 1, None), ("flatten",), ("fc", 4, FOUR)), True, ""))
    add(("conv/kernel-9", net((4, 16, 16), ("conv", 8, 9, FOUR, 1, None), ("flatten",), ("fc", 4, FOUR)), False, ""))
    add(("conv/kernel-2-even", net((4, 16, 16), ("conv", 8, 2, FOUR, 1, (1, 1)), ("flatten",), ("fc", 4, FOUR)), False, ""))
    add(("conv/kernel-3x5", net((4, 16, 16), ("conv", 8, (3, 5), FOUR, 1, None), ("flatten",), ("fc", 4, FOUR)), False, ""))
    add(("conv/input-conv-kernel-1", net((3, 16, 16), ("conv", 8, 1, FOUR, 1, None), ("flatten",), ("fc", 4, FOUR)), False, ""))
    add(("conv/stride-2", net((4, 16, 16), ("conv", 8, 3, FOUR, 2, None), ("flatten",), ("fc", 4, FOUR)), True, ""))
    add(("conv/stride-3", net((4, 16, 16), ("conv", 8, 3, FOUR, 3, None), ("flatten",), ("fc", 4, FOUR)), False, ""))
    add(("conv/input-conv-stride-3", net((1, 16, 16), ("conv", 8, 3, FOUR, 3, None), ("flatten",), ("fc", 4, FOUR)), True, ""))
    add(("conv/padding-valid", net((4, 16, 16), ("conv", 8, 3, FOUR, 1, (0, 0)), ("flatten",), ("fc", 4, FOUR)), False, ""))
    add(("conv/input-conv-padding-valid", net((1, 16, 16), ("conv", 8, 3, FOUR, 1, (0, 0)), ("flatten",),
                                              ("fc", 4, FOUR)), True, ""))
    add(("conv/padding-2-at-k3", net((4, 16, 16), ("conv", 8, 3, FOUR, 1, (2, 2)), ("flatten",), ("fc", 4, FOUR)), None, ""))
    # -- channels and filters ------------------------------------------------------------------------------
    add(("conv/filters-2048", net((8, 8, 8), ("conv", 2048, 1, ONE, 1, None)), True, ""))
    add(("conv/filters-2049", net((8, 8, 8), ("conv", 2049, 1, ONE, 1, None)), False, ""))
    add(("conv/input-conv-1ch-k3-filters-512", net((1, 8, 8), ("conv", 512, 3, FOUR, 1, None)), True, ""))
    add(("conv/input-conv-1ch-k3-filters-513", net((1, 8, 8), ("conv", 513, 3, FOUR, 1, None)), False, ""))
    add(("conv/input-conv-3ch-k7-filters-32", net((3, 8, 8), ("conv", 32, 7, FOUR, 1, None)), True, ""))
    add(("conv/input-conv-3ch-k7-filters-33", net((3, 8, 8), ("conv", 33, 7, FOUR, 1, None)), False, ""))
    add(("conv/input-conv-width-256", net((1, 8, 256), ("conv", 8, 3, FOUR, 1, None)), True, ""))
    add(("conv/input-conv-width-257", net((1, 8, 257), ("conv", 8, 3, FOUR, 1, None)), False, ""))
    # -- filter memory per CNP ------------------------------------------------------------------------------
    for bits, span, k, c_ok in ((4, FOUR, 5, 448), (4, FOUR, 7, 149), (2, TWO, 7, 448), (1, ONE, 3, 896)):
        for c_in, ok in ((c_ok, True), (c_ok + 1, False)):
            add((f"memory/{bits}bit-k{k}-c{c_in}", net((c_in, 8, 8), ("conv", 8, k, span, 1, None)), ok, ""))
    # -- neural processors ------------------------------------------------------------------------------------
    add(("nps/conv-filters-78", net((100, 8, 8), ("conv", 624, 7, FOUR, 1, None)), True, ""))
    add(("nps/conv-filters-79", net((100, 8, 8), ("conv", 632, 7, FOUR, 1, None)), False, ""))
    add(("nps/conv-x-78x32", net((4, 78 * 32, 8), ("conv", 8, 3, ONE, 1, None)), True, ""))
    add(("nps/conv-x-78x32-plus-1", net((4, 78 * 32 + 1, 8), ("conv", 8, 3, ONE, 1, None)), False, ""))
    add(("nps/conv-56-fc-22", net((4, 896, 256), *_spatial(896), *_fc_chain(22)), True, ""))
    add(("nps/conv-63-fc-15", net((4, 1024, 256), *_spatial(1024), *_fc_chain(15)), True, ""))
    add(("nps/conv-63-fc-16", net((4, 1024, 256), *_spatial(1024), *_fc_chain(16)), False, ""))
    # 8 rows x 48 columns x 896 channels fill a CNP's input memory: 3744 columns take 78 CNPs
    add(("nps/conv-memory-cut-78", net((896, 8, 78 * 48), ("conv", 8, 1, ONE, 1, None)), True, ""))
    add(("nps/conv-memory-cut-79", net((896, 8, 78 * 48 + 1), ("conv", 8, 1, ONE, 1, None)), False, ""))
    # 64 rows x 30 columns x 300 channels: two 32-row chunks would not hold 30 columns, three of 22 do
    add(("nps/conv-rows-cut-78", net((300, 64, 30), ("conv", 416, 5, TWO, 1, None)), True, ""))
    add(("nps/conv-rows-cut-81", net((300, 64, 30), ("conv", 432, 5, TWO, 1, None)), False, ""))
    # -- pooling (pool -> conv graphs used to crash spikefit's verify) -------------------------------------------
    add(("pool/global-then-conv", net((4, 8, 8), ("conv", 16, 3, FOUR, 1, None), ("pool", "avg", None),
                                      ("conv", 8, 1, FOUR, 1, None)), True, ""))
    add(("pool/global-then-flatten-fc", net((4, 8, 8), ("conv", 16, 3, FOUR, 1, None), ("pool", "avg", None),
                                            ("flatten",), ("fc", 4, FOUR)), True, ""))
    add(("pool/avg-2x2-then-conv", net((4, 8, 8), ("conv", 16, 3, FOUR, 1, None), ("pool", "avg", (2, 2)),
                                       ("conv", 8, 3, FOUR, 1, None)), False, ""))
    add(("pool/sum-2x2-then-conv", net((4, 8, 8), ("conv", 16, 3, FOUR, 1, None), ("pool", "sum", (2, 2)),
                                       ("conv", 8, 3, FOUR, 1, None)), None, ""))
    add(("pool/global-x-32", net((4, 32, 8), ("conv", 8, 3, FOUR, 1, None), ("pool", "avg", None), ("flatten",),
                                 ("fc", 4, FOUR)), True, ""))
    add(("pool/global-x-33", net((4, 33, 8), ("conv", 8, 3, FOUR, 1, None), ("pool", "avg", None), ("flatten",),
                                 ("fc", 4, FOUR)), False, ""))
    add(("pool/global-out-y-2", net((4, 8, 2), ("conv", 8, 3, FOUR, 1, None), ("pool", "avg", None), ("flatten",),
                                    ("fc", 4, FOUR)), False, ""))
    add(("pool/after-input-conv", net((1, 8, 8), ("conv", 8, 3, FOUR, 1, None), ("pool", "avg", None), ("flatten",),
                                      ("fc", 4, FOUR)), False, ""))
    # -- structure and neuron model ------------------------------------------------------------------------------
    add(("structure/lif-leak", net((64,), ("noact",), ("fc", 16, FOUR), ("neurons", 0.1), ("fc", 4, FOUR)), True,
         "Akida's map checks no neuron dynamics: a leaky population becomes a stateless activation and its "
         "leak is lost; spikefit refuses the 'lif' model the chip does not run"))
    return c


def _recurrent() -> Network:
    n = net((16,), ("fc", 8, FOUR), ("fc", 4, FOUR))
    rec = Dense("rec", np.eye(8))
    n.nodes["rec"] = rec
    n.edges += [("n1", "rec"), ("rec", "n1")]
    return n


def corpus() -> list[Case]:
    cases = [Case(name=f"akida/{n}", network=nw, expect=e, known_difference=kd) for n, nw, e, kd in _cases()]
    cases.append(Case("akida/structure/recurrent", _recurrent(), None, ""))
    return cases


def random_networks(seed: int, n: int, max_side: int = 200, max_y: int = 60) -> list[Network]:
    """``n`` seeded random convolutional networks (1-2 convolutions of random channels, kernels, widths,
    strides and filters, then sometimes global pooling and a dense head) to hold spikefit's rules
    against the mapper beyond the corpus. Weight arrays stay below ~3 M values."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        c = max(2, int(rng.choice([2, 4, 8, 16, 40, 64, 100, 150, 200, 300, 448, 600, 896])) + int(rng.integers(-3, 4)))
        if rng.random() < 0.3:
            c = int(rng.choice([1, 3]))
        h, w = int(rng.integers(3, max_side)), int(rng.integers(3, max_y))
        layers, cin, hh, ww = [], c, h, w
        for _ in range(int(rng.integers(1, 3))):
            k, span = int(rng.choice([1, 3, 5, 7])), (ONE, TWO, FOUR)[int(rng.integers(0, 3))]
            f = int(rng.choice([8, 16, 64, 200, 504, 505, 1000, 2048])) + int(rng.integers(0, 8))
            s = int(rng.choice([1, 1, 2]))
            f = min(f, 2048, max(8, int(2e6 // (cin * k * k))))
            if f * hh * ww > 3e6:
                f = max(8, int(3e6 // (hh * ww)))
            layers.append(("conv", f, k, span, s, None))
            cin, hh, ww = f, -(-hh // s), -(-ww // s)
        if rng.random() < 0.5:
            layers += [("pool", "avg", None)] if rng.random() < 0.3 else []
            layers += [("flatten",), ("fc", int(rng.integers(1, 40)), (ONE, TWO, FOUR)[int(rng.integers(0, 3))])]
        try:
            out.append(net((c, h, w), *layers, seed=len(out)))
        except ValueError:                          # e.g. a stride that leaves an empty map
            continue
    return out
