"""NIR reading and writing: :func:`read_nir`, :func:`write_nir` and the ``nir`` exporter.

NIR's neurons are continuous-time; a :class:`~spikefit.network.Network` steps in discrete time.
One forward-Euler step of ``dt`` seconds maps them (derivation and tables: ``docs/nir.md``)::

    LIF      du = 1        dv = dt/tau      gain = r*dt/tau                       bias = dv*v_leak
    CubaLIF  du = dt/tau_syn  dv = dt/tau_mem  gain = r*w_in*du*dv                bias = dv*v_leak
    IF       du = 1        dv = 0           gain = r*dt
    LI -> IF / LIF  (an LI feeding one spiking node is that node's synaptic current)
             du = dt/tau_li   gain = r_li*du * (the IF / LIF gain)

``gain`` multiplies the weights (and Affine bias) of every connection into the population, so a
written network always has gain 1 and its weights are stored unchanged. NIR carries no step: with
``dt=None`` the reader takes spikefit's own ``dt`` from the graph metadata, recognises the files of
Norse 1.1.0 and snnTorch 1.0.0 (``dt = 1e-4``), else uses ``1e-3``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import ExportError, ModelError, SpikefitError
from .network import (Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d,
                      Quantization, check_graph)

DEFAULT_DT = 1e-3       # Network.dt's default; used when a file says nothing about its step
SNNTORCH_DT = 1e-4      # snnTorch 1.0.0 hard-codes this step in export_to_nir
NORSE_DT = 1e-3         # Norse 1.1.0's to_nir default step; it writes tau = dt * (true tau)
GAIN_RTOL = 1e-6        # a gain this close to 1 is 1 (float32 rounding in torch-written files)
EXACT_RTOL = 1e-9       # spikefit's exact values in node metadata apply when the NIR fields agree this well
FORMAT = 1              # version of the "spikefit" metadata written here

WEIGHT_TYPES = ("Affine", "Linear", "Conv2d")
STRUCT_TYPES = ("Flatten", "SumPool2d", "AvgPool2d")
NEURON_TYPES = ("IF", "LIF", "CubaLIF")
SUPPORTED = ("Input, Output, Affine, Linear, Conv2d, Flatten, SumPool2d, AvgPool2d, IF, LIF, CubaLIF, "
             "LI (only as the synaptic current of the one IF or LIF node it feeds) and nested NIRGraph")


# -- conventions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Convention:
    """How a file's parameters turn into discrete steps (``docs/nir.md``, "Step size")."""

    name: str                 # "spikefit" | "snntorch" | "norse-1.1" | "nir"
    dt: float                 # seconds per step
    tau_scale: float = 1.0    # true tau = tau in the file * tau_scale (Norse 1.1.0 writes dt * tau)
    jumps: bool = False       # inputs add to CubaLIF's current / IF's voltage in full (Norse's simulation)


def detect_convention(graph, dt: float | None = None) -> Convention:
    """The convention of ``graph``: an explicit ``dt`` means NIR's equations as written, with that step."""
    meta = _spikefit_meta(graph)
    if dt is not None:
        dt = float(dt)
        if not np.isfinite(dt) or dt <= 0:
            raise ModelError(f"dt {dt!r} must be a positive number of seconds")
        own = meta is not None and float(meta.get("dt", -1)) == dt
        return Convention("spikefit" if own else "nir", dt)
    if meta is not None and "dt" in meta:
        return Convention("spikefit", float(meta["dt"]))
    nodes = [(n, node) for n, node in _flatten(graph)[0].items() if type(node).__name__ in NEURON_TYPES + ("LI",)]
    if _is_norse(nodes):
        return Convention("norse-1.1", NORSE_DT, tau_scale=1.0 / NORSE_DT, jumps=True)
    if _is_snntorch(nodes):
        return Convention("snntorch", SNNTORCH_DT)
    return Convention("nir", DEFAULT_DT)


def _is_norse(nodes) -> bool:
    """Norse 1.1.0: r = 1 and w_in = 1 everywhere, and a tau shorter than its 1 ms step (it writes dt*tau)."""
    if not nodes:
        return False
    short = False
    for _, node in nodes:
        p = _params(node)
        if not np.all(p["r"] == 1) or not np.all(p.get("w_in", 1) == 1):
            return False
        for key in ("tau", "tau_mem", "tau_syn"):
            if key in p and np.any(p[key] < NORSE_DT):
                short = True
    return short


def _is_snntorch(nodes) -> bool:
    """snnTorch 1.0.0: only LIF and CubaLIF, with r = tau_mem/1e-4 and w_in = tau_syn/1e-4 (unit gain at 1e-4)."""
    if not nodes:
        return False
    for _, node in nodes:
        p, kind = _params(node), type(node).__name__
        if kind == "LIF":
            pairs = [(p["r"] * SNNTORCH_DT, p["tau"])]
        elif kind == "CubaLIF":
            pairs = [(p["r"] * SNNTORCH_DT, p["tau_mem"]), (p["w_in"] * SNNTORCH_DT, p["tau_syn"])]
        else:
            return False
        if not all(np.allclose(x, y, rtol=1e-5, atol=0) for x, y in pairs):
            return False
    return True


