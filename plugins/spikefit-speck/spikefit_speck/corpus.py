"""Networks built around every Speck 2f limit and design rule (docs/sinabs.md lists them).

Each limit appears just inside and just outside; each rule satisfied and violated. ``expect`` is what
sinabs 3.1.3 says (recorded by running :class:`~spikefit_speck.check.SinabsCheck`); ``known_difference``
marks the cases where spikefit follows the datasheet and sinabs checks nothing or rescales silently.
Weights are seeded integers, so every network is the same on every run.
"""
from __future__ import annotations

import zlib

import numpy as np

from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d

WMAX = 100                 # |weight| of the ordinary cases: int8 with room to spare
KERNEL_NOT_CHECKED = "kernel > 16 is a datasheet limit (overview.md); sinabs maps it when the memory fits"
CHANNELS_NOT_CHECKED = "channels > 1024 is a datasheet limit (overview.md); sinabs maps it when the memory fits"
DESTINATIONS_NOT_CHECKED = ("Speck sends a core's spikes to at most 2 cores (datasheet); sinabs defines "
                            "MaxDestinationsReached but never raises it and lists 3 destinations")
RESCALED = ("weights beyond int8: sinabs silently rescales them (and the threshold) to 8 bits, losing "
            "precision; spikefit refuses them")
POOL_NOT_CHECKED = ("pooling sizes are 1, 2 or 4 on Speck (sinabs ValidateMapping, overview.md); "
                    "DynapcnnNetwork and map_layers_to_cores accept 3")


class Chain:
    """Builds a feed-forward network layer by layer: conv/dense add a connection and its neurons."""

    def __init__(self, name: str, shape: tuple[int, ...], wmax: int = WMAX):
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.wmax = wmax
        self.nodes: list = [Input("in", shape)]
        self.shape = tuple(shape)
        self.n = 0

    def weights(self, shape) -> np.ndarray:
        w = self.rng.integers(1, self.wmax + 1, size=shape) * self.rng.choice([-1, 1], size=shape)
        return w.astype(np.float64)

    def _neurons(self, shape, model: str = "if", vth: float = 100.0, bias=None) -> None:
        du, dv = {"if": (1.0, 0.0), "lif": (1.0, 0.1), "cuba-lif": (0.5, 0.1)}[model]
        self.nodes.append(Neurons(f"lif{self.n}", shape, du=du, dv=dv, vth=vth, bias=bias))
        self.shape = tuple(shape)

    def conv(self, f: int, k: int | tuple[int, int], stride: int = 1, padding: int = 0, bias: bool = False,
             **neurons) -> "Chain":
        self.n += 1
        kh, kw = (k, k) if isinstance(k, int) else k
        w = self.weights((f, self.shape[0], kh, kw))
        b = self.weights((f,)) if bias else None
        conv = Conv2d(f"conv{self.n}", w, self.shape, stride=(stride, stride), padding=(padding, padding), bias=b)
        self.nodes.append(conv)
        self._neurons(conv.output_shape, **neurons)
        return self

    def dense(self, n: int, bias: bool = False, **neurons) -> "Chain":
        if len(self.shape) == 3:
            self.flatten()
        self.n += 1
        self.nodes.append(Dense(f"fc{self.n}", self.weights((n, self.shape[0])),
                                bias=self.weights((n,)) if bias else None))
        self._neurons((n,), **neurons)
        return self

    def flatten(self) -> "Chain":
        self.nodes.append(Flatten(f"flat{len(self.nodes)}", self.shape))
        self.shape = (int(np.prod(self.shape)),)
        return self

    def pool(self, k: int | tuple[int, int], kind: str = "sum", stride=None) -> "Chain":
        pool = Pool2d(f"pool{len(self.nodes)}", kind, k, self.shape, stride=stride)
        self.nodes.append(pool)
        self.shape = pool.output_shape
        return self

    def build(self) -> Network:
        return Network.sequential(*self.nodes, Output("out", self.shape))


def _case(name: str, network: Network, expect: bool | None, known_difference: str = ""):
    from spikefit.vendor import Case

    return Case(f"speck/{name}", network, expect=expect, known_difference=known_difference)


def branches(name: str, n: int) -> Network:
    """One conv layer that feeds ``n`` conv layers, each an output: ``n`` destinations of one core."""
    c = Chain(name, (1, 10, 10)).conv(4, 3)
    nodes = {n_.name: n_ for n_ in c.nodes}
    edges = [(a.name, b.name) for a, b in zip(c.nodes[:-1], c.nodes[1:])]
    src = c.nodes[-1]
    for i in range(n):
        conv = Conv2d(f"branch{i}", c.weights((4, 4, 3, 3)), src.shape)
        pop = Neurons(f"blif{i}", conv.output_shape, vth=100.0)
        out = Output(f"out{i}", pop.shape)
        nodes.update({conv.name: conv, pop.name: pop, out.name: out})
        edges += [(src.name, conv.name), (conv.name, pop.name), (pop.name, out.name)]
    return Network(nodes, edges)


