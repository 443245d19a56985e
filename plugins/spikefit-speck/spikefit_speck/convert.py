"""A spikefit :class:`~spikefit.network.Network` as the torch module of sinabs layers that Speck runs.

Node by node (the graph is walked in ``Network.topological_order``):

* ``Input`` (c, h, w) is the module's input; a 1-D input (n,) is fed as (n, 1, 1), the shape sinabs
  gives a vector of channels;
* ``Dense`` becomes ``nn.Flatten`` + ``nn.Linear`` (sinabs converts a Linear to a Conv2d whose kernel
  covers its whole (c, h, w) input), ``Conv2d`` becomes ``nn.Conv2d`` with the same weights, stride and
  padding; a connection's bias is the layer's bias;
* ``Neurons`` become ``sinabs.layers.IAFSqueeze`` when they do not leak, else ``LIFSqueeze``
  (``tau_mem`` from ``dv``, ``tau_syn`` from ``du``), which Speck cannot run and sinabs refuses; both with
  Speck's spikes (``MultiSpike``: ``floor(v / threshold)`` per step, as the chip), the threshold at the
  first grid value above ``vth`` (:func:`chip_threshold`: Speck fires at ``v >= threshold``, spikefit at
  ``v > vth``), the target's reset (``MembraneReset`` for "zero", ``MembraneSubtract`` for "subtract")
  and the chip's lower bound of the membrane, -2^15 steps of the layer's weight grid; a per-channel
  constant ``Neurons.bias`` is added to the incoming layer's bias (the chip has one bias per channel);
* ``Pool2d`` becomes ``sinabs.layers.SumPool2d`` or ``nn.AvgPool2d`` (sinabs turns average pooling into
  sum pooling and rescales the next layer), ``Flatten`` becomes ``nn.Flatten``;
* a population fed by several connections sums them with ``sinabs.layers.Merge``; a population that
  reaches some layers through pooling and others directly gets a ``SumPool2d(1)`` on the direct ones
  (see :func:`_mixed_pooling`: a sinabs 3.1.3 bug);
* the module returns what feeds the ``Output`` nodes (a tuple when there are several).

A chain is an ``nn.Sequential`` (loadable with torch and sinabs alone), any other graph a
:class:`spikefit_speck.graph.Graph`.

A network with no such module (a recurrent edge, several inputs, a Conv2d fed by a flat vector, a
per-neuron bias that differs within a channel, pooling with padding) raises :class:`NoSinabsEquivalent`.
torch and sinabs are imported when :func:`to_sinabs` runs, never at import.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from spikefit.errors import ModelError
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d

RESETS = ("zero", "subtract")   # after a spike: v = 0 (MembraneReset) or v -= spikes * vth (MembraneSubtract)


class NoSinabsEquivalent(ModelError):
    """The network has a part that no sinabs layer expresses, so sinabs cannot be asked about it."""


@dataclass
class SinabsModel:
    """The converted network: what ``DynapcnnNetwork(module, input_shape)`` takes."""

    module: object                           # torch.nn.Module of sinabs / torch layers
    input_shape: tuple[int, int, int]        # (c, h, w) fed to the module, batch excluded
    populations: list[str] = field(default_factory=list)   # spikefit populations, in module order
    weights: dict[str, np.ndarray] = field(default_factory=dict)   # population -> its weight layer's weights (f, ...)


def input_shape(net: Network) -> tuple[int, int, int]:
    """The (c, h, w) shape sinabs receives for the network's one input."""
    inputs = net.inputs
    if len(inputs) != 1:
        raise NoSinabsEquivalent(f"the network has {len(inputs)} inputs; Speck takes one input, "
                                 f"give the network a single Input node")
    shape = inputs[0].shape
    if len(shape) == 1:
        return (int(shape[0]), 1, 1)
    if len(shape) == 3:
        return tuple(int(s) for s in shape)
    raise NoSinabsEquivalent(f"input {inputs[0].name!r} has shape {shape}; Speck takes (channels, height, width) "
                             f"or a vector of channels")


def channel_bias(pop: Neurons) -> np.ndarray | None:
    """``pop.bias`` as one value per channel (None when it is zero); raises when it differs within a channel."""
    if not np.any(pop.bias):
        return None
    b = pop.bias.reshape(pop.shape[0], -1)
    if np.any(b != b[:, :1]):
        raise NoSinabsEquivalent(f"population {pop.name!r} has a bias that differs within a channel; Speck holds "
                                 f"one bias per channel, make it constant per channel")
    return b[:, 0].copy()


def _key(i: int, name: str) -> str:
    return f"n{i}_" + re.sub(r"\W", "_", name)