# -- reading -----------------------------------------------------------------------------------
def read_nir(source, dt: float | None = None) -> Network:
    """Read a NIR file (path) or a ``nir.NIRGraph`` into a :class:`Network` (see :func:`nir_to_network`)."""
    return nir_to_network(_load(source), dt=dt)


def _load(source):
    import h5py
    import nir

    if isinstance(source, nir.NIRGraph):
        return source
    path = Path(source)
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist")
    if path.is_dir():
        raise ModelError(f"model file '{path}' is a folder, not a NIR file")
    if not h5py.is_hdf5(path):
        raise ModelError(f"model file '{path}' is not an HDF5 NIR file (no HDF5 signature); write it with nir.write")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise ModelError(f"model file '{path}' is not an HDF5 NIR file (no 'node' group); write it with nir.write")
            _check_file_types(f["node"], path)
        return nir.read(path, type_check=False)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"model file '{path}' is not an HDF5 NIR file ({_one_line(e)}); write it again with nir.write")


def _check_file_types(group, path: Path, where: str = "") -> None:
    """Name the first node whose type this nir version cannot build (nir.read only asserts)."""
    import nir

    known = set(nir.ir.__all__)
    kind = group["type"][()].decode() if "type" in group else None
    if kind is not None and kind not in known:
        raise ModelError(f"model file '{path}': node {where or '(root)'!r} has type {kind!r}, unknown to nir "
                         f"{nir.version}; spikefit reads {SUPPORTED}")
    if "nodes" in group:
        for name, child in group["nodes"].items():
            _check_file_types(child, path, f"{where}.{name}" if where else name)


def nir_to_network(graph, dt: float | None = None) -> Network:
    """Convert a ``nir.NIRGraph`` to a :class:`Network`, validated as a graph first
    (:func:`spikefit.nir_check.check_nir`) and as a network after (:func:`spikefit.network.check_graph`).

    :param dt: seconds per step. ``None`` detects it (spikefit metadata, Norse 1.1.0, snnTorch 1.0.0,
        else 1e-3); a number applies NIR's equations as written with that step.
    :raises ModelError: one line naming the node or value and the fix.
    """
    from .nir_check import check_nir

    check_nir(graph)
    try:
        net = _nir_to_network(graph, dt)
    except SpikefitError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
        raise ModelError(f"NIR graph is malformed ({_one_line(e)}); write it again with nir.write") from None
    check_graph(net)
    return net


def _nir_to_network(graph, dt: float | None) -> Network:
    from .nir_check import check_nodes

    nodes, edges = _flatten(graph)
    kinds = {name: type(node).__name__ for name, node in nodes.items()}
    for name, kind in kinds.items():
        if kind not in WEIGHT_TYPES + STRUCT_TYPES + NEURON_TYPES + ("Input", "Output", "LI"):
            raise ModelError(f"NIR node {name!r} has type {kind}, which spikefit cannot read; it reads {SUPPORTED}")
    check_nodes(nodes, kinds)  # before any value is used, even to detect the file's convention
    conv = detect_convention(graph, dt)
    synapse, edges = _fuse_synapses(nodes, kinds, edges)
    li_nodes = {name: nodes.pop(name) for name in synapse.values()}
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    pred: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
        pred[b].append(a)
    _check_structure(nodes, kinds, succ, pred)

    pops = {n: _population(n, nodes[n], conv, li_nodes.get(synapse.get(n)), synapse.get(n))
            for n in nodes if kinds[n] in NEURON_TYPES}
    shapes = _infer_shapes(nodes, kinds, pred, pops)
    out: dict[str, object] = {}
    for name, node in nodes.items():
        out[name] = _build(name, node, kinds[name], shapes, pred, succ, pops)
    if conv.name == "spikefit":
        _apply_exact(out, nodes)
    own = _spikefit_meta(graph) or {}
    metadata = dict(json.loads(_text(own["network_metadata"]))) if "network_metadata" in own else {}
    if conv.name != "spikefit":  # record how the file was read
        metadata["nir_convention"] = {"name": conv.name, "dt": conv.dt}
    order = json.loads(_text(own["node_order"])) if "node_order" in own else []
    if sorted(order) == sorted(out):  # spikefit's own order; edges as written
        net = Network({n: out[n] for n in order}, edges, dt=conv.dt, metadata=metadata)
    else:  # a foreign file: nodes and edges in topological order (torch exporters write set order)
        order = Network(out, edges).topological_order()
        out = {n: out[n] for n in order}
        net = Network(out, _sorted_edges(out, edges), dt=conv.dt, metadata=metadata)
    net.synapse_layers()  # raises ModelError on a structure spikefit cannot run
    return net


