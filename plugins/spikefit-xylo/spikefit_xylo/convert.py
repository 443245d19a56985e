"""A spikefit Network as Rockpool's Xylo graph (the graph ``Module.as_graph()`` would give the mapper).

Xylo's network is input weights -> hidden neurons (with recurrent weights) -> output weights -> output
neurons. Each spikefit population becomes a ``LIFNeuronWithSynsRealValue`` (one synapse per neuron),
each Dense a ``LinearWeights`` between the nodes it connects, each Input its channels' graph input
nodes and each Output the graph output nodes of what feeds it. The graph keeps the network's shape as
it is (a deeper chain, a recurrent layer, a skip connection, two consecutive weight layers), so the
mapper's design rules judge the network itself; the mapper then folds every hidden population into
the one recurrent pool.

The numbers come from :func:`spikefit.targets.xylo_audio2.read`, the reading spikefit's own rules use:
weights ``w / unit`` as integers, right-shifted by their matrix's ``weight_shift``; thresholds
``floor(vth / unit) + 1``; biases ``round(bias / unit)``; decays as ``tau = dt * 2**dash``. What the graph
cannot hold (convolution, pooling, weights off the integer grid, a layer feeding several nodes) is
refused with an :class:`~spikefit.errors.ExportError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikefit.errors import ExportError
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Pool2d
from spikefit.targets.xylo_audio2 import MATRICES, Reading, dash, read, smallest_shift, sources, targets

# XyloSim takes any int8_t shift; beyond 8 even a weight of 1 leaves the 16-bit state, so the search for
# the shift the vendor is shown stops there (spikefit's own rule stops at the 3-bit register field, 7).
VENDOR_SHIFT_LIMIT = 8


@dataclass
class Converted:
    """The rockpool graph and what the mapper does not take from it."""

    graph: object                                   # rockpool.graph.GraphHolder
    shifts: dict[str, int] = field(default_factory=dict)   # matrix -> weight_shift shown to the vendor
    reading: Reading | None = None
    n_inputs: int = 0


def _refuse_unsupported(net: Network) -> None:
    for node in net.nodes.values():
        if isinstance(node, (Conv2d, Pool2d)):
            raise ExportError(f"layer {node.name!r} ({node.kind}): Rockpool's Xylo graph has no convolution or "
                              f"pooling (Xylo Audio 2 runs dense weights between LIF neurons); use Dense layers")
    for conn in net.connections():
        if len(net.predecessors(conn.name)) != 1 or len(net.successors(conn.name)) != 1:
            raise ExportError(f"weight layer {conn.name!r} has {len(net.predecessors(conn.name))} sources and "
                              f"{len(net.successors(conn.name))} targets; a Xylo weight layer connects one node to one")


def _integers(conn: Dense, r: Reading) -> np.ndarray:
    """The layer's integers (n_out, n_in): the reading's, or ``w / step`` for a layer feeding no population."""
    if conn.name in r.ints:
        return r.ints[conn.name]
    if conn.name in r.off_grid:
        raise ExportError(f"weights of layer {conn.name!r} are not whole multiples of {r.off_grid[conn.name]:g} "
                          f"(the unit of the population they feed); quantize them before the Xylo check")
    step = conn.quant.scale if conn.quant is not None else 1.0
    x = conn.dense_weight() / step
    if not np.allclose(x, np.rint(x), rtol=0, atol=1e-6):
        raise ExportError(f"weights of layer {conn.name!r} are not whole multiples of {step:g}; quantize them")
    return np.rint(x).astype(np.int64)


def vendor_shifts(r: Reading, weight_bits: int = 8) -> dict[str, int]:
    """Per matrix the shift shown to the vendor: the smallest that fits, else 0 (the vendor then sees
    integers beyond int8 and rejects them itself)."""
    out = {}
    for m in MATRICES:
        s = smallest_shift(r.matrix_values(m), weight_bits, VENDOR_SHIFT_LIMIT)
        out[m] = 0 if s is None else s
    return out


def to_rockpool(net: Network, rp=None) -> Converted:
    """Build Rockpool's graph of ``net``; ``rp`` is :func:`spikefit_xylo.vendor_import.load`'s namespace."""
    if rp is None:
        from .vendor_import import load

        rp = load()
    _refuse_unsupported(net)
    r = read(net)
    shifts = vendor_shifts(r)
    matrix_of = {k.conn.name: k.matrix for k in r.links}
    emitted: dict[str, list] = {}        # node name -> the graph nodes carrying its spikes / currents
    pops: dict[str, object] = {}
    graph_inputs: list = []

    def make_population(pop: Neurons, input_nodes: list | None):
        unit = r.unit[pop.name]
        n = pop.size
        ins = input_nodes if input_nodes is not None else [rp.GraphNode() for _ in range(n)]
        if len(ins) != n:
            raise ExportError(f"population {pop.name!r} has {n} neurons but receives {len(ins)} channels directly; "
                              f"fix the shapes")
        mod = rp.LIFNeuronWithSynsRealValue(
            input_nodes=ins, output_nodes=[rp.GraphNode() for _ in range(n)], name=pop.name,
            computational_module=None,
            tau_mem=[net.dt * 2.0 ** dash(pop.dv)] * n, tau_syn=[net.dt * 2.0 ** dash(pop.du)] * n,
            threshold=[r.threshold(pop)] * n, bias=[int(b) for b in np.rint(pop.bias / unit)], dt=net.dt)
        pops[pop.name] = mod
        emitted[pop.name] = list(mod.output_nodes)
        return mod

    def fed_by_weights(pop: Neurons) -> bool:
        return all(isinstance(s, Dense) for s in sources(net, pop.name))

    for pop in net.populations():                     # populations first: recurrent weights end at them
        if fed_by_weights(pop):
            make_population(pop, None)
    for name in net.topological_order():
        node = net.nodes[name]
        if isinstance(node, Input):
            emitted[name] = [rp.GraphNode() for _ in range(node.size)]
            graph_inputs += emitted[name]
        elif isinstance(node, Flatten):
            src = net.predecessors(name)
            if len(src) != 1 or src[0] not in emitted:
                raise ExportError(f"flatten {name!r} must have one source that comes before it")
            emitted[name] = emitted[src[0]]
        elif isinstance(node, Neurons) and name not in pops:
            src = net.predecessors(name)
            feed = [n for s in src if s in emitted for n in emitted[s]]
            make_population(node, feed if len(src) == 1 else None)
        elif isinstance(node, Dense):
            src = net.predecessors(name)[0]
            if src not in emitted:
                raise ExportError(f"weight layer {name!r} reads {src!r}, which is neither an input, neurons nor "
                                  f"a layer before it")
            ints = _integers(node, r)
            m = matrix_of.get(name)
            if m is not None and shifts[m] and np.all(ints % (1 << shifts[m]) == 0):
                ints = ints >> shifts[m]
            dst = targets(net, name)
            outs = (pops[dst[0].name].input_nodes if len(dst) == 1 and dst[0].name in pops
                    else [rp.GraphNode() for _ in range(ints.shape[0])])
            pre = emitted[src]
            if len(pre) != ints.shape[1] or len(outs) != ints.shape[0]:
                raise ExportError(f"weight layer {name!r} is {ints.shape[0]}x{ints.shape[1]} but connects "
                                  f"{len(pre)} channels to {len(outs)}; fix the shapes")
            bias = None if node.bias is None else np.rint(node.bias).astype(np.int64)
            rp.LinearWeights(input_nodes=pre, output_nodes=list(outs), name=name, computational_module=None,
                             weights=ints.T.copy(), biases=bias)
            emitted[name] = list(outs)
    graph_outputs = []
    for out in net.outputs:
        for src in net.predecessors(out.name):
            graph_outputs += emitted.get(src, [])
    graph = rp.GraphHolder(input_nodes=graph_inputs, output_nodes=graph_outputs, name="spikefit",
                           computational_module=None)
    return Converted(graph, shifts, r, len(graph_inputs))


DASHES = ("dash_mem", "dash_mem_out", "dash_syn", "dash_syn_2", "dash_syn_out")


def map_converted(conv: Converted, rp) -> dict:
    """Rockpool's mapper on the converted graph: its specification dict with integer dashes and the
    matrices' weight shifts (the mapper writes 0). The mapper's exceptions and warnings pass through."""
    mapped = rp.mapper(conv.graph, weight_dtype="int", threshold_dtype="int", dash_dtype="float")
    for key in DASHES:  # tau = dt * 2**dash comes back as log2(tau / dt), a float a hair off the integer
        mapped[key] = np.rint(mapped[key]).astype(np.int64)
    mapped["weight_shift_in"] = conv.shifts["input"]
    mapped["weight_shift_rec"] = conv.shifts["recurrent"]
    mapped["weight_shift_out"] = conv.shifts["output"]
    return mapped


__all__ = ["Converted", "to_rockpool", "map_converted", "vendor_shifts", "VENDOR_SHIFT_LIMIT"]