def to_sinabs(net: Network, batch_size: int = 1, reset: str = "zero") -> SinabsModel:
    """Build the sinabs module of ``net`` (see the module docstring) for ``batch_size`` samples per call;
    ``reset`` ("zero" or "subtract") is what the neurons do after spiking. Raises NoSinabsEquivalent."""
    import torch
    from torch import nn

    import sinabs.activation as sa
    import sinabs.layers as sl

    shape_in = input_shape(net)
    if net.back_edges():
        a, b = sorted(net.back_edges())[0]
        raise NoSinabsEquivalent(f"edge {a} -> {b} is recurrent; Speck's layers are feed-forward, remove the "
                                 f"recurrent connection")
    order = net.topological_order()
    mixed = _mixed_pooling(net)
    layers: dict[str, nn.Module] = {}
    steps: list[tuple[str, list[str]]] = []     # (module key, keys of its inputs) in call order
    out_of: dict[str, str] = {}                  # spikefit node -> key of the module producing it
    flat: dict[str, bool] = {}                   # spikefit node -> its tensor is (b, n) rather than (b, c, h, w)
    populations: list[str] = []
    weights: dict[str, np.ndarray] = {}

    def add(name: str, module, inputs: list[str]) -> str:
        key = _key(len(layers), name)
        layers[key] = module
        steps.append((key, inputs))
        return key

    for name in order:
        node = net.nodes[name]
        preds = net.predecessors(name)
        if isinstance(node, Input):
            out_of[name], flat[name] = "", False
            continue
        if isinstance(node, Output):
            continue
        srcs = [out_of[p] for p in preds]
        if isinstance(node, Neurons):
            conns = [net.nodes[p] for p in preds if isinstance(net.nodes[p], (Dense, Conv2d))]
            if len(conns) != len(preds) or not conns:
                raise NoSinabsEquivalent(f"population {name!r} must be fed by weight layers (Dense or Conv2d), "
                                         f"is fed by {preds}")
            src = srcs[0]
            if len(srcs) > 1:
                for other in srcs[1:]:
                    src = add(f"{name}_merge", sl.Merge(), [src, other])
            step = grid(conns[0], _bias(net, conns[0]), _avg_factor(net, conns[0]))
            out_of[name] = add(name, _neurons(node, sl, sa, batch_size, reset, step), [src])
            flat[name] = flat[preds[0]]
            populations.append(name)
            weights[name] = np.asarray(conns[0].weight, dtype=np.float64).reshape(conns[0].weight.shape[0], -1)
            continue
        if len(preds) != 1:
            raise NoSinabsEquivalent(f"node {name!r} has {len(preds)} inputs; only neuron populations may sum several")
        src, was_flat = srcs[0], flat[preds[0]]
        if preds[0] in mixed and not isinstance(node, Pool2d):
            src = add(f"{name}_pool1", sl.SumPool2d((1, 1)), [src])   # see _mixed_pooling
        if isinstance(node, Dense):
            if not was_flat:
                src = add(f"{name}_flatten", nn.Flatten(), [src])
            lin = nn.Linear(node.weight.shape[1], node.weight.shape[0], bias=_bias(net, node) is not None)
            _load(lin, node.dense_weight(), _bias(net, node), torch)
            out_of[name], flat[name] = add(name, lin, [src]), True
        elif isinstance(node, Conv2d):
            if was_flat:
                raise NoSinabsEquivalent(f"conv layer {name!r} reads a flat vector; Speck convolves (c, h, w) maps")
            c_out, c_in, kh, kw = node.weight.shape
            conv = nn.Conv2d(c_in, c_out, (kh, kw), stride=node.stride, padding=node.padding,
                             bias=_bias(net, node) is not None)
            _load(conv, node.weight, _bias(net, node), torch)
            out_of[name], flat[name] = add(name, conv, [src]), False
        elif isinstance(node, Pool2d):
            if was_flat:
                raise NoSinabsEquivalent(f"pooling {name!r} reads a flat vector; Speck pools (c, h, w) maps")
            if any(node.padding):
                raise NoSinabsEquivalent(f"pooling {name!r} pads its input by {node.padding}; Speck pools without "
                                         f"padding, set padding (0, 0)")
            pool = (sl.SumPool2d(node.kernel, stride=node.stride) if node.kind_ == "sum"
                    else nn.AvgPool2d(node.kernel, stride=node.stride))
            out_of[name], flat[name] = add(name, pool, [src]), False
        elif isinstance(node, Flatten):
            out_of[name], flat[name] = (add(name, nn.Flatten(), [src]) if not was_flat else src), True
        else:
            raise NoSinabsEquivalent(f"node {name!r} ({type(node).__name__}) has no sinabs layer")
    if not populations:
        raise NoSinabsEquivalent("the network has no neuron population; Speck runs layers of neurons")
    outputs = [out_of[p] for o in net.outputs for p in net.predecessors(o.name)] or [out_of[populations[-1]]]
    chain = all(inputs == [prev] for (_, inputs), prev in zip(steps, [""] + [k for k, _ in steps])) \
        and outputs == [steps[-1][0]]
    if chain:
        module = nn.Sequential(OrderedDict(layers))
    else:
        from .graph import Graph

        module = Graph(layers, steps, outputs)
    return SinabsModel(module, shape_in, populations, weights)