def _flatten(graph, prefix: str = "") -> tuple[dict, list[tuple[str, str]]]:
    """Inline nested NIRGraphs: a subgraph's Input/Output ports disappear and edges go through them."""
    import nir

    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    for name, node in graph.nodes.items():
        full = prefix + str(name)
        if not isinstance(node, nir.NIRGraph):
            nodes[full] = node
            continue
        inner, inner_edges = _flatten(node, full + ".")
        ports_in = [n for n, v in inner.items() if isinstance(v, nir.Input)]
        ports_out = [n for n, v in inner.items() if isinstance(v, nir.Output)]
        if len(ports_in) != 1 or len(ports_out) != 1:
            raise ModelError(f"NIR subgraph {full!r} has {len(ports_in)} Input and {len(ports_out)} Output nodes; "
                             "spikefit inlines subgraphs with exactly one of each")
        entry[full] = [b for a, b in inner_edges if a == ports_in[0]]
        exit_[full] = [a for a, b in inner_edges if b == ports_out[0]]
        nodes.update({n: v for n, v in inner.items() if n not in (ports_in[0], ports_out[0])})
        edges += [(a, b) for a, b in inner_edges if ports_in[0] not in (a, b) and ports_out[0] not in (a, b)]
    seen = set(edges)
    for a, b in graph.edges:
        a, b = prefix + _text(a), prefix + _text(b)
        for src in exit_.get(a, [a]):
            for dst in entry.get(b, [b]):
                if src not in nodes or dst not in nodes:
                    missing = src if src not in nodes else dst
                    raise ModelError(f"NIR edge ({a!r}, {b!r}) names unknown node {missing!r}")
                if (src, dst) not in seen:
                    seen.add((src, dst))
                    edges.append((src, dst))
    return nodes, edges


def _fuse_synapses(nodes, kinds, edges):
    """Map each LI that feeds exactly one IF/LIF (its only input) to that node; reject other LIs."""
    synapse: dict[str, str] = {}  # spiking node -> its LI
    for name, kind in kinds.items():
        if kind != "LI":
            continue
        succ = [b for a, b in edges if a == name]
        target = succ[0] if len(succ) == 1 else None
        if target is None or kinds[target] not in ("IF", "LIF") or [a for a, b in edges if b == target] != [name]:
            raise ModelError(f"NIR node {name!r} (LI) is a non-spiking leaky integrator; spikefit reports spikes only and "
                             "reads an LI only as the synaptic current of the one IF or LIF node it feeds: "
                             "replace it by a LIF or CubaLIF node")
        if np.any(_arr(nodes[name].v_leak) != 0):
            raise ModelError(f"v_leak of NIR node {name!r} (LI) is not 0; a synaptic current has no leak voltage in "
                             "spikefit: move it into the bias of the Affine node before it")
        synapse[target] = name
    li = set(synapse.values())
    fused = [(a, b) for a, b in edges if a not in li and b not in li]
    for target, name in synapse.items():
        fused += [(a, target) for a, b in edges if b == name]
    order = {e: i for i, e in enumerate(edges)}
    fused.sort(key=lambda e: order.get(e, order.get((e[0], synapse.get(e[1], e[1])), len(edges))))
    return synapse, fused


def _check_structure(nodes, kinds, succ, pred) -> None:
    """Weight nodes sit between spiking sources and one neuron node; neurons receive through weights."""
    def desc(n):
        return f"{n!r} ({kinds[n]})"

    for name, kind in kinds.items():
        if name not in nodes:
            continue
        if kind in WEIGHT_TYPES:
            outs = succ[name]
            bad_out = [s for s in outs if kinds[s] == "Output"]
            bad_w = [s for s in outs if kinds[s] in WEIGHT_TYPES]
            if bad_out:
                raise ModelError(f"NIR node {desc(name)} feeds Output {bad_out[0]!r} directly; its result is an "
                                 "analog current, not spikes: spikefit networks report spiking populations, "
                                 "add a LIF or IF node after it")
            if bad_w:
                raise ModelError(f"NIR nodes {desc(name)} and {desc(bad_w[0])} are consecutive weight layers with no "
                                 "neurons between them; spikefit maps each weight node to the synapses between two "
                                 "spiking populations: multiply them into one (W = W2 @ W1, b = W2 @ b1 + b2) or add "
                                 "a neuron node between them")
            if len(outs) != 1 or kinds[outs[0]] not in NEURON_TYPES:
                raise ModelError(f"NIR node {desc(name)} must feed exactly one neuron node (IF, LIF, CubaLIF), "
                                 f"it feeds {outs}")
            if len(pred[name]) != 1:
                raise ModelError(f"NIR node {desc(name)} must have exactly one input, it has {pred[name]}")
        elif kind in NEURON_TYPES:
            for p in pred[name]:
                if kinds[p] not in WEIGHT_TYPES:
                    raise ModelError(f"NIR node {desc(name)} receives {desc(p)} directly, without a weight node; "
                                     "spikefit populations receive spikes through synapses: add a Linear node "
                                     "(identity weights) before it")
            if not pred[name]:
                raise ModelError(f"NIR node {desc(name)} has no input; connect a weight node to it")
        elif kind in STRUCT_TYPES:
            if len(pred[name]) != 1:
                raise ModelError(f"NIR node {desc(name)} must have exactly one input, it has {pred[name]}")
            if kinds[pred[name][0]] in WEIGHT_TYPES:
                raise ModelError(f"NIR node {desc(name)} follows weight node {pred[name][0]!r}; spikefit applies {kind} to "
                                 "spikes only: put it after the neuron node")


