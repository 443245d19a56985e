"""Framework-neutral network description.

A :class:`Network` is a directed graph of nodes in discrete time. The trainer produces it, NIR maps to
and from it (:mod:`spikefit.nir_io`), ``verify`` measures it and exporters and backends consume it.

Semantics (the reference every backend agrees with, see ``docs/method.md``):

* time is discrete; one step is ``Network.dt`` seconds (only used when converting to or from NIR);
* a feed-forward connection (:class:`Dense`, :class:`Conv2d`) delivers the spikes its source emits
  at step ``t`` to its target within the same step ``t`` (as NIR's continuous-time graphs and the
  torch modules do); a recurrent connection (an edge that closes a cycle) delivers the spikes of
  step ``t - 1``. Structural nodes (:class:`Flatten`, :class:`Pool2d`) add no delay. Backends whose
  connections add a pipeline delay (Lava's ``Dense`` adds one step) reproduce these semantics exactly
  by shifting each population's time window (state reset and readout) by its depth;
* a :class:`Neurons` population is current-based LIF::

      u[t] = u[t-1] * (1 - du) + a_in[t]
      v[t] = v[t-1] * (1 - dv) + u[t] + bias
      s[t] = v[t] > vth ;  v[t] = 0 where s[t]

* a synapse exists where its weight is non-zero: pruning sets weights to exactly 0.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterator, Union

import numpy as np
import scipy.sparse as sp

from .errors import ModelError

Weight = Union[np.ndarray, sp.csr_array]
SCOPES = ("neuron", "core", "layer", "chip")


def _shape(value) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(value))


def _pair(value) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(value, dtype=int))
    return (int(a[0]), int(a[-1]))


@dataclass
class Quantization:
    """How a connection's weights are stored on a chip: ``w = scale * integer``.

    A codebook (Clusterization-Aware Training) limits each scope group to ``M`` distinct
    non-zero values; ``groups[i]`` is the codebook row used by output neuron ``i``.
    """

    weight_bits: int                    # signed integer precision of the stored weight
    scale: float                        # weight units per integer step
    codebook: np.ndarray | None = None  # (groups, M) allowed non-zero values, in weight units
    scope: str = "layer"                # "neuron" | "core" | "layer" | "chip"
    groups: np.ndarray | None = None    # (n_out,) codebook row of every output neuron

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ModelError(f"unknown codebook scope {self.scope!r}; use one of {', '.join(SCOPES)}")
        if not (isinstance(self.weight_bits, (int, np.integer)) and 1 <= self.weight_bits <= 32):
            raise ModelError(f"weight_bits {self.weight_bits!r} must be an integer in 1..32")
        self.weight_bits = int(self.weight_bits)
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ModelError(f"quantization scale {self.scale!r} must be a positive number")
        self.scale = float(self.scale)
        if self.codebook is not None:
            self.codebook = np.atleast_2d(np.asarray(self.codebook, dtype=np.float64))
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=np.int64)

    def to_dict(self) -> dict:
        return {
            "weight_bits": self.weight_bits,
            "scale": self.scale,
            "codebook": None if self.codebook is None else self.codebook.tolist(),
            "scope": self.scope,
            "groups": None if self.groups is None else self.groups.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Quantization":
        return cls(**d)


def shared_shift(ints: np.ndarray) -> int:
    """The largest power of two that divides every integer of ``ints`` (1 when none is even or all are 0).

    A layer stored as integers times one scale may move that factor into its scale (a left shift of the
    weights, as Xylo's weight_shift and Lava's weight_exp do): 254 is 127 << 1, an 8-bit weight."""
    a = np.abs(np.asarray(ints, dtype=np.int64))
    a = a[a != 0]
    if not a.size:
        return 1
    g = int(np.gcd.reduce(a))
    return g & -g


@dataclass
class Input:
    """Where spikes enter: one channel per element of ``shape``."""

    name: str
    shape: tuple[int, ...]              # per-sample shape, e.g. (64,) or (1, 8, 8)

    def __post_init__(self):
        self.shape = _shape(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape


@dataclass
class Output:
    """Marks the spikes the network reports (its readout)."""

    name: str
    shape: tuple[int, ...]

    def __post_init__(self):
        self.shape = _shape(self.shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape


@dataclass
class Neurons:
    """A population of current-based LIF neurons sharing du, dv and vth (one per layer, as Lava's
    ``LIF`` process and most chips' cores hold them); ``bias`` is per neuron."""

    name: str
    shape: tuple[int, ...]
    du: float = 1.0                     # fraction of synaptic current lost per step; 1: u = this step's input
    dv: float = 0.0                     # fraction of membrane voltage lost per step; 0: no leak (IF)
    vth: float = 1.0                    # spike when v > vth, then v = 0
    bias: np.ndarray | None = None      # (size,) added to v every step; None means zeros

    def __post_init__(self):
        self.shape = _shape(self.shape)
        for key in ("du", "dv"):
            val = float(getattr(self, key))
            if not 0.0 <= val <= 1.0:
                raise ModelError(f"{key} {val} of population {self.name!r} must lie in [0, 1] (fraction lost per step)")
            setattr(self, key, val)
        self.vth = float(self.vth)
        if not np.isfinite(self.vth) or self.vth <= 0:
            raise ModelError(f"vth {self.vth} of population {self.name!r} must be a positive number")
        bias = np.zeros(self.size) if self.bias is None else np.asarray(self.bias, dtype=np.float64).reshape(-1)
        if bias.size == 1 and self.size != 1:
            bias = np.full(self.size, float(bias[0]))
        if bias.size != self.size:
            raise ModelError(f"bias of population {self.name!r} has {bias.size} values for {self.size} neurons")
        self.bias = bias

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def model(self) -> str:
        """The simplest neuron model that runs these parameters: "if" ⊂ "lif" ⊂ "cuba-lif"."""
        if self.du < 1.0:
            return "cuba-lif"
        return "if" if self.dv == 0.0 else "lif"


@dataclass
class Dense:
    """All-to-all (or sparse, where weights are zero) synapses; ``weight`` is (out, in)."""

    name: str
    weight: Weight                      # (n_out, n_in); dense ndarray or scipy.sparse.csr_array
    bias: np.ndarray | None = None      # (n_out,) added to the synaptic input every step (NIR Affine)
    quant: Quantization | None = None

    def __post_init__(self):
        if sp.issparse(self.weight):
            w = sp.csr_array(self.weight, dtype=np.float64)
            w.eliminate_zeros()
            self.weight = w
        else:
            self.weight = np.asarray(self.weight, dtype=np.float64)
        if self.weight.ndim != 2:
            raise ModelError(f"weight of dense layer {self.name!r} must be 2-D (out, in), got shape {self.weight.shape}")
        if self.bias is not None:
            self.bias = np.asarray(self.bias, dtype=np.float64).reshape(-1)
            if self.bias.size != self.weight.shape[0]:
                raise ModelError(f"bias of layer {self.name!r} has {self.bias.size} values for {self.weight.shape[0]} outputs")
            if not np.any(self.bias):
                self.bias = None

    @property
    def sparse(self) -> bool:
        return sp.issparse(self.weight)

    @property
    def kind(self) -> str:
        return "sparse" if self.sparse else "dense"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[1],)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[0],)

    def dense_weight(self) -> np.ndarray:
        return self.weight.toarray() if self.sparse else self.weight

    def csr(self) -> sp.csr_array:
        """Rows = output neurons, stored entries = existing (non-zero) synapses."""
        if self.sparse:
            return self.weight
        w = sp.csr_array(self.weight)
        w.eliminate_zeros()
        return w


