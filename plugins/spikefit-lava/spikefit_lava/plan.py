"""A network as the parameters of Lava processes (``LIF``/``LIFReset``, ``Dense``, ``Sparse``, ``Conv``),
in Lava's layouts, for one mode: ``fixed_pt`` (integers of :func:`spikefit.fixedpoint.to_fixed`) or
``floating_pt`` (the float parameters themselves). Plain numpy; nothing here imports Lava.

A plan serialises to a JSON-able ``meta`` dict plus a dict of arrays: the format that
``network.json`` / ``network.npz`` of a Lava export hold and :mod:`spikefit_lava.build` reads.

Timing. Lava's connections deliver one step late, so a population ``d`` connections away from the
input (its *depth*) sees a sample ``d`` steps late. That is exact only when every feed-forward path
to a population has the same length, and a recurrent connection keeps spikefit's previous-step
timing only when its source and target have the same depth (e.g. a population onto itself);
anything else raises :class:`ExportError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from spikefit.errors import ExportError
from spikefit.fixedpoint import FixedLayer, connection_matrix, output_population, structural_path, to_fixed
from spikefit.network import Conv2d, Dense, Network, Pool2d

from . import build
from .layout import conv_geometry, lava_conv_weight, layer_geometry, whc_permutation

FORMAT = build.FORMAT
MODES = ("fixed_pt", "floating_pt")


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's layout of a spikefit shape: (c, h, w) -> (x, y, c) = (w, h, c); anything else flat."""
    shape = tuple(int(s) for s in shape)
    return shape[::-1] if len(shape) == 3 else (int(np.prod(shape)),)