@dataclass
class _Pop:
    """A neuron node's discrete parameters and the factor its input connections are scaled by."""

    du: float
    dv: float
    vth: float
    bias: np.ndarray          # per neuron (param shape) or scalar
    gain: float               # multiplies incoming weights and Affine biases
    shape: tuple[int, ...]    # parameter shape; () when the node carries scalars


def _population(name, node, conv: Convention, li=None, li_name: str | None = None) -> _Pop:
    kind = type(node).__name__
    p = _params(node)
    if np.any(p.get("v_reset", 0) != 0):
        raise ModelError(f"v_reset {_uniform(name, 'v_reset', p['v_reset']):g} of NIR node {name!r} ({kind}) is not 0; "
                         "spikefit neurons reset to 0: shift v_leak and v_threshold by -v_reset in the source model")
    vth = _uniform(name, "v_threshold", p["v_threshold"])
    r = _uniform(name, "r", p["r"])
    dt = conv.dt
    bias = np.zeros(())
    if kind == "IF":
        du, dv = 1.0, 0.0
        gain = r if conv.jumps else r * dt
    elif kind == "LIF":
        du, dv = 1.0, _step(name, "tau", p["tau"], conv)
        gain = r * dv
        bias = dv * p["v_leak"]
    else:
        du, dv = _step(name, "tau_syn", p["tau_syn"], conv), _step(name, "tau_mem", p["tau_mem"], conv)
        w_in = _uniform(name, "w_in", p["w_in"])
        gain = r * w_in * dv * (1.0 if conv.jumps else du)
        bias = dv * p["v_leak"]
    if li is not None:
        lp = _params(li)
        du = _step(li_name, "tau", lp["tau"], conv)
        gain *= _uniform(li_name, "r", lp["r"]) * du
    if abs(gain - 1.0) <= GAIN_RTOL:
        gain = 1.0
    return _Pop(du, dv, vth, bias, gain, tuple(np.shape(p["v_threshold"])))


def _step(name: str, key: str, tau, conv: Convention) -> float:
    """dt/tau as a fraction lost per step, with the file's tau convention applied."""
    t = _uniform(name, key, tau) * conv.tau_scale
    if np.isnan(t) or t <= 0:
        raise ModelError(f"{key} {t:g} of NIR node {name!r} must be a positive number of seconds")
    ratio = conv.dt / t
    if ratio > 1.0 + 1e-9:
        raise ModelError(f"{key} {t:g} s of NIR node {name!r} is shorter than the step dt={conv.dt:g} s "
                         f"(dt/{key} = {ratio:g} > 1); read it with a smaller dt (read_nir(path, dt=...), --dt)")
    return min(ratio, 1.0)


def _infer_shapes(nodes, kinds, pred, pops) -> dict[str, tuple[int, ...]]:
    """Output shape of every node, propagated from the Inputs (NIR leaves pool shapes undefined)."""
    shapes: dict[str, tuple[int, ...]] = {}
    todo = list(nodes)
    while todo:
        progress = False
        for name in list(todo):
            kind, node = kinds[name], nodes[name]
            known = [shapes[p] for p in pred[name] if p in shapes]
            if kind == "Input":
                shape = _unbatch(tuple(int(v) for v in _arr(node.input_type["input"]).reshape(-1)))
            elif kind in NEURON_TYPES:
                param = pops[name].shape
                if not known and int(np.prod(param)) <= 1:
                    continue
                shape = known[0] if known else param
                if int(np.prod(param)) > 1 and int(np.prod(param)) != int(np.prod(shape)):
                    raise ModelError(f"NIR node {name!r} ({kind}) has parameters for {int(np.prod(param))} neurons "
                                     f"but receives {int(np.prod(shape))} inputs (shape {shape})")
            elif len(known) < len(pred[name]) or not known:
                continue
            else:
                shape = _out_shape(name, kind, node, known[0])
            shapes[name] = shape
            todo.remove(name)
            progress = True
        if not progress:
            raise ModelError(f"cannot infer the shapes of NIR nodes {todo}; give the Input node a shape")
    return shapes


