"""Speck 2f's rules that the TOML schema cannot say: spikefit's own reading of sinabs 3.1.3 and of the
datasheet (docs/sinabs.md lists the sources). No vendor package is imported here; the vendor-agreement
benchmark holds these rules against sinabs itself.

Each neuron population is one layer on one core: its single weight layer (Conv2d, or Dense run as a
conv whose kernel covers its whole input), its neurons and the pooling on its way out. A layer is
never split across cores and a core holds one layer.

Memory (sinabs ``DynapcnnLayer.memory_summary`` and ``get_constraints``): a layer with ``c`` input
channels, a ``kh x kw`` kernel, ``f`` output channels and an ``f x h x w`` neuron map needs

    kernel = c * 2^ceil(log2(kh * kw)) * 2^ceil(log2 f)      entries of its core's kernel memory
    neuron = f * 2^ceil(log2 h) * 2^ceil(log2 w)             entries of its core's neuron memory
    bias   = f when the layer has a bias, else 0              entries of its core's bias memory

and the cores hold 16, 16, 16, 32, 32, 64, 64, 16, 16 Ki kernel entries, 64, 64, 64, 32, 32, 16, 16,
16, 16 Ki neuron entries and 1024 bias entries (``[rules.speck]`` in speck2f.toml).

Placement (rule ``speck.core_memory``): a layer may go to every core whose three memories hold it; the
network fits when every layer gets a core of its own: a bipartite matching. :func:`match_layers` finds
a maximum matching as sinabs's ``mapping.get_valid_mapping`` does (Edmonds-Karp: breadth-first
augmenting paths in the flow network source -> layers -> cores -> sink, layers in topological order,
cores in index order), so it returns sinabs's own core for every layer. When no matching covers every
layer, :func:`competing` names the layers that compete for too few cores (the alternating-path set of
Hall's theorem).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikefit.errors import SpecError
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Pool2d
from spikefit.rules import Rule, RuleSet

KI = 1024
KERNEL_MEMORY = (16 * KI, 16 * KI, 16 * KI, 32 * KI, 32 * KI, 64 * KI, 64 * KI, 16 * KI, 16 * KI)
NEURON_MEMORY = (64 * KI, 64 * KI, 64 * KI, 32 * KI, 32 * KI, 16 * KI, 16 * KI, 16 * KI, 16 * KI)
BIAS_MEMORY = (KI,) * 9
POOL_SIZES = (1, 2, 4)


def _pow2(n: int) -> int:
    """2^ceil(log2 n) for n >= 1."""
    return 1 << max(int(n) - 1, 0).bit_length()


@dataclass(frozen=True)
class CoreLayer:
    """One population as a Speck core holds it."""

    population: str
    connection: str                       # its weight layer (the first, when there are several)
    in_shape: tuple[int, int, int]        # (c, h, w) the weight layer reads, pooling applied
    kernel: tuple[int, int]               # (kh, kw); a Dense layer's kernel is its whole (h, w) input
    neurons: tuple[int, int, int]         # (f, h, w) neuron map
    bias: bool                            # the layer adds a bias (connection or population)

    @property
    def memory(self) -> dict[str, int]:
        c, (kh, kw), (f, h, w) = self.in_shape[0], self.kernel, self.neurons
        return {"kernel": c * _pow2(kh * kw) * _pow2(f),
                "neuron": f * _pow2(h) * _pow2(w),
                "bias": f if self.bias else 0}


def incoming(net: Network, pop: Neurons) -> list[Dense | Conv2d]:
    return [net.nodes[p] for p in net.predecessors(pop.name) if isinstance(net.nodes[p], (Dense, Conv2d))]


def dense_input(net: Network, dense: Dense) -> tuple[int, int, int]:
    """The (c, h, w) a Dense layer reads as sinabs sees it: the map that is flattened into it (what
    enters its Flatten, or the 3-D output of the node before it), else a vector as (n, 1, 1)."""
    preds = net.predecessors(dense.name)
    if len(preds) == 1:
        prev = net.nodes[preds[0]]
        shape = tuple(int(s) for s in (prev.input_shape if isinstance(prev, Flatten) else prev.output_shape))
        if len(shape) == 3:
            return shape
    return (int(dense.weight.shape[1]), 1, 1)


def core_layers(net: Network) -> list[CoreLayer]:
    """Every population fed by a weight layer, in topological order (sinabs's layer order)."""
    out = []
    for name in net.topological_order():
        pop = net.nodes[name]
        if not isinstance(pop, Neurons):
            continue
        conns = incoming(net, pop)
        if not conns:
            continue
        conn = conns[0]
        bias = conn.bias is not None or bool(np.any(pop.bias))
        if isinstance(conn, Conv2d):
            c_out, c_in, kh, kw = conn.weight.shape
            layer = CoreLayer(name, conn.name, tuple(int(s) for s in conn.input_shape), (int(kh), int(kw)),
                              tuple(int(s) for s in conn.output_shape), bias)
        else:
            c, h, w = dense_input(net, conn)
            layer = CoreLayer(name, conn.name, (c, h, w), (h, w), (int(conn.weight.shape[0]), 1, 1), bias)
        out.append(layer)
    return out


def fitting_cores(layer: CoreLayer, kernel: list[int], neuron: list[int], bias: list[int]) -> list[int]:
    """Cores whose kernel, neuron and bias memories all hold ``layer``, in index order."""
    m = layer.memory
    return [i for i, (km, nm, bm) in enumerate(zip(kernel, neuron, bias))
            if m["kernel"] <= km and m["neuron"] <= nm and m["bias"] <= bm]


def match_layers(options: list[list[int]], n_cores: int) -> list[int | None]:
    """A maximum matching of layers to cores (``options[i]``: the cores layer i fits), computed as sinabs's
    ``get_valid_mapping`` computes it, so a full matching assigns the same core to every layer.

    The flow network has a source, one node per layer, one per core and a sink, every edge of capacity 1;
    edges are listed in sinabs's order. Each round a breadth-first search from the source (following
    edges with spare capacity, including the reverse edges of matched pairs) finds the shortest
    augmenting path and pushes one unit along it, until none is left. Returns the core of each layer,
    None for a layer left without one.
    """
    n = len(options)
    sink = n + n_cores + 1
    adj: list[list[list[int]]] = [[] for _ in range(sink + 1)]   # edge: [to, capacity, flow, index of reverse]

    def edge(a: int, b: int) -> None:
        adj[a].append([b, 1, 0, len(adj[b])])
        adj[b].append([a, 0, 0, len(adj[a]) - 1])

    for i in range(n):
        edge(0, i + 1)
    for i, cores in enumerate(options):
        for c in cores:
            edge(i + 1, n + 1 + c)
    for c in range(n_cores):
        edge(n + 1 + c, sink)
    while True:
        pred: list[tuple[int, int] | None] = [None] * (sink + 1)   # (node, edge index) that reached it
        queue, head = [0], 0
        while head < len(queue):
            cur = queue[head]
            head += 1
            for k, (to, cap, flow, _) in enumerate(adj[cur]):
                if pred[to] is None and to != 0 and cap > flow:
                    pred[to] = (cur, k)
                    queue.append(to)
        if pred[sink] is None:
            break
        node = sink
        while node != 0:
            prev, k = pred[node]
            e = adj[prev][k]
            e[2] += 1
            adj[node][e[3]][2] -= 1
            node = prev
    cores: list[int | None] = []
    for i in range(n):
        hit = [to - n - 1 for to, _, flow, _ in adj[i + 1] if flow == 1 and to > n]
        cores.append(hit[0] if hit else None)
    return cores


def competing(options: list[list[int]], cores: list[int | None], layer: int) -> tuple[list[int], list[int]]:
    """For an unplaced ``layer``: the layers reachable from it by alternating paths and the cores they may
    use. Every such core is taken by one of those layers, so they are more layers than cores (Hall)."""
    owner = {c: i for i, c in enumerate(cores) if c is not None}
    layers, seen, todo = {layer}, set(), [layer]
    while todo:
        for c in options[todo.pop()]:
            if c not in seen:
                seen.add(c)
                j = owner.get(c)
                if j is not None and j not in layers:
                    layers.add(j)
                    todo.append(j)
    return sorted(layers), sorted(seen)


# -- rules ------------------------------------------------------------------------------------------

def _ki(n: int) -> str:
    return f"{n:,}"


def _sizes(view, key: str, n: int | None = None) -> list[int]:
    """``[rules.speck] key`` as a list of positive integers (``n`` of them); SpecError naming the key otherwise."""
    value = list(view.params[key])
    where = f"{view.spec.path or view.spec.name}: rules.speck.{key}"
    if not value or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value):
        raise SpecError(f"{where} must list positive integers; got {value!r}")
    if n is not None and len(value) != n:
        raise SpecError(f"{where} has {len(value)} entries but kernel_memory has {n}; give one entry per core")
    return value