def fork(name: str, pools: list[int]) -> Network:
    """One conv layer feeding one conv layer per entry of ``pools``, each through sum pooling of that size
    (1: directly), each an output."""
    c = Chain(name, (2, 18, 18)).conv(4, 3)
    src = c.nodes[-1]
    nodes = {n.name: n for n in c.nodes}
    edges = [(a.name, b.name) for a, b in zip(c.nodes[:-1], c.nodes[1:])]
    for i, p in enumerate(pools):
        prev, shape = src.name, src.shape
        if p > 1:
            pool = Pool2d(f"fpool{i}", "sum", p, shape)
            nodes[pool.name] = pool
            edges.append((prev, pool.name))
            prev, shape = pool.name, pool.output_shape
        conv = Conv2d(f"fconv{i}", c.weights((4, 4, 3, 3)), shape)
        pop = Neurons(f"flif{i}", conv.output_shape, vth=100.0)
        out = Output(f"fout{i}", pop.shape)
        nodes.update({conv.name: conv, pop.name: pop, out.name: out})
        edges += [(prev, conv.name), (conv.name, pop.name), (pop.name, out.name)]
    return Network(nodes, edges)


def two_sources(name: str) -> Network:
    """A population fed by two weight layers (two convs from the same source, summed)."""
    c = Chain(name, (1, 8, 8)).conv(2, 3)
    src = c.nodes[-1]
    a = Conv2d("conv_a", c.weights((2, 2, 3, 3)), src.shape)
    b = Conv2d("conv_b", c.weights((2, 2, 3, 3)), src.shape)
    pop = Neurons("merged", a.output_shape, vth=100.0)
    nodes = {x.name: x for x in [*c.nodes, a, b, pop, Output("out", pop.shape)]}
    edges = [(x.name, y.name) for x, y in zip(c.nodes[:-1], c.nodes[1:])]
    edges += [(src.name, "conv_a"), (src.name, "conv_b"), ("conv_a", "merged"), ("conv_b", "merged"),
              ("merged", "out")]
    return Network(nodes, edges)


def big_neurons(c: Chain, n: int) -> Chain:
    """``n`` k=1 conv layers of 9 x 33 x 33 neurons: 9 * 64 * 64 = 36,864 neuron entries, which only the
    64 Ki cores 0-2 hold."""
    for _ in range(n):
        c.conv(9, 1)
    return c