@dataclass
class Conv2d:
    """2-D convolution synapses; ``weight`` is (c_out, c_in, kh, kw), inputs are (c_in, h, w)."""

    name: str
    weight: np.ndarray                  # (c_out, c_in, kh, kw)
    input_shape: tuple[int, int, int]   # (c_in, h, w)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: np.ndarray | None = None      # (c_out,) added to the synaptic input every step
    quant: Quantization | None = None

    def __post_init__(self):
        self.weight = np.asarray(self.weight, dtype=np.float64)
        if self.weight.ndim != 4:
            raise ModelError(f"weight of conv layer {self.name!r} must be 4-D (c_out, c_in, kh, kw), got {self.weight.shape}")
        self.input_shape = _shape(self.input_shape)
        if len(self.input_shape) != 3 or self.input_shape[0] != self.weight.shape[1]:
            raise ModelError(f"input_shape {self.input_shape} of conv layer {self.name!r} must be (c_in={self.weight.shape[1]}, h, w)")
        self.stride, self.padding = _pair(self.stride), _pair(self.padding)
        _check_geometry(self.name, self.stride, self.padding, self.weight.shape[2:])
        if self.bias is not None:
            self.bias = np.asarray(self.bias, dtype=np.float64).reshape(-1)
            if not np.any(self.bias):
                self.bias = None
        if min(self.output_shape) <= 0:
            raise ModelError(f"conv layer {self.name!r} produces an empty output {self.output_shape}")

    kind = "conv2d"

    @property
    def output_shape(self) -> tuple[int, int, int]:
        c, h, w = self.input_shape
        kh, kw = self.weight.shape[2:]
        oh = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        return (self.weight.shape[0], oh, ow)