@dataclass
class PlanNode:
    """The Input or a population: where spikes come from."""

    name: str
    shape: tuple[int, ...]           # spikefit shape, e.g. (128,) or (c, h, w)
    depth: int                       # connections from the input (0 for the input)

    @property
    def lava_shape(self) -> tuple[int, ...]:
        return lava_shape(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def perm(self) -> np.ndarray:
        """``lava_flat = spikefit_flat[perm]``."""
        return whc_permutation(self.shape)


@dataclass
class PlanPopulation(PlanNode):
    du: float                        # fixed_pt: 12-bit integer; floating_pt: fraction lost per step
    dv: float
    vth: float                       # fixed_pt: 17-bit mantissa (Lava compares v > vth << 6)
    bias_mant: np.ndarray            # (n,) in spikefit order (laid out for Lava when serialised); floating_pt: the bias
    bias_exp: int                    # fixed_pt: 3-bit exponent; floating_pt: 0 (Lava ignores it)


@dataclass
class PlanConnection:
    name: str
    kind: str                        # "dense" | "sparse" | "conv2d"
    source: str                      # Input or population name
    target: str                      # population name
    weight: np.ndarray | sp.csr_array  # dense/sparse: (n_out, n_src) in Lava order; conv2d: (c_out, kw, kh, c_in)
    weight_exp: int = 0              # fixed_pt dense/sparse; conv2d weights are pre-shifted
    num_weight_bits: int = 8
    sign_mode: str = "mixed"         # Lava SignMode name, lower case
    recurrent: bool = False          # between populations of equal depth: delivers the previous step
    conv: dict | None = None         # conv2d: lava_input_shape, lava_stride, lava_padding


@dataclass
class LavaPlan:
    mode: str                        # "fixed_pt" | "floating_pt"
    input: PlanNode
    populations: list[PlanPopulation]
    connections: list[PlanConnection]
    output: str                      # the population read out
    metadata: dict = field(default_factory=dict)

    @property
    def max_depth(self) -> int:
        return max((p.depth for p in self.populations), default=0)

    def to_meta_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(meta, arrays)``: JSON-able structure and the arrays it names (keys prefixed by mode)."""
        arrays: dict[str, np.ndarray] = {}

        def put(key: str, value: np.ndarray) -> str:
            full = f"{self.mode}.{key}"
            arrays[full] = np.asarray(value)
            return full

        pops = []
        for i, p in enumerate(self.populations):
            bias = p.bias_mant[p.perm].reshape(p.lava_shape)
            pops.append({"name": p.name, "shape": list(p.shape), "lava_shape": list(p.lava_shape), "depth": p.depth,
                         "du": p.du, "dv": p.dv, "vth": p.vth, "bias_exp": p.bias_exp,
                         "bias_mant": put(f"p{i}.bias_mant", bias), "perm": put(f"p{i}.perm", p.perm)})
        conns = []
        for i, c in enumerate(self.connections):
            entry = {"name": c.name, "kind": c.kind, "source": c.source, "target": c.target,
                     "weight_exp": c.weight_exp, "num_weight_bits": c.num_weight_bits, "sign_mode": c.sign_mode,
                     "recurrent": c.recurrent, "conv": c.conv}
            if sp.issparse(c.weight):
                w = sp.csr_array(c.weight)
                entry["weight"] = {"data": put(f"c{i}.data", w.data), "indices": put(f"c{i}.indices", w.indices),
                                   "indptr": put(f"c{i}.indptr", w.indptr), "shape": list(w.shape)}
            else:
                entry["weight"] = put(f"c{i}.weight", c.weight)
            conns.append(entry)
        meta = {"format": FORMAT, "mode": self.mode, "output": self.output,
                "max_depth": self.max_depth,
                "input": {"name": self.input.name, "shape": list(self.input.shape),
                          "lava_shape": list(self.input.lava_shape), "perm": put("input.perm", self.input.perm)},
                "populations": pops, "connections": conns, "metadata": self.metadata}
        return meta, arrays


# -- building a plan ---------------------------------------------------------------------------------
@dataclass
class _Link:
    """One connection before conversion (mode independent)."""

    name: str
    source: str
    target: str
    recurrent: bool


def _check_timing(nodes: dict[str, int], links: list[_Link], order: list[str]) -> dict[str, int]:
    """Depth of every population; raises where Lava's one-step-per-connection pipeline cannot keep
    spikefit's timing."""
    depth = dict(nodes)
    for pop in order:
        ff = [(depth[ln.source] + 1, ln.name) for ln in links if ln.target == pop and not ln.recurrent]
        lengths = sorted({d for d, _ in ff})
        if not lengths:
            raise ExportError(f"population {pop!r} has no feed-forward input (only recurrent ones), so no step of a "
                              "sample reaches it on Lava; feed it from the input or from another population")
        if len(lengths) > 1:
            by = {d: n for d, n in ff}
            raise ExportError(
                f"population {pop!r} is reached by feed-forward paths of {lengths[0]} and {lengths[-1]} connections "
                f"(via {by[lengths[0]]!r} and {by[lengths[-1]]!r}); each Lava connection adds one step, so the paths "
                f"arrive at different steps. Make every path from the input to {pop!r} equally long (e.g. route the "
                f"shorter one through an extra population) or run it on the emulator")
        depth[pop] = lengths[0]
    for ln in links:
        if ln.recurrent and depth[ln.source] != depth[ln.target]:
            off = depth[ln.source] - depth[ln.target]
            raise ExportError(
                f"recurrent connection {ln.name!r} from {ln.source!r} (depth {depth[ln.source]}) to {ln.target!r} "
                f"(depth {depth[ln.target]}) would arrive {abs(off)} step(s) {'late' if off > 0 else 'early'} on Lava, "
                "where every connection adds one step; only recurrent connections between populations of equal depth "
                "(e.g. a population onto itself) keep the previous-step timing. Run it on the emulator")
    return depth


def _layout_matrix(w, src: PlanNode, dst: PlanNode):
    """Rows and columns of an (n_out, n_src) spikefit-order matrix in Lava order."""
    rows, cols = dst.perm, src.perm
    if sp.issparse(w):
        return sp.csr_array(sp.csr_array(w)[rows][:, cols])
    return np.ascontiguousarray(np.asarray(w)[rows][:, cols])


def _check_conv_shapes(name: str, conv: dict, src: PlanNode, dst: PlanNode) -> None:
    if tuple(src.shape) != tuple(conv["input_shape"]):
        raise ExportError(f"conv layer {name!r} takes (c, h, w) = {tuple(conv['input_shape'])} but its source "
                          f"{src.name!r} has shape {tuple(src.shape)}; give {src.name!r} the shape {tuple(conv['input_shape'])}")
    if tuple(dst.shape) != tuple(conv["output_shape"]):
        raise ExportError(f"conv layer {name!r} produces (c, h, w) = {tuple(conv['output_shape'])} but population "
                          f"{dst.name!r} has shape {tuple(dst.shape)}; give {dst.name!r} the shape {tuple(conv['output_shape'])}")


def _conv_geometry(conn: Conv2d) -> dict:
    return conv_geometry(conn.input_shape, conn.output_shape, conn.stride, conn.padding)


def _nodes(network: Network) -> tuple[PlanNode, dict[str, tuple[int, ...]]]:
    inputs = network.inputs
    if len(inputs) != 1:
        raise ExportError(f"network has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                          "the Lava export takes exactly one Input node")
    shapes = {p.name: tuple(p.shape) for p in network.populations()}
    return PlanNode(inputs[0].name, tuple(inputs[0].shape), 0), shapes


def plan_fixed(network: Network) -> LavaPlan:
    """The ``fixed_pt`` plan: :func:`spikefit.fixedpoint.to_fixed` (which checks every range) laid out for Lava."""
    inp, _ = _nodes(network)
    fixed = to_fixed(network)
    links = [_Link(la.conn, la.source, la.name, la.recurrent) for la in fixed.layers]
    depth = _check_timing({inp.name: 0}, links, fixed.populations())
    nodes: dict[str, PlanNode] = {inp.name: inp}
    pops = []
    for name in fixed.populations():
        first: FixedLayer = fixed.layers_of(name)[0]
        pop = PlanPopulation(name, tuple(fixed.shapes[name]), depth[name], int(first.du), int(first.dv), int(first.vth),
                             np.asarray(first.bias_mant, dtype=np.int64), int(first.bias_exp))
        nodes[name] = pop
        pops.append(pop)
    conns = []
    for la in fixed.layers:
        src, dst = nodes[la.source], nodes[la.name]
        if la.kind == "conv2d":
            _check_conv_shapes(la.conn, la.conv, src, dst)
            weight, exp = lava_conv_weight(la), 0
            geo = layer_geometry(la)
            conv = {k: list(geo[k]) for k in ("lava_input_shape", "lava_stride", "lava_padding")}
        else:
            weight, exp, conv = _layout_matrix(la.weight, src, dst), int(la.weight_exp), None
            weight = weight.astype(np.int32) if not sp.issparse(weight) else sp.csr_array(weight, dtype=np.int32)
        conns.append(PlanConnection(la.conn, la.kind, la.source, la.name, weight, exp, int(la.num_weight_bits),
                                    la.sign_mode, la.recurrent, conv))
    return LavaPlan("fixed_pt", inp, pops, conns, fixed.output)


def plan_float(network: Network) -> LavaPlan:
    """The ``floating_pt`` plan: spikefit's float parameters laid out for Lava (a connection bias is
    folded into the population's bias, which needs du = 1 as in fixed point)."""
    inp, shapes = _nodes(network)
    layers = network.synapse_layers()
    links = [_Link(sl.conn.name, sl.pre.name, sl.post.name, sl.recurrent) for sl in layers]
    order = list(dict.fromkeys(sl.post.name for sl in layers))
    missing = [p.name for p in network.populations() if p.name not in order]
    if missing:
        raise ExportError(f"population {missing[0]!r} has no incoming connection; connect it or remove it")
    depth = _check_timing({inp.name: 0}, links, order)
    conn_bias = {name: np.zeros(int(np.prod(shapes[name]))) for name in order}
    for sl in layers:
        if sl.conn.bias is not None:
            if sl.post.du < 1.0:
                raise ExportError(f"layer {sl.post.name!r}: connection {sl.conn.name!r} has a bias, which Lava adds to v "
                                  f"only, so it needs du = 1 (got du {sl.post.du:g}); set du = 1 or move the bias to "
                                  "the population")
            conn_bias[sl.post.name] += np.repeat(sl.conn.bias, sl.post.size // sl.conn.bias.size)
    nodes: dict[str, PlanNode] = {inp.name: inp}
    pops = []
    for name in order:
        n = network.nodes[name]
        pop = PlanPopulation(name, tuple(n.shape), depth[name], float(n.du), float(n.dv), float(n.vth),
                             np.asarray(n.bias + conn_bias[name], dtype=np.float64), 0)
        nodes[name] = pop
        pops.append(pop)
    conns = []
    for sl in layers:
        conn = sl.conn
        src, dst = nodes[sl.pre.name], nodes[sl.post.name]
        pooled = any(isinstance(n, Pool2d) for n in structural_path(network, conn.name))
        if isinstance(conn, Conv2d) and not pooled:
            geo = _conv_geometry(conn)
            _check_conv_shapes(conn.name, geo, src, dst)
            weight = np.ascontiguousarray(conn.weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
            kind, conv = "conv2d", {k: list(geo[k]) for k in ("lava_input_shape", "lava_stride", "lava_padding")}
        else:
            w = connection_matrix(network, conn)
            dense = isinstance(conn, Dense) and not conn.sparse
            kind, conv = ("dense" if dense else "sparse"), None
            weight = _layout_matrix(w.toarray() if dense else w, src, dst)
        conns.append(PlanConnection(conn.name, kind, sl.pre.name, sl.post.name, weight, recurrent=sl.recurrent, conv=conv))
    return LavaPlan("floating_pt", inp, pops, conns, output_population(network))


def make_plan(network: Network, mode: str) -> LavaPlan:
    """The plan of ``network`` for ``mode`` ("fixed_pt" or "floating_pt")."""
    if mode not in MODES:
        raise ExportError(f"unknown Lava mode {mode!r}; use one of {', '.join(MODES)}")
    return plan_fixed(network) if mode == "fixed_pt" else plan_float(network)