def _out_shape(name, kind, node, shape):
    if kind in ("Affine", "Linear"):
        w = _arr(node.weight)
        if w.ndim != 2:
            raise ModelError(f"weight of NIR node {name!r} ({kind}) must be 2-D (out, in), got shape {w.shape}")
        if int(np.prod(shape)) != w.shape[1]:
            raise ModelError(f"NIR node {name!r} ({kind}) takes {w.shape[1]} inputs but receives shape {shape}")
        return (w.shape[0],)
    if kind == "Conv2d":
        return Conv2d(name, _arr(node.weight), _chw(name, shape), *_conv_geometry(name, node)).output_shape
    if kind == "Flatten":
        start, end = int(node.start_dim), int(node.end_dim)
        whole = start == 0 and end in (-1, len(shape) - 1)
        torch_style = start == 1 and end == -1  # nn.Flatten() as nirtorch writes it: dim 0 was the batch
        if not (whole or torch_style or len(shape) == 1):
            raise ModelError(f"NIR node {name!r} (Flatten) flattens dims {start}..{end} of {shape}; spikefit flattens "
                             "whole samples only (start_dim=0, end_dim=-1)")
        return (int(np.prod(shape)),)
    if kind == "Output":
        return shape
    kernel, stride, padding = _pool_geometry(node)
    return Pool2d(name, "sum", kernel, _chw(name, shape), stride, padding).output_shape


def _build(name, node, kind, shapes, pred, succ, pops):
    meta = node.metadata.get("spikefit", {}) if isinstance(node.metadata, dict) else {}
    shape = shapes[name]
    if kind == "Input":
        return Input(name, shape)
    if kind == "Output":
        _check_declared_output(name, node, shape)
        return Output(name, shape)
    if kind == "Flatten":
        return Flatten(name, shapes[pred[name][0]])
    if kind in ("SumPool2d", "AvgPool2d"):
        kernel, stride, padding = _pool_geometry(node)
        return Pool2d(name, kind[:3].lower(), kernel, shapes[pred[name][0]], stride, padding)
    if kind in NEURON_TYPES:
        pop = pops[name]
        size = int(np.prod(shape))
        bias = pop.bias.reshape(-1) if pop.bias.size == size else np.full(size, float(pop.bias.reshape(-1)[0]))
        return Neurons(name, shape, du=pop.du, dv=pop.dv, vth=pop.vth, bias=bias)
    gain = pops[succ[name][0]].gain
    quant = _read_quant(name, meta, gain)
    if kind == "Conv2d":
        stride, padding = _conv_geometry(name, node)
        bias = _arr(node.bias) * gain if getattr(node, "bias", None) is not None else None
        w = _arr(node.weight) * gain
        _check_codebook(name, w.reshape(w.shape[0], -1), meta, quant)
        return Conv2d(name, w, _chw(name, shapes[pred[name][0]]), stride, padding, bias, quant)
    w = _arr(node.weight) * gain
    bias = _arr(node.bias) * gain if kind == "Affine" else None
    _check_codebook(name, w, meta, quant)
    if bool(meta.get("sparse", False)):
        w = sp.csr_array(w)
    return Dense(name, w, bias, quant)


def _check_declared_output(name, node, shape) -> None:
    """An Output's declared size must be the size of what feeds it (NIR files carry both)."""
    types = getattr(node, "output_type", None)
    declared = types.get("output") if isinstance(types, dict) else None
    if declared is None:
        return
    dims = _unbatch(tuple(int(v) for v in _arr(declared).reshape(-1)))
    if not dims or min(dims) <= 0:
        return  # no declared size (some exporters leave it open)
    if int(np.prod(dims)) != int(np.prod(shape)):
        raise ModelError(f"NIR Output {name!r} declares shape {dims} ({int(np.prod(dims))} values) but is fed "
                         f"{int(np.prod(shape))} values (shape {tuple(shape)}); declare the size of the population "
                         "that feeds it")


def _apply_exact(out, nodes) -> None:
    """Use the exact values spikefit stored beside the NIR fields, where those fields still agree."""
    first = sorted(nodes, key=lambda n: not isinstance(out.get(n), Neurons))  # unfold IF biases before connections
    for name in first:
        node = nodes[name]
        meta = node.metadata.get("spikefit") if isinstance(node.metadata, dict) else None
        if not isinstance(meta, dict) or name not in out:
            continue
        obj = out[name]
        if isinstance(obj, Neurons) and all(k in meta for k in ("du", "dv", "vth", "bias")):
            exact_bias = _arr(meta["bias"]).reshape(-1)
            host = meta.get("bias_in")
            if isinstance(host, str) and host in out:  # IF bias written into the connection feeding it
                _unfold_bias(out[host], exact_bias, obj)
            if (_close(obj.du, meta["du"]) and _close(obj.dv, meta["dv"]) and _close(obj.vth, meta["vth"])
                    and exact_bias.size == obj.size and _close(obj.bias, exact_bias)):
                obj.du, obj.dv, obj.vth = float(meta["du"]), float(meta["dv"]), float(meta["vth"])
                obj.bias = exact_bias.astype(np.float64)
        elif isinstance(obj, (Dense, Conv2d)) and "bias" in meta and obj.bias is not None:
            exact = _arr(meta["bias"]).reshape(-1)
            if exact.size == obj.bias.size and _close(obj.bias, exact):
                obj.bias = exact if np.any(exact) else None