def _mixed_pooling(net: Network) -> set[str]:
    """Populations whose output reaches some layers through pooling and others directly.

    Speck pools per destination, and sinabs keeps one pooling size per destination, but sinabs 3.1.3
    crashes on such a population (``IndexError`` in ``set_pooling_layer_destination``,
    ``sinabs_edges_handler.py:902``: a destination without pooling has no pooling node to compare). The
    converter gives its unpooled destinations a ``SumPool2d(1)``, which pools nothing."""
    out = set()
    for pop in net.populations():
        succ = [net.nodes[s] for s in net.successors(pop.name) if not isinstance(net.nodes[s], Output)]
        if any(isinstance(n, Pool2d) for n in succ) and not all(isinstance(n, Pool2d) for n in succ):
            out.add(pop.name)
    return out


def _bias(net: Network, conn: Dense | Conv2d) -> np.ndarray | None:
    """The layer's bias on the chip: the connection's bias plus its population's per-channel bias."""
    post = [net.nodes[s] for s in net.successors(conn.name) if isinstance(net.nodes[s], Neurons)]
    n_out = conn.weight.shape[0]
    bias = None if conn.bias is None else conn.bias.copy()
    extra = channel_bias(post[0]) if post else None
    if extra is not None:
        if extra.size != n_out:
            raise NoSinabsEquivalent(f"population {post[0].name!r} has {extra.size} channels but layer "
                                     f"{conn.name!r} has {n_out} outputs; fix the shapes")
        bias = extra if bias is None else bias + extra
    return bias


def _load(layer, weight: np.ndarray, bias: np.ndarray | None, torch) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.asarray(weight), dtype=torch.float32).reshape(layer.weight.shape))
        if bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def _avg_factor(net: Network, conn: Dense | Conv2d) -> float:
    """sinabs turns average pooling into sum pooling and scales the next layer's weights by 1 / (kh * kw)."""
    from spikefit.fixedpoint import structural_path

    factor = 1.0
    for node in structural_path(net, conn.name):
        if isinstance(node, Pool2d) and node.kind_ == "avg":
            factor /= node.kernel[0] * node.kernel[1]
    return factor


def grid(conn: Dense | Conv2d, bias: np.ndarray | None, factor: float = 1.0) -> float | None:
    """The step of the layer's weight grid as sinabs sees the weights (``factor``: the 1 / (kh * kw) sinabs
    applies after average pooling), or None when the weights are on no grid."""
    from spikefit.synapses import grid_step

    if conn.quant is not None:
        return float(conn.quant.scale) * factor
    w = conn.dense_weight() if isinstance(conn, Dense) else conn.weight
    vals = np.concatenate([np.asarray(w, dtype=np.float64).ravel(), [] if bias is None else bias])
    vals = vals[vals != 0]
    step = grid_step(vals) if vals.size else None
    return None if step is None else float(step) * factor


def chip_threshold(vth: float, step: float | None) -> float:
    """Speck spikes when ``v >= threshold``; spikefit when ``v > vth``. On a grid of ``step`` the two agree
    with the threshold at the first grid value above ``vth``."""
    return float(vth) if step is None else (math.floor(vth / step + 1e-9) + 1) * step


def _neurons(pop: Neurons, sl, sa, batch_size: int, reset: str, step: float | None):
    """IAFSqueeze for a non-leaking population, LIFSqueeze (which sinabs refuses for Speck) otherwise.

    ``min_v_mem`` is Speck's 16-bit lower bound, -2^15 grid steps. sinabs discretizes a layer's weights,
    bias and thresholds (``min_v_mem``, threshold) with one factor, the largest that keeps the weights in
    8 bits and the thresholds in 16 (``discretize.py``); with its default ``min_v_mem = None`` the bound
    is -2^15 in weight units, which caps the factor at 1, so weights on a grid finer than 1 (0.5, 0.25)
    would be rounded. With the bound at -2^15 steps the factor is 1 / step and int8 weights on any grid
    stay exact, as spikefit's ``weight_scaling = "layer"`` assumes."""
    if reset not in RESETS:
        raise NoSinabsEquivalent(f"reset {reset!r} is not one of {', '.join(RESETS)}")
    reset_fn = sa.MembraneReset() if reset == "zero" else sa.MembraneSubtract()
    common = dict(batch_size=batch_size, spike_threshold=chip_threshold(pop.vth, step), reset_fn=reset_fn,
                  spike_fn=sa.MultiSpike, min_v_mem=None if step is None else -float(2 ** 15) * step)
    if pop.model == "if":
        return sl.IAFSqueeze(**common)
    return sl.LIFSqueeze(tau_mem=_tau(pop.dv), tau_syn=None if pop.du >= 1.0 else _tau(pop.du), **common)


def _tau(loss: float) -> float:
    """Time constant (steps) that loses ``loss`` of the state per step: exp(-1/tau) = 1 - loss."""
    if loss <= 0.0:
        return math.inf
    if loss >= 1.0:
        return 1e-3
    return -1.0 / math.log1p(-loss)