def core_memory(view):
    """One layer per core, every layer in a core whose kernel, neuron and bias memory hold it."""
    kernel = _sizes(view, "kernel_memory")
    neuron, bias = _sizes(view, "neuron_memory", len(kernel)), _sizes(view, "bias_memory", len(kernel))
    layers = core_layers(view.network)
    n_cores = len(kernel)
    if not layers:
        return view.row(0, n_cores, True)
    options = [fitting_cores(layer, kernel, neuron, bias) for layer in layers]
    for layer, opts in zip(layers, options):
        if not opts:
            usage, limit = _too_big(layer, kernel, neuron, bias)
            return view.row(usage, limit, False, f"layer {layer.population}", _no_core(layer, kernel, neuron, bias))
    if len(layers) > n_cores:
        return view.row(len(layers), n_cores, False, "",
                        f"the network has {len(layers)} layers and each needs a core of its own; "
                        f"use at most {n_cores} layers")
    cores = match_layers(options, n_cores)
    placed = ", ".join(f"{layer.population}->{c}" for layer, c in zip(layers, cores))
    if all(c is not None for c in cores):
        return view.row(len(layers), n_cores, True, "", f"layer -> core: {placed}")
    first = cores.index(None)
    group, wanted = competing(options, cores, first)
    names = ", ".join(layers[i].population for i in group)
    return view.row(len(group), len(wanted), False, f"layer {layers[first].population}",
                    f"layers {names} fit only cores {', '.join(map(str, wanted))}: {len(group)} layers for "
                    f"{len(wanted)} cores; shrink one of them (fewer channels, a smaller map or kernel)")