def _unfold_bias(conn, pop_bias: np.ndarray, pop: Neurons) -> None:
    """Take an IF population's bias back out of the connection bias it was written into."""
    if conn.bias is None:
        return
    part = pop_bias if isinstance(conn, Dense) else pop_bias.reshape(conn.weight.shape[0], -1)[:, 0]
    if part.size != conn.bias.size:
        return
    rest = conn.bias - part
    conn.bias = rest if np.any(np.abs(rest) > 1e-12 * max(1.0, float(np.abs(conn.bias).max()))) else None
    pop.bias = pop_bias.astype(np.float64)


def _read_quant(name, meta, gain: float) -> Quantization | None:
    q = meta.get("quant")
    if not isinstance(q, dict):
        return None
    try:
        codebook = _arr(q["codebook"]) * gain if "codebook" in q else None
        groups = np.asarray(q["groups"], dtype=np.int64) if "groups" in q else None
        return Quantization(int(q["weight_bits"]), float(q["scale"]) * abs(gain), codebook, _text(q["scope"]), groups)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"quantization metadata of NIR node {name!r} is malformed ({_one_line(e)}); "
                         "remove metadata['spikefit'] from that node to read it without its codebook")


def _check_codebook(name, w2: np.ndarray, meta, quant: Quantization | None) -> None:
    """Codebook indices stored beside the weights must still point at the weights' values."""
    if quant is None or quant.codebook is None or "codebook_index" not in meta:
        return
    idx = np.asarray(meta["codebook_index"], dtype=np.int64).reshape(w2.shape[0], -1)
    rows = _group_rows(quant, w2.shape[0])
    if idx.shape != w2.shape or rows is None:
        raise ModelError(f"codebook indices of NIR node {name!r} have shape {idx.shape} for weights {w2.shape}; "
                         "remove metadata['spikefit'] from that node to read it without its codebook")
    on = idx >= 0
    values = quant.codebook[np.broadcast_to(rows[:, None], idx.shape)[on], idx[on]]
    bad = ~np.isclose(w2[on], values, rtol=1e-6, atol=1e-12)
    if bad.any():
        raise ModelError(f"weights of NIR node {name!r} no longer match their codebook indices ({int(bad.sum())} "
                         "synapses differ); the file changed after spikefit wrote it: remove metadata['spikefit'] "
                         "from that node to read the weights without their codebook")


# -- writing -----------------------------------------------------------------------------------
def network_to_nir(network: Network, target=None):
    """Convert a :class:`Network` to a ``nir.NIRGraph`` whose nodes have gain 1 (weights unchanged).

    Populations become IF (du=1, dv=0), LIF (du=1), CubaLIF, or LI -> IF (du<1, dv=0). spikefit's exact
    values, codebooks and dt travel in ``metadata["spikefit"]`` of the nodes and the graph.
    """
    import nir

    dt = float(network.dt)
    if not np.isfinite(dt) or dt <= 0:
        raise ExportError(f"network dt {network.dt!r} must be a positive number of seconds")
    hosts = _bias_hosts(network)
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    for name, node in network.nodes.items():
        if isinstance(node, Input):
            nodes[name] = nir.Input(input_type={"input": np.array(node.shape)})
        elif isinstance(node, Output):
            nodes[name] = nir.Output(output_type={"output": np.array(node.shape)})
        elif isinstance(node, Flatten):
            nodes[name] = nir.Flatten(input_type={"input": np.array(node.input_shape)}, start_dim=0, end_dim=-1)
        elif isinstance(node, Pool2d):
            cls = nir.SumPool2d if node.kind_ == "sum" else nir.AvgPool2d
            nodes[name] = cls(kernel_size=np.array(node.kernel), stride=np.array(node.stride),
                              padding=np.array(node.padding))
        elif isinstance(node, (Dense, Conv2d)):
            extra = next((h[1] for p, h in hosts.items() if h[0] == name), None)
            nodes[name] = _write_connection(node, extra)
        elif isinstance(node, Neurons):
            if f"{name}.synapse" in network.nodes:
                raise ExportError(f"node name {name + '.synapse'!r} is taken; NIR needs it for the synaptic current of "
                                  f"population {name!r}: rename that node")
            written = _write_population(node, dt, hosts.get(name))
            nodes.update(written)
            if len(written) == 2:
                entry[name] = f"{name}.synapse"
                edges.append((f"{name}.synapse", name))
        else:
            raise ExportError(f"node {name!r} of type {type(node).__name__} has no NIR equivalent")
    edges = [(a, entry.get(b, b)) for a, b in network.edges] + edges
    meta = {"format": FORMAT, "version": _version(), "dt": dt, "node_order": json.dumps(list(network.nodes))}
    if target is not None:
        meta["target"] = str(getattr(target, "name", target))
    extra_meta = _jsonable(network.metadata)
    if extra_meta:
        meta["network_metadata"] = json.dumps(extra_meta)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikefit": meta}, type_check=False)