@dataclass
class Flatten:
    """Reshapes (c, h, w) to (c*h*w,) in C order; adds no delay and no synapses."""

    name: str
    input_shape: tuple[int, ...]

    def __post_init__(self):
        self.input_shape = _shape(self.input_shape)

    kind = "flatten"

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (int(np.prod(self.input_shape)),)


@dataclass
class Pool2d:
    """Sum or average pooling of spikes over (kh, kw) windows; adds no delay."""

    name: str
    kind_: str                          # "sum" | "avg"
    kernel: tuple[int, int]
    input_shape: tuple[int, int, int]   # (c, h, w)
    stride: tuple[int, int] | None = None  # None: equal to kernel
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        if self.kind_ not in ("sum", "avg"):
            raise ModelError(f"pool kind {self.kind_!r} of {self.name!r} must be 'sum' or 'avg'")
        self.kernel = _pair(self.kernel)
        self.stride = self.kernel if self.stride is None else _pair(self.stride)
        self.padding = _pair(self.padding)
        self.input_shape = _shape(self.input_shape)
        _check_geometry(self.name, self.stride, self.padding, self.kernel)
        if len(self.input_shape) != 3 or min(self.output_shape) <= 0:
            raise ModelError(f"pool {self.name!r} with kernel {self.kernel} on input {self.input_shape} produces no "
                             "output; use a (c, h, w) input at least as large as the kernel")

    @property
    def kind(self) -> str:
        return f"{self.kind_}pool2d"

    @property
    def output_shape(self) -> tuple[int, int, int]:
        c, h, w = self.input_shape
        oh = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        return (c, oh, ow)


def _check_geometry(name: str, stride, padding, kernel) -> None:
    if min(stride) < 1 or min(padding) < 0 or min(kernel) < 1:
        raise ModelError(f"{name!r} has stride {tuple(stride)}, padding {tuple(padding)} and kernel {tuple(kernel)}; "
                         "strides and kernels must be at least 1 and paddings at least 0")


Node = Union[Input, Output, Neurons, Dense, Conv2d, Flatten, Pool2d]
CONNECTIONS = (Dense, Conv2d)


@dataclass
class SynapseLayer:
    """A connection with its presynaptic source (Input or Neurons, looked through Flatten/Pool)
    and its postsynaptic population."""

    conn: Dense | Conv2d
    pre: Input | Neurons
    post: Neurons
    recurrent: bool                     # the edge closes a cycle (post feeds back to pre)


