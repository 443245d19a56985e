"""Conversion between the trainable :class:`spikefit.nn.SNN` and the framework-neutral
:class:`spikefit.network.Network` that verify, the emulator and every exporter read.

``to_network`` writes the exact weights (``scale * integer`` when quantized, pruned synapses as exact
zeros, scipy CSR beyond ``SPARSE_ABOVE`` zeros) with their Quantization metadata; ``from_network``
builds a trainable SNN from a Network (e.g. read from NIR), its quantizers from that metadata.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from . import network as N
from .errors import ModelError
from .nn import DECAY_STEPS, LIF, SNN, Conv, Flatten, Linear, Pool, Synapse
from .quantizers import quantizer_from_quantization

SPARSE_ABOVE = 0.5        # export a connection as scipy CSR when more than this fraction of weights is 0


def to_network(model: SNN, metadata: dict | None = None) -> N.Network:
    """The exact Network description: weights as float64 (``scale * integer`` when quantized),
    pruned weights as exact zeros, sparse CSR beyond ``SPARSE_ABOVE`` zeros, Quantization metadata."""
    exported = {s.name: _export_synapse(s) for s in model.synapses()}
    rescale = export_rescale(model, exported)
    nodes: list = [N.Input(model.input_name, model.input_shape)]
    edges: list[tuple[str, str]] = []
    prev = model.input_name
    for s in model.stages:
        if isinstance(s, Synapse):
            node = _synapse_node(s, *exported[s.name], rescale.get(model.post_of(s).name, 1.0))
        elif isinstance(s, LIF):
            r = rescale.get(s.name, 1.0)
            bias = None if s.bias is None else s.bias.detach().double().numpy().reshape(-1) / r
            node = N.Neurons(s.name, s.shape, s.du, s.dv, s.vth / r, bias)
        elif isinstance(s, Flatten):
            node = N.Flatten(s.name, s.input_shape)
        else:
            node = N.Pool2d(s.name, s.node.kind_, s.node.kernel, s.node.input_shape, s.node.stride, s.node.padding)
        nodes.append(node)
        edges.append((prev, s.name))
        prev = s.name
        if isinstance(s, LIF) and s.recurrent is not None:
            rec = s.recurrent
            nodes.append(_synapse_node(rec, *exported[rec.name], rescale.get(s.name, 1.0)))
            edges += [(s.name, rec.name), (rec.name, s.name)]
    nodes.append(N.Output(model.output_name, model.output_population().shape))
    edges.append((prev, model.output_name))
    return N.Network({n.name: n for n in nodes}, edges, dt=model.dt, metadata=dict(metadata or {}))


def export_rescale(model: SNN, exported: dict) -> dict[str, float]:
    """With ``weight_scaling = "none"`` the chip stores plain integers: divide every population's
    weights, bias and threshold by its incoming scale (spikes are unchanged: LIF is homogeneous)."""
    if model.weight_scaling != "none":
        return {}
    out = {}
    for pop in model.populations():
        scales = {exported[s.name][1].scale for s in model.incoming(pop) if exported[s.name][1] is not None}
        if len(scales) > 1:
            raise ModelError(f"population {pop.name!r} receives connections with different scales {sorted(scales)}; "
                             "integer-only weights need one scale per population")
        if scales:
            out[pop.name] = scales.pop()
    return out


def from_network(net: N.Network, snap: bool = False, cls: type = SNN) -> SNN:
    """A trainable SNN from a Network (e.g. read from NIR). Supports one input and a chain of
    Dense/Conv2d, Neurons, Flatten and Pool2d nodes, plus a recurrent Dense per population.

    :param snap: round du, dv that are not multiples of 1/4096 to the nearest one (the chips'
        12-bit decays) and list each change in ``model.snapped`` as (node, parameter, was, now);
        without it such a decay is a ModelError."""
    if len(net.inputs) != 1:
        raise ModelError(f"the trainer needs exactly one Input node, got {[n.name for n in net.inputs]}")
    back = net.back_edges()
    recurrent: dict[str, N.Dense] = {}
    for a, b in back:
        node = net.nodes[a] if isinstance(net.nodes[a], N.CONNECTIONS) else net.nodes[b]
        pop = b if isinstance(net.nodes[b], N.Neurons) else a
        if not isinstance(node, N.Dense) or net.predecessors(node.name) != [pop] or net.successors(node.name) != [pop]:
            raise ModelError(f"node {node.name!r}: the trainer supports recurrence only as a Dense connection "
                             "from a population to itself; remove or restructure it")
        recurrent[pop] = node
    rec_names = {d.name for d in recurrent.values()}
    order = [n for n in net.topological_order() if n not in rec_names]
    stages: list[nn.Module] = []
    inp = net.inputs[0]
    output_name = None
    prev_kind = "input"
    snapped: list[tuple[str, str, float, float]] = []
    for name in order:
        node = net.nodes[name]
        ff_preds = [p for p in net.predecessors(name) if p not in rec_names]
        ff_succs = [s for s in net.successors(name) if s not in rec_names]
        if len(ff_preds) > 1 or len(ff_succs) > 1:
            raise ModelError(f"node {name!r} has inputs {ff_preds} and outputs {ff_succs}; the trainer "
                             "supports a single chain (no branches or merges)")
        if isinstance(node, N.Input):
            continue
        if isinstance(node, N.Output):
            output_name = name
            continue
        if isinstance(node, N.CONNECTIONS):
            if prev_kind == "synapse":
                raise ModelError(f"node {name!r}: two connections in a row; put a Neurons population between them")
            succ = net.nodes[ff_succs[0]] if ff_succs else None
            if not isinstance(succ, N.Neurons):
                raise ModelError(f"node {name!r}: a connection must feed a Neurons population, "
                                 f"it feeds {ff_succs or 'nothing'}")
            stages.append(_synapse_from_node(node, quantizer_from_quantization))
            prev_kind = "synapse"
        elif isinstance(node, N.Neurons):
            if prev_kind != "synapse":
                raise ModelError(f"node {name!r}: a Neurons population must be fed by a Dense or Conv2d connection")
            rec = recurrent.get(name)
            lif = LIF(name, node.shape, node.du, node.dv, node.vth, bias=bool(np.any(node.bias)),
                      recurrent=None if rec is None else _synapse_from_node(rec, quantizer_from_quantization))
            changed = [(k, getattr(node, k), getattr(lif, k)) for k in ("du", "dv") if getattr(lif, k) != getattr(node, k)]
            if changed and snap:
                snapped += [(name, k, float(was), float(now)) for k, was, now in changed]
            elif changed:
                raise ModelError(f"node {name!r}: du={node.du:g}, dv={node.dv:g} are not multiples of 1/{DECAY_STEPS}; "
                                 "the chips' 12-bit decays cannot represent them; round them first")
            if lif.bias is not None:
                with torch.no_grad():
                    lif.bias.copy_(torch.as_tensor(node.bias.reshape(node.shape), dtype=torch.float32))
            stages.append(lif)
            prev_kind = "neurons"
        elif isinstance(node, N.Flatten):
            stages.append(Flatten(name, node.input_shape))
        elif isinstance(node, N.Pool2d):
            stages.append(Pool(name, node.kind_, node.kernel, node.input_shape, node.stride, node.padding))
        else:
            raise ModelError(f"node {name!r} of type {type(node).__name__} is not supported by the trainer")
    if not any(isinstance(s, LIF) for s in stages) or not isinstance(stages[-1], LIF):
        last = stages[-1].name if stages else inp.name
        raise ModelError(f"node {last!r}: the network must end in a Neurons population whose spikes are the readout")
    model = cls(stages, inp.shape, inp.name, output_name or "output", net.dt)
    model.snapped = snapped
    return model


def _export_synapse(s: Synapse) -> tuple[np.ndarray, N.Quantization | None]:
    """(float64 weight, Quantization) of a connection; quantized weights are ``scale * integer``."""
    mask = s.mask.detach().cpu().numpy().astype(bool)
    if s.quant is None:
        w = s.weight.detach().double().cpu().numpy() * mask
        return w, None
    ints, quant = s.quant.export(s.weight.detach())
    ints = np.where(mask, ints, 0)
    if isinstance(s, Conv) and quant.groups is not None:  # codebook row per channel -> per output neuron
        positions = int(np.prod(s.output_shape[1:]))
        quant.groups = np.repeat(quant.groups, positions)
    return ints.astype(np.float64) * quant.scale, quant


def _synapse_node(s: Synapse, w: np.ndarray, quant: N.Quantization | None, rescale: float):
    if rescale != 1.0 and quant is not None:
        w = np.rint(w / quant.scale)
        cb = None if quant.codebook is None else np.rint(quant.codebook / quant.scale)
        quant = N.Quantization(quant.weight_bits, 1.0, cb, quant.scope, quant.groups)
    bias = None if s.bias is None else s.bias.detach().double().numpy() / rescale
    if isinstance(s, Conv):
        return N.Conv2d(s.name, w, s.input_shape, s.stride, s.padding, bias, quant)
    zeros = 1.0 - np.count_nonzero(w) / max(w.size, 1)
    weight = sp.csr_array(w) if zeros > SPARSE_ABOVE else w
    return N.Dense(s.name, weight, bias, quant)


def _synapse_from_node(node, quantizer_from_quantization) -> Synapse:
    if isinstance(node, N.Dense):
        w = node.dense_weight()
        s = Linear(node.name, w.shape[1], w.shape[0], bias=node.bias is not None)
    else:
        w = node.weight
        s = Conv(node.name, node.input_shape, w.shape[0], w.shape[2:], node.stride, node.padding,
                 bias=node.bias is not None)
    with torch.no_grad():
        s.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        s.mask.copy_(torch.as_tensor(w != 0, dtype=torch.float32))
        if node.bias is not None:
            s.bias.copy_(torch.as_tensor(node.bias, dtype=torch.float32))
    if node.quant is not None:
        groups = node.quant.groups
        if isinstance(s, Conv) and groups is not None:  # per output neuron -> per channel
            groups = groups.reshape(s.n_out, -1)[:, 0]
        s.quant = quantizer_from_quantization(node.quant, w, groups)
    return s