def _too_big(layer: CoreLayer, kernel: list[int], neuron: list[int], bias: list[int]) -> tuple:
    """(usage, limit) of a layer that fits no core: the first memory it overflows everywhere."""
    m = layer.memory
    for key, sizes in (("neuron", neuron), ("kernel", kernel), ("bias", bias)):
        if m[key] > max(sizes):
            return m[key], max(sizes)
    return f"kernel {m['kernel']}, neuron {m['neuron']}, bias {m['bias']}", "no core holds all three"


def _no_core(layer: CoreLayer, kernel: list[int], neuron: list[int], bias: list[int]) -> str:
    m = layer.memory
    (c, _, _), (kh, kw), (f, h, w) = layer.in_shape, layer.kernel, layer.neurons
    over = []
    if m["neuron"] > max(neuron):
        over.append(f"{_ki(m['neuron'])} neuron entries ({f} x {_pow2(h)} x {_pow2(w)}: channels x map rounded up "
                    f"to powers of two; largest core {_ki(max(neuron))})")
    if m["kernel"] > max(kernel):
        over.append(f"{_ki(m['kernel'])} kernel entries ({c} x {_pow2(kh * kw)} x {_pow2(f)}: input channels x "
                    f"kernel area and output channels rounded up to powers of two; largest core {_ki(max(kernel))})")
    if m["bias"] > max(bias):
        over.append(f"{_ki(m['bias'])} bias entries (one per output channel; largest core {_ki(max(bias))})")
    if not over:
        over.append(f"{_ki(m['kernel'])} kernel, {_ki(m['neuron'])} neuron and {_ki(m['bias'])} bias entries, "
                    f"which no single core holds together")
    return f"layer {layer.population} needs {'; '.join(over)}; use fewer channels, a smaller map or kernel"


def one_weight_layer(view):
    """A core has one weight layer: every population is fed by exactly one Dense or Conv2d."""
    net = view.network
    for pop in net.populations():
        conns = incoming(net, pop)
        if len(conns) != 1:
            return view.row(len(conns), 1, False, f"layer {pop.name}",
                            f"population {pop.name} is fed by {len(conns)} weight layers "
                            f"({', '.join(c.name for c in conns) or 'none'}); feed each population from one layer")
    return view.row(1 if net.populations() else 0, 1, True)


def square_kernels(view):
    """Kernels are square (sinabs DynapcnnLayer); a Dense layer's kernel is its whole input map."""
    for layer in core_layers(view.network):
        kh, kw = layer.kernel
        if kh != kw:
            if isinstance(view.network.nodes[layer.connection], Dense):
                why = (f"dense layer {layer.connection} reads a {kh}x{kw} map, so its kernel on Speck is {kh}x{kw}; "
                       f"make the map it flattens square")
            else:
                why = f"layer {layer.connection} has a {kh}x{kw} kernel; use a square kernel"
            return view.row(f"{kh}x{kw}", "square", False, f"layer {layer.connection}", why)
    return view.row("square", "square", True)