@dataclass
class Network:
    """Nodes (in insertion order) and directed edges ``(src, dst)``; cycles are recurrent edges."""

    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    dt: float = 1e-3                    # seconds per step; only used to convert to/from NIR
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.nodes = dict(self.nodes)
        self.edges = [(str(a), str(b)) for a, b in self.edges]
        for a, b in self.edges:
            for n in (a, b):
                if n not in self.nodes:
                    raise ModelError(f"edge ({a!r}, {b!r}) names unknown node {n!r}")
        for name, node in self.nodes.items():
            if node.name != name:
                raise ModelError(f"node stored under {name!r} is named {node.name!r}")
        if not self.inputs:
            raise ModelError("network has no Input node; add one (spikefit.network.Input)")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def sequential(cls, *nodes: Node, dt: float = 1e-3, metadata: dict | None = None) -> "Network":
        """Chain ``nodes`` in order: ``nodes[i] -> nodes[i + 1]``."""
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ModelError(f"node names must be unique, got {names}")
        return cls({n.name: n for n in nodes}, list(zip(names[:-1], names[1:])), dt=dt, metadata=metadata or {})

    def copy(self) -> "Network":
        return copy.deepcopy(self)

    # -- graph queries -----------------------------------------------------------------------
    @property
    def inputs(self) -> list[Input]:
        return [n for n in self.nodes.values() if isinstance(n, Input)]

    @property
    def outputs(self) -> list[Output]:
        return [n for n in self.nodes.values() if isinstance(n, Output)]

    def predecessors(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def successors(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    def populations(self) -> list[Neurons]:
        return [n for n in self.nodes.values() if isinstance(n, Neurons)]

    def connections(self) -> list[Dense | Conv2d]:
        return [n for n in self.nodes.values() if isinstance(n, CONNECTIONS)]

    def back_edges(self) -> set[tuple[str, str]]:
        """Edges that close a cycle in a depth-first walk from the inputs (recurrent edges)."""
        state: dict[str, int] = {}
        back: set[tuple[str, str]] = set()
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            succ[a].append(b)
        roots = [n.name for n in self.inputs] + list(self.nodes)
        for root in roots:
            if root in state:
                continue
            stack = [(root, iter(succ[root]))]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    back.add((node, nxt))
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(succ[nxt])))
        return back

    def topological_order(self) -> list[str]:
        """Node names so that every feed-forward edge goes forward (recurrent edges ignored)."""
        back = self.back_edges()
        indeg = {n: 0 for n in self.nodes}
        for e in self.edges:
            if e not in back:
                indeg[e[1]] += 1
        order, ready = [], [n for n in self.nodes if indeg[n] == 0]
        while ready:
            n = ready.pop(0)
            order.append(n)
            for a, b in self.edges:
                if a == n and (a, b) not in back:
                    indeg[b] -= 1
                    if indeg[b] == 0:
                        ready.append(b)
        return order

    def is_chain(self) -> bool:
        """True when the graph is one feed-forward path Input -> ... -> (Output)."""
        if len(self.inputs) != 1 or self.back_edges():
            return False
        return all(len(self.successors(n)) <= 1 and len(self.predecessors(n)) <= 1 for n in self.nodes)

    def chain(self) -> list[Node]:
        """The nodes of a chain network in order; raises ModelError for other graphs."""
        if not self.is_chain():
            raise ModelError("this operation needs a feed-forward chain (one input, no branches or recurrence)")
        return [self.nodes[n] for n in self.topological_order()]

    def _source(self, name: str) -> Input | Neurons | None:
        """The spiking source of ``name``, looking back through Flatten and Pool2d nodes."""
        node = self.nodes[name]
        while isinstance(node, (Flatten, Pool2d)):
            preds = self.predecessors(node.name)
            if len(preds) != 1:
                return None
            node = self.nodes[preds[0]]
        return node if isinstance(node, (Input, Neurons)) else None

    def synapse_layers(self) -> list[SynapseLayer]:
        """Every connection with its source and target population, in topological order."""
        back = self.back_edges()
        out = []
        order = self.topological_order()
        for name in order:
            conn = self.nodes[name]
            if not isinstance(conn, CONNECTIONS):
                continue
            preds = self.predecessors(name)
            succs = [s for s in self.successors(name) if isinstance(self.nodes[s], Neurons)]
            if len(preds) != 1 or len(succs) != 1:
                raise ModelError(f"connection {name!r} must have one source and one target population, "
                                 f"has sources {preds} and targets {self.successors(name)}")
            pre = self._source(preds[0])
            if pre is None:
                raise ModelError(f"connection {name!r} is not fed by an Input or a neuron population")
            post = self.nodes[succs[0]]
            recurrent = (preds[0], name) in back or (name, succs[0]) in back or _reaches(self, post.name, pre.name)
            out.append(SynapseLayer(conn, pre, post, recurrent and isinstance(pre, Neurons)))
        return out

    def summary(self) -> str:
        lines = []
        for name in self.topological_order():
            node = self.nodes[name]
            kind = getattr(node, "kind", type(node).__name__.lower())
            extra = f" model={node.model} du={node.du:g} dv={node.dv:g} vth={node.vth:g}" if isinstance(node, Neurons) else ""
            lines.append(f"{name:<16} {kind:<10} out={node.output_shape}{extra}")
        return "\n".join(lines)