def corpus() -> list:
    cases = []

    def add(name, net, expect, known=""):
        cases.append(_case(name, net, expect, known))

    # neuron memory: f * 2^ceil(log2 h) * 2^ceil(log2 w) against 64, 64, 64, 32, 32, 16, 16, 16, 16 Ki
    add("neuron-memory-16x64x64-at-64Ki", Chain("n1", (1, 64, 64)).conv(16, 1).build(), True)
    add("neuron-memory-17x64x64-over-64Ki", Chain("n2", (1, 64, 64)).conv(17, 1).build(), False)
    add("neuron-memory-60x33x33-rounds-to-240Ki", Chain("n3", (1, 33, 33)).conv(60, 1).build(), False)
    add("neuron-memory-15x33x33-rounds-to-60Ki", Chain("n4", (1, 33, 33)).conv(15, 1).build(), True)
    add("neuron-memory-8x64x128-at-64Ki", Chain("n5", (1, 64, 128)).conv(8, 1).build(), True)
    add("neuron-memory-dense-70000-neurons", Chain("n6", (1,)).dense(70000).build(), False)
    # kernel memory: c * 2^ceil(log2 k^2) * 2^ceil(log2 f) against 16, 16, 16, 32, 32, 64, 64, 16, 16 Ki
    add("kernel-memory-64ch-k3-f64-at-64Ki", Chain("k1", (64, 6, 6)).conv(64, 3, padding=1).build(), True)
    add("kernel-memory-65ch-k3-f64-over-64Ki", Chain("k2", (65, 6, 6)).conv(64, 3, padding=1).build(), False)
    add("kernel-memory-32ch-k5-f64-at-64Ki", Chain("k3", (32, 6, 6)).conv(64, 5, padding=2).build(), True)
    add("kernel-memory-33ch-k5-f64-over-64Ki", Chain("k4", (33, 6, 6)).conv(64, 5, padding=2).build(), False)
    add("kernel-memory-64ch-k3-f33-rounds-to-64", Chain("k5", (64, 6, 6)).conv(33, 3, padding=1).build(), True)
    add("kernel-memory-dense-8192-to-10", Chain("k6", (32, 16, 16)).dense(10).build(), False)
    add("kernel-memory-dense-4096-to-10", Chain("k7", (16, 16, 16)).dense(10).build(), True)
    add("kernel-memory-dense-reads-640x5x5-map-unflattened", _unflattened("k10", (640, 5, 5), 4), False)
    add("kernel-memory-dense-reads-640x5x5-map-flattened", Chain("k11", (640, 5, 5)).dense(4).build(), False)
    add("kernel-memory-dense-reads-640x5x5-map-to-2", _unflattened("k12", (640, 5, 5), 2), True)
    add("kernel-memory-dense-vector-1024-to-64", Chain("k8", (1024,)).dense(64).build(), True)
    add("kernel-memory-dense-vector-1024-to-65", Chain("k9", (1024,)).dense(65).build(), False)
    # bias memory: one entry per output channel, 1024 per core
    add("bias-memory-1024-channels", Chain("b1", (4,)).dense(1024, bias=True).build(), True)
    add("bias-memory-1025-channels", Chain("b2", (4,)).dense(1025, bias=True).build(), False)
    add("bias-per-channel-on-neurons", _channel_bias("b3"), True)
    # one layer per core, matched to cores of unequal memory
    add("match-three-layers-need-64Ki-neurons", big_neurons(Chain("m1", (1, 33, 33)), 3).build(), True)
    add("match-four-layers-need-64Ki-neurons", big_neurons(Chain("m2", (1, 33, 33)), 4).build(), False)
    add("match-small-layer-first-then-three-big",
        big_neurons(Chain("m3", (1, 33, 33)).conv(1, 1), 3).build(), True)
    add("match-two-layers-need-64Ki-kernels",
        Chain("m4", (64, 4, 4)).conv(64, 3, padding=1).conv(64, 3, padding=1).build(), True)
    add("match-three-layers-need-64Ki-kernels",
        Chain("m5", (64, 4, 4)).conv(64, 3, padding=1).conv(64, 3, padding=1).conv(64, 3, padding=1).build(), False)
    add("match-eight-layers-fill-the-large-cores", _mixed("m6", extra=False), True)
    add("match-nine-layers-no-core-for-the-last", _mixed("m7", extra=True), False)
    add("cores-nine-small-layers", _small_layers("c1", 9), True)
    add("cores-ten-small-layers", _small_layers("c2", 10), False)
    # square kernels
    add("kernel-square-3x3", Chain("s1", (2, 8, 8)).conv(4, 3).build(), True)
    add("kernel-non-square-3x5", Chain("s2", (2, 8, 8)).conv(4, (3, 5)).build(), False)
    add("dense-after-square-flatten-8x4x4", Chain("s3", (8, 4, 4)).dense(10).build(), True)
    add("dense-after-non-square-flatten-8x4x8", Chain("s4", (8, 4, 8)).dense(10).build(), False)
    # kernel size and channel count: datasheet limits that sinabs does not check
    add("kernel-16x16", Chain("z1", (1, 16, 16)).conv(4, 16).build(), True)
    add("kernel-17x17", Chain("z2", (1, 17, 17)).conv(4, 17).build(), True, KERNEL_NOT_CHECKED)
    add("dense-after-flatten-17x17", Chain("z3", (1, 17, 17)).dense(10).build(), True, KERNEL_NOT_CHECKED)
    add("channels-1024-outputs", Chain("h1", (1, 4, 4)).conv(1024, 1).build(), True)
    add("channels-1025-outputs", Chain("h2", (1, 4, 4)).conv(1025, 1).build(), True, CHANNELS_NOT_CHECKED)
    add("channels-1025-inputs", Chain("h3", (1025, 2, 2)).conv(1, 1).build(), True, CHANNELS_NOT_CHECKED)
    add("channels-dense-vector-1025-inputs", Chain("h4", (1025,)).dense(8).build(), True, CHANNELS_NOT_CHECKED)
    # destinations per core
    add("destinations-2", branches("d1", 2), True)
    add("destinations-3", branches("d2", 3), True, DESTINATIONS_NOT_CHECKED)
    add("destinations-2-and-an-output", _with_output(branches("d5", 2), "lif1"), True)
    add("destinations-2-pooled-2-and-4", fork("d3", [2, 4]), True)
    add("destinations-2-one-pooled-one-direct", fork("d4", [2, 1]), True)
    # weights: int8
    add("weights-int8-full-range", _int8("w1", lo=-128, hi=127), True)
    add("weights-beyond-int8", _int8("w2", lo=-200, hi=200), True, RESCALED)
    add("weights-half-steps-in-int8", _int8("w3", lo=-128, hi=127, step=0.5), True)
    # neuron model: integrate-and-fire only
    add("neurons-if-with-bias", Chain("i1", (2, 8, 8)).conv(4, 3, bias=True).dense(10, bias=True).build(), True)
    add("neurons-lif", Chain("i2", (2, 8, 8)).conv(4, 3, model="lif").build(), False)
    add("neurons-cuba-lif", Chain("i3", (2, 8, 8)).conv(4, 3).dense(10, model="cuba-lif").build(), False)
    # pooling (pool -> conv used to crash spikefit's verify)
    add("pool-sum2-then-conv", Chain("p1", (2, 16, 16)).conv(4, 3).pool(2).conv(8, 3).build(), True)
    add("pool-avg2-then-conv", Chain("p2", (2, 16, 16)).conv(4, 3).pool(2, "avg").conv(8, 3).build(), True)
    add("pool-sum4-then-dense", Chain("p3", (2, 16, 16)).conv(4, 1).pool(4).dense(10).build(), True)
    add("pool-sum2-sum2-then-conv", Chain("p4", (2, 16, 16)).conv(4, 1).pool(2).pool(2).conv(8, 3).build(), True)
    add("pool-lenet", Chain("p5", (1, 28, 28)).conv(6, 5).pool(2).conv(16, 5).pool(2).dense(10).build(), True)
    add("pool-non-square-2x1", Chain("p6", (2, 16, 16)).conv(4, 3).pool((2, 1)).conv(8, 3).build(), False)
    add("pool-stride-differs-from-size", Chain("p7", (2, 16, 16)).conv(4, 3).pool(2, stride=1).conv(8, 3).build(),
        False)
    add("pool-of-the-input-then-conv", Chain("p10", (2, 16, 16)).pool(2).conv(4, 3).build(), False)
    add("pool-size-3", Chain("p8", (2, 18, 18)).conv(4, 3).pool(3).conv(8, 3).build(), True, POOL_NOT_CHECKED)
    add("pool-sum4-sum2-acts-as-8", Chain("p9", (2, 34, 34)).conv(4, 3).pool(4).pool(2).conv(8, 3).build(), True,
        POOL_NOT_CHECKED)
    # structure: one weight layer per core
    add("two-weight-layers-into-one-population", two_sources("t1"), False)
    return cases