def pooling(view):
    """A core pools its own neurons' output (not the network input) in square windows whose stride equals
    their size, without padding; consecutive pools act as one pooling of their product (as sinabs
    consolidates them), of a size the chip pools."""
    net = view.network
    sizes = sorted(_sizes(view, "pool_sizes"))
    limit = f"square, stride = size, sizes {', '.join(map(str, sizes))}"
    total: dict[str, int] = {}          # pool -> product of the sizes of the pools chained before it
    for name in net.topological_order():
        node = net.nodes[name]
        if not isinstance(node, Pool2d):
            continue
        (kh, kw), (sh, sw) = node.kernel, node.stride
        preds = net.predecessors(name)
        before = total.get(preds[0], 1) if len(preds) == 1 else 1
        total[name] = before * kh
        why = ""
        if before == 1 and len(preds) == 1 and isinstance(net.nodes[preds[0]], Input):
            why = ("it pools the network input; a Speck core pools its own neurons' output (pooling the input "
                   "needs the DVS layer, which takes the sensor's events)")
        elif kh != kw:
            why = f"its {kh}x{kw} window is not square"
        elif (sh, sw) != (kh, kw):
            why = f"its stride {sh}x{sw} differs from its size {kh}x{kw}"
        elif any(node.padding):
            why = f"it pads by {tuple(node.padding)}"
        elif not any(isinstance(net.nodes[s], Pool2d) for s in net.successors(name)) and total[name] not in sizes:
            why = (f"size {total[name]}" + (f" (pools chained up to it: {before} x {kh})" if before > 1 else "")
                   + f" is not one of {', '.join(map(str, sizes))}")
        if why:
            usage = (f"{total[name]}x{total[name]} (chained)" if before > 1 and why.startswith("size")
                     else f"{kh}x{kw} stride {sh}x{sw}")
            return view.row(usage, limit, False, f"layer {name}",
                            f"pooling {name}: {why}; use square pooling of size "
                            f"{' or '.join(map(str, sizes))} with stride equal to size")
    return view.row("ok", limit, True)


def dense_as_conv(view):
    """A Dense layer runs as a conv: its input map's side is the kernel size, its inputs and outputs are
    channels, within layers.max_kernel and layers.max_channels."""
    spec_layers = view.spec.layers
    max_k, max_c = spec_layers.max_kernel, spec_layers.max_channels
    worst = (0, "")
    for layer in core_layers(view.network):
        if not isinstance(view.network.nodes[layer.connection], Dense):
            continue
        k, c, f = max(layer.kernel), layer.in_shape[0], layer.neurons[0]
        if max_k is not None and k > max_k:
            return view.row(k, max_k, False,
                            f"layer {layer.connection}",
                            f"dense layer {layer.connection} reads a {k}x{k} map, a {k}x{k} kernel on Speck "
                            f"(at most {max_k}); pool its input first")
        for what, n in (("input", c), ("output", f)):
            if max_c is not None and n > max_c:
                return view.row(n, max_c, False,
                                f"layer {layer.connection}",
                                f"dense layer {layer.connection} has {n} {what} channels on Speck (at most {max_c}); "
                                f"use fewer, or keep a map and use a conv")
        worst = max(worst, (max(c, f), layer.connection))
    return view.row(worst[0], max_c, True, f"layer {worst[1]}" if worst[1] else "")


def bias_per_channel(view):
    """A core holds one bias per output channel: a population's bias is constant within each channel."""
    for pop in view.network.populations():
        if len(pop.shape) == 3 and np.any(pop.bias):
            b = pop.bias.reshape(pop.shape[0], -1)
            bad = np.flatnonzero(np.any(b != b[:, :1], axis=1))
            if bad.size:
                return view.row("per neuron", "per channel", False, f"layer {pop.name}",
                                f"population {pop.name} has different biases within channel {int(bad[0])}; "
                                f"Speck holds one bias per channel, use one value per channel")
    return view.row("per channel", "per channel", True)


RULES = RuleSet(
    name="speck",
    targets=("speck2f",),
    rules=(
        Rule("speck.one_weight_layer", one_weight_layer, "one Dense or Conv2d feeds each population (one per core)"),
        Rule("speck.square_kernels", square_kernels, "square kernels only (sinabs DynapcnnLayer)"),
        Rule("speck.pooling", pooling,
             "a core pools its own output: square, stride = size, no padding, sizes 1/2/4 (sinabs, overview.md)"),
        Rule("speck.dense_as_conv", dense_as_conv, "Dense runs as a conv: kernel = input map, channels <= 1024"),
        Rule("speck.bias_per_channel", bias_per_channel, "one bias per output channel (chips/dynapcnn.py)"),
        Rule("speck.core_memory", core_memory,
             "one layer per core within its kernel/neuron/bias memory (sinabs memory_summary, get_constraints)"),
    ),
    params={
        "kernel_memory": (tuple, KERNEL_MEMORY),     # entries per core, cores 0-8
        "neuron_memory": (tuple, NEURON_MEMORY),
        "bias_memory": (tuple, BIAS_MEMORY),
        "pool_sizes": (tuple, POOL_SIZES),
    },
)