def _bias_hosts(network: Network) -> dict[str, tuple[str, np.ndarray]]:
    """IF populations (du=1, dv=0) with a bias: NIR's IF has no leak voltage, so the bias goes into the
    bias of the first feed-forward connection into it (exact, since u = this step's input)."""
    hosts = {}
    for layer in network.synapse_layers():
        pop = layer.post
        if pop.model != "if" or not np.any(pop.bias) or pop.name in hosts or layer.recurrent:
            continue
        conn = layer.conn
        if isinstance(conn, Dense):
            hosts[pop.name] = (conn.name, pop.bias)
            continue
        per_channel = pop.bias.reshape(conn.weight.shape[0], -1)
        if not np.all(per_channel == per_channel[:, :1]):
            raise ExportError(f"population {pop.name!r} (IF: du=1, dv=0) has a bias that varies within a channel; NIR's "
                              "IF node has no leak voltage and a Conv2d bias is per channel: give it a small leak (dv > 0)")
        hosts[pop.name] = (conn.name, per_channel[:, 0])
    missing = [p.name for p in network.populations() if p.model == "if" and np.any(p.bias) and p.name not in hosts]
    if missing:
        raise ExportError(f"population {missing[0]!r} (IF: du=1, dv=0) has a bias but no feed-forward connection to "
                          "carry it; NIR's IF node has no leak voltage: give it a small leak (dv > 0)")
    return hosts


def _write_connection(node: Dense | Conv2d, extra_bias: np.ndarray | None):
    import nir

    meta: dict = {}
    bias = node.bias
    if extra_bias is not None:
        meta["bias"] = np.zeros(extra_bias.size) if bias is None else bias.copy()
        bias = extra_bias if bias is None else bias + extra_bias
    if node.quant is not None:
        meta["quant"] = {k: (np.asarray(v) if isinstance(v, list) else v)
                         for k, v in node.quant.to_dict().items() if v is not None}
    if isinstance(node, Conv2d):
        w = node.weight
        if node.quant is not None:
            _add_codebook_index(meta, w.reshape(w.shape[0], -1), node.quant)
        return nir.Conv2d(input_shape=tuple(node.input_shape[1:]), weight=w, stride=node.stride, padding=node.padding,
                          dilation=(1, 1), groups=1, bias=np.zeros(w.shape[0]) if bias is None else bias,
                          metadata=_wrap(meta))
    w = node.dense_weight()
    if node.sparse:
        meta["sparse"] = True
    if node.quant is not None:
        _add_codebook_index(meta, w, node.quant)
    if bias is None:
        return nir.Linear(weight=w, metadata=_wrap(meta))
    return nir.Affine(weight=w, bias=np.asarray(bias, dtype=np.float64), metadata=_wrap(meta))


def _add_codebook_index(meta: dict, w2: np.ndarray, quant: Quantization) -> None:
    """Per synapse: the index of its value in its row's codebook; -1 for no synapse or an off-codebook value."""
    rows = _group_rows(quant, w2.shape[0])
    if quant.codebook is None or rows is None:
        return
    cb = quant.codebook[rows]                                     # (rows, M)
    nearest = np.abs(w2[:, :, None] - cb[:, None, :]).argmin(-1)  # (rows, cols)
    hit = np.isclose(np.take_along_axis(cb, nearest, 1), w2, rtol=1e-6, atol=1e-12) & (w2 != 0)
    meta["codebook_index"] = np.where(hit, nearest, -1).astype(np.int64)


def _group_rows(quant: Quantization, n_rows: int) -> np.ndarray | None:
    """Codebook row of every weight row (output neuron, or output channel of a conv)."""
    if quant.codebook is None:
        return None
    if quant.groups is not None:
        return quant.groups if quant.groups.size == n_rows else None
    return np.zeros(n_rows, dtype=np.int64) if quant.codebook.shape[0] == 1 else None


def _write_population(pop: Neurons, dt: float, host) -> dict:
    """NIR node(s) with gain 1 for a population: IF, LIF, CubaLIF, or LI -> IF."""
    import nir

    def full(x):
        return np.full(pop.shape, float(x)) if np.ndim(x) == 0 else np.asarray(x, dtype=np.float64).reshape(pop.shape)

    meta = {"du": pop.du, "dv": pop.dv, "vth": pop.vth, "bias": pop.bias.copy()}
    if pop.du == 0.0:
        raise ExportError(f"population {pop.name!r} has du = 0 (a synaptic current that never decays), which NIR's "
                          "CubaLIF cannot express; use du > 0")
    zero = full(0.0)
    if pop.dv == 0.0:
        if host is not None:
            meta["bias_in"] = host[0]
        elif np.any(pop.bias):
            raise ExportError(f"population {pop.name!r} has du < 1, dv = 0 and a bias, which NIR cannot express (IF has "
                              "no leak voltage); give it a small leak (dv > 0) or drop the bias")
        spiking = nir.IF(r=full(1.0 / dt), v_threshold=full(pop.vth), v_reset=zero, metadata=_wrap(meta))
        if pop.du == 1.0:
            return {pop.name: spiking}
        synapse = nir.LI(tau=full(dt / pop.du), r=full(1.0 / pop.du), v_leak=zero, metadata=_wrap({"synapse_of": pop.name}))
        return {f"{pop.name}.synapse": synapse, pop.name: spiking}
    v_leak = full(pop.bias / pop.dv)
    if pop.du == 1.0:
        return {pop.name: nir.LIF(tau=full(dt / pop.dv), r=full(1.0 / pop.dv), v_leak=v_leak, v_threshold=full(pop.vth),
                                  v_reset=zero, metadata=_wrap(meta))}
    return {pop.name: nir.CubaLIF(tau_syn=full(dt / pop.du), tau_mem=full(dt / pop.dv), r=full(1.0 / pop.dv),
                                  v_leak=v_leak, v_threshold=full(pop.vth), v_reset=zero, w_in=full(1.0 / pop.du),
                                  metadata=_wrap(meta))}