def _reaches(net: Network, src: str, dst: str) -> bool:
    """True if ``dst`` can be reached from ``src`` (used to flag recurrent connections)."""
    if src == dst:
        return True
    seen, todo = {src}, [src]
    while todo:
        for b in net.successors(todo.pop()):
            if b == dst:
                return True
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return False


def iter_nodes(net: Network, kind: type) -> Iterator:
    return (n for n in net.nodes.values() if isinstance(n, kind))


def check_graph(net: Network, require_output: bool = True) -> None:
    """Refuse a network that no command can use meaningfully, before any command uses it: no neuron
    population, no Output (``require_output``), an Output whose size differs from what feeds it, or
    weights, biases and thresholds that are not finite real numbers.

    :raises ModelError: naming the node and the fix.
    """
    pops = net.populations()
    if not pops:
        raise ModelError("network has no neuron population (only Input, Output and structural nodes); spikefit fits "
                         "and runs spiking populations: add a LIF, CubaLIF or IF node")
    outs = net.outputs
    if require_output and not outs:
        raise ModelError("network has no Output node; mark the population it reports with an Output node "
                         "(nir.Output) fed by that population")
    for out in outs:
        preds = net.predecessors(out.name)
        if len(preds) != 1:
            raise ModelError(f"Output {out.name!r} is fed by {len(preds)} nodes {preds}; feed it exactly one population")
        src = net.nodes[preds[0]]
        n_src = int(np.prod(src.output_shape))
        n_out = int(np.prod(out.shape))
        if n_src != n_out:
            raise ModelError(f"Output {out.name!r} declares shape {out.shape} ({n_out} values) but {preds[0]!r} feeds it "
                             f"{n_src}; declare shape ({n_src},) or feed it a population of {n_out}")
    for node in net.nodes.values():
        arrays = []
        if isinstance(node, Neurons):
            arrays = [("bias", node.bias)]
        elif isinstance(node, (Dense, Conv2d)):
            w = node.weight.data if sp.issparse(node.weight) else node.weight
            arrays = [("weight", w), ("bias", node.bias)]
        for key, a in arrays:
            if a is not None and not np.all(np.isfinite(a)):
                raise ModelError(f"{key} of {node.name!r} holds NaN or infinite values; every parameter must be a "
                                 "finite number")