def _channel_bias(name: str) -> Network:
    """Conv neurons whose bias is constant within each channel (one bias per channel on Speck)."""
    c = Chain(name, (2, 8, 8)).conv(3, 3)
    pop = c.nodes[-1]
    pop.bias = np.repeat([5.0, -3.0, 1.0], int(np.prod(pop.shape[1:])))
    return c.build()


def _mixed(name: str, extra: bool) -> Network:
    """Three layers only cores 0-2 hold (neurons), a small one, two only cores 5-6 hold (kernels) and two
    for cores 3-6 (32 Ki kernels); ``extra`` adds a third 32 Ki-kernel layer, for which no core is left."""
    c = big_neurons(Chain(name, (1, 33, 33)), 3).pool(4)     # (9, 8, 8)
    c.conv(64, 1)                                             # small: 9 * 64 = 576 kernel entries
    c.conv(64, 3, padding=1).conv(64, 3, padding=1)           # 64 * 16 * 64 = 64 Ki kernels: cores 5, 6
    c.conv(32, 3, padding=1).conv(64, 3, padding=1)           # 64*16*32 and 32*16*64 = 32 Ki: cores 3-6
    if extra:
        c.conv(32, 3, padding=1)
    return c.build()


def _unflattened(name: str, shape: tuple[int, int, int], n: int) -> Network:
    """A Dense layer reading a (c, h, w) input without a Flatten node: sinabs still sees a c-channel map
    and an h x w kernel (640 x 32 x 4 = 81,920 kernel entries for (640, 5, 5) -> 4, not 640 x 25 x 4)."""
    c = Chain(name, shape)
    c.n = 1
    c.nodes.append(Dense("fc1", c.weights((n, int(np.prod(shape))))))
    c._neurons((n,))
    return c.build()


def _with_output(net: Network, pop: str) -> Network:
    """``net`` with ``pop`` also read out: an exit, not a destination core."""
    net.nodes[f"{pop}_out"] = Output(f"{pop}_out", net.nodes[pop].shape)
    net.edges.append((pop, f"{pop}_out"))
    return net


def _small_layers(name: str, n: int) -> Network:
    c = Chain(name, (2, 6, 6))
    for _ in range(n):
        c.conv(2, 1)
    return c.build()


def _int8(name: str, lo: int, hi: int, step: float = 1.0) -> Network:
    """A conv -> dense network whose conv weights span ``lo..hi`` integer steps of ``step``."""
    c = Chain(name, (2, 8, 8)).conv(4, 3).dense(10)
    conv = c.nodes[1]
    w = c.rng.integers(lo, hi + 1, size=conv.weight.shape).astype(np.float64)
    w.flat[0], w.flat[1] = lo, hi
    conv.weight = w * step
    return c.build()