def write_nir(network: Network, path, target=None) -> Path:
    """Write ``network`` as a NIR file (``nir.write``) and return its path. The file appears complete
    or not at all: it is written next to ``path`` and renamed into place."""
    import nir

    path = Path(path)
    graph = network_to_nir(network, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class NirExporter:
    """The ``nir`` export format: a NIR graph (HDF5) that snnTorch, Norse, Lava-dl and others read."""

    name = "nir"
    suffix = ".nir"

    def export(self, network: Network, path, target=None) -> Path:
        return write_nir(network, path, target=target)


# -- helpers -----------------------------------------------------------------------------------
def _spikefit_meta(graph) -> dict | None:
    meta = getattr(graph, "metadata", None)
    own = meta.get("spikefit") if isinstance(meta, dict) else None
    return own if isinstance(own, dict) else None


def _params(node) -> dict[str, np.ndarray]:
    keys = ("tau", "tau_mem", "tau_syn", "r", "w_in", "v_leak", "v_threshold", "v_reset")
    return {k: _arr(getattr(node, k)) for k in keys if getattr(node, k, None) is not None}


def _arr(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors in graphs built in memory by torch libraries
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _uniform(name: str, key: str, values) -> float:
    a = _arr(values).reshape(-1)
    if a.size == 0:
        raise ModelError(f"{key} of NIR node {name!r} is empty")
    if not np.allclose(a, a[0], rtol=1e-6, atol=0, equal_nan=True):
        raise ModelError(f"{key} of NIR node {name!r} varies across neurons ({a.min():g} .. {a.max():g}); spikefit "
                         "populations share one value per layer (as Lava's LIF does): make it uniform")
    return float(a[0])


def _unbatch(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop a leading batch dimension of size 1 (torch exporters write one without ignore_dims)."""
    return shape[1:] if len(shape) in (2, 4) and shape[0] == 1 else shape


def _chw(name: str, shape) -> tuple[int, int, int]:
    shape = tuple(shape)
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3:
        raise ModelError(f"NIR node {name!r} needs (channels, height, width) inputs, got shape {shape}")
    return shape


def _pair(x) -> tuple[int, int]:
    a = np.atleast_1d(_arr(x)).astype(int)
    return (int(a[0]), int(a[-1]))


def _conv_geometry(name: str, node) -> tuple[tuple[int, int], tuple[int, int]]:
    if _pair(getattr(node, "dilation", 1)) != (1, 1) or int(np.asarray(getattr(node, "groups", 1))) != 1:
        raise ModelError(f"NIR node {name!r} (Conv2d) uses dilation {_pair(node.dilation)} and groups "
                         f"{int(np.asarray(node.groups))}; spikefit convolutions have dilation 1 and groups 1")
    stride = _pair(node.stride)
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = _text(padding)
        if padding == "valid":
            return stride, (0, 0)
        kh, kw = _arr(node.weight).shape[2:]
        if stride != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
            raise ModelError(f"NIR node {name!r} (Conv2d) has padding 'same' with stride {stride} and kernel "
                             f"{(kh, kw)}; spikefit supports 'same' for stride 1 and odd kernels only")
        return stride, ((kh - 1) // 2, (kw - 1) // 2)
    return stride, _pair(padding)


def _pool_geometry(node):
    kernel = _pair(node.kernel_size)
    stride = kernel if getattr(node, "stride", None) is None else _pair(node.stride)
    padding = (0, 0) if getattr(node, "padding", None) is None else _pair(node.padding)
    return kernel, stride, padding


def _sorted_edges(nodes, edges):
    """Edges in a stable order (torch exporters write them in set order)."""
    rank = {n: i for i, n in enumerate(nodes)}
    return sorted(edges, key=lambda e: (rank[e[0]], rank[e[1]]))


def _close(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=EXACT_RTOL, atol=EXACT_RTOL * scale))


def _wrap(meta: dict) -> dict:
    return {"spikefit": meta} if meta else {}


def _text(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf8")
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return _text(x.item())
    return str(x)


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}".rstrip(": ")


def _jsonable(meta: dict) -> dict:
    """The entries of ``meta`` that survive JSON unchanged (the rest stay out of the file)."""
    out = {}
    for k, v in (meta or {}).items():
        try:
            if json.loads(json.dumps(v)) == v and isinstance(k, str):
                out[k] = v
        except (TypeError, ValueError):
            continue
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spikefit")
    except PackageNotFoundError:
        return "unknown"
