"""Conversion of a :class:`~spikefit.network.Network` to the integer parameters of Lava's
bit-accurate models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PySparseModelBitAcc``,
``PyConvModelFixed``, lava-nc 0.10.0); ``docs/deploy.md`` derives every rule.

Units. A population's "activation unit" is one unit of the integer Lava's LIF reads on ``a_in``;
Lava shifts it left by 6 before adding it to ``u`` (``act_shift``) and compares ``v`` with
``vth << 6``. A population with factor ``k`` (activation units per weight unit) gets::

    q       = round(w / scale)                        integer weight, scale = 2**weight_exp / k
    a       = (sum_j q_ij s_j) << weight_exp          activation, as Dense/Sparse/Conv deliver it
    vth     = floor(vth_float * k)                    17-bit threshold mantissa
    bias    = round(bias_float * k * 64 / 2**bias_exp) 13-bit mantissa, 3-bit exponent
    du, dv  = round(du * 4096) - 1, round(dv * 4096)  12-bit decays (Lava adds ds_offset=1 to du)

LIF dynamics are linear in (w, bias, vth), so scaling all three by ``k`` keeps the spikes exactly
in real arithmetic; rounding is the only difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import ExportError
from .network import Conv2d, Dense, Flatten, Network, Neurons, Pool2d, shared_shift

# Lava's bit-accurate constants (lava/proc/lif/models.py, AbstractPyLifModelFixed.__init__).
UV_BITS = 24                      # u and v are 24-bit signed
UV_MAX = 2 ** (UV_BITS - 1)       # max_uv_val = 2**23
DECAY_SHIFT = 12                  # decays are out of 4096
DECAY_UNITY = 2 ** DECAY_SHIFT
DS_OFFSET = 1                     # added to du: u decays by (du + 1) / 4096
DM_OFFSET = 0                     # added to dv
VTH_SHIFT = 6                     # effective threshold = vth << 6
ACT_SHIFT = 6                     # a_in << 6 before it is added to u
VTH_MAX = 2 ** 17 - 1             # vth: unsigned 17-bit
DECAY_MAX = 2 ** 12 - 1           # du, dv: unsigned 12-bit
BIAS_MANT_MIN, BIAS_MANT_MAX = -(2 ** 12), 2 ** 12 - 1  # bias_mant: signed 13-bit
BIAS_EXP_MAX = 7                  # bias_exp: unsigned 3-bit
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -7, 7  # Loihi's synapse weight exponent (nengo-loihi validate.py)
NUM_WEIGHT_BITS = 8               # Lava's default; with our grids its truncation keeps every bit
SIGN_MODES = ("mixed", "excitatory", "inhibitory")

# Integer weight grids (values Lava's clip_weights/truncate_weights leave unchanged at 8 bits):
# mixed sign: even integers in [-256, 254] (the sign takes one bit; Lava truncates the LSB);
# one sign: integers in [0, 255] or [-255, 0].
GRIDS = {"mixed": (-256, 254, 2), "excitatory": (0, 255, 1), "inhibitory": (-255, 0, 1)}


@dataclass
class FixedLayer:
    """One connection and its target population, in Lava bit-accurate units. Layers that share
    ``name`` target the same population (e.g. a feed-forward and a recurrent connection) and hold
    the same du, dv, vth and bias."""

    name: str                     # population name
    conn: str                     # connection name
    kind: str                     # "dense" | "sparse" | "conv2d"
    weight: np.ndarray | sp.csr_array  # integer weights q: (n_out, n_src) or (c_out, c_in, kh, kw)
    weight_exp: int               # a = (sum q s) << weight_exp (>> -weight_exp when negative)
    num_weight_bits: int          # Lava's num_weight_bits (8: truncation keeps every bit of q)
    du: int                       # 12-bit; Lava decays u by (du + 1) / 4096
    dv: int                       # 12-bit; Lava decays v by dv / 4096
    vth: int                      # 17-bit threshold mantissa; Lava compares v > vth << 6
    bias_mant: np.ndarray         # (n,) int, 13-bit signed; effective bias = bias_mant << bias_exp
    bias_exp: int                 # 3-bit unsigned
    depth: int                    # feed-forward connections on the longest path from the input
    source: str                   # the Input or population whose spikes feed the connection
    recurrent: bool               # the connection closes a cycle (delivers the previous step)
    conv: dict | None             # conv2d geometry in spikefit's (c, h, w) order, else None
    scale: float                  # weight units per integer step: w ~= scale * q
    sign_mode: str = "mixed"      # Lava SignMode of the weights: "mixed" | "excitatory" | "inhibitory"

    @property
    def k(self) -> float:
        """Activation units per weight unit of the population (vth ~= vth_float * k)."""
        return 2.0 ** self.weight_exp / self.scale

    def effective_weight(self):
        """``weight`` after Lava's ``clip_weights`` and ``truncate_weights`` (what it accumulates)."""
        return lava_weights(self.weight, self.sign_mode, self.num_weight_bits) if self.kind != "conv2d" else self.weight


@dataclass
class FixedNetwork:
    """A network in Lava bit-accurate units; ``layers`` in topological order."""

    layers: list[FixedLayer]
    input_name: str
    input_size: int
    output: str                                   # population read out
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # input and population shapes (CHW)

    def populations(self) -> list[str]:
        """Population names in topological order (each once)."""
        return list(dict.fromkeys(layer.name for layer in self.layers))

    def layers_of(self, population: str) -> list[FixedLayer]:
        return [layer for layer in self.layers if layer.name == population]


# -- Lava's weight preprocessing (lava/utils/weightutils.py) ------------------------------------
def lava_weights(weights, sign_mode: str, num_weight_bits: int = NUM_WEIGHT_BITS):
    """Lava's ``clip_weights(w, sign_mode, 8)`` then ``truncate_weights(w, sign_mode, bits)``."""
    mixed = sign_mode == "mixed"
    sign = -1 if sign_mode == "inhibitory" else 1
    trunc = 8 - num_weight_bits + int(mixed)
    lo, hi = (-256, 255) if mixed else (0, 255)
    if sp.issparse(weights):
        w = sp.csr_array(weights, dtype=np.int64, copy=True)
        w.data = sign * ((np.clip(sign * w.data, lo, hi) >> trunc) << trunc)
        w.eliminate_zeros()
        return w
    w = sign * np.asarray(weights, dtype=np.int64)
    return sign * ((np.clip(w, lo, hi) >> trunc) << trunc)


def lava_sign_mode(weights) -> str:
    """Lava's ``determine_sign_mode``: excitatory when min >= 0, inhibitory when max <= 0."""
    vals = weights.data if sp.issparse(weights) else np.asarray(weights)
    if vals.size == 0 or vals.min() >= 0:
        return "excitatory"
    return "inhibitory" if vals.max() <= 0 else "mixed"


# -- structural folding ----------------------------------------------------------------------------
def conv_matrix(conv: Conv2d) -> sp.csr_array:
    """The (n_out, n_in) matrix of ``conv`` (CHW flattening on both sides), non-zero weights only."""
    w = conv.weight
    co, ci, kh, kw = w.shape
    _, h, wd = conv.input_shape
    _, oh, ow = conv.output_shape
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    o, y, x, c, dy, dx = np.meshgrid(np.arange(co), np.arange(oh), np.arange(ow), np.arange(ci),
                                     np.arange(kh), np.arange(kw), indexing="ij")
    iy, ix = y * sh - ph + dy, x * sw - pw + dx
    vals = w[o, c, dy, dx]
    keep = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd) & (vals != 0)
    rows = ((o * oh + y) * ow + x)[keep]
    cols = ((c * h + iy) * wd + ix)[keep]
    return sp.csr_array((vals[keep], (rows, cols)), shape=(co * oh * ow, ci * h * wd))


def pool_matrix(pool: Pool2d) -> sp.csr_array:
    """The (n_out, n_in) matrix of a sum (1) or average (1 / (kh*kw), padding counted) pool."""
    c, h, wd = pool.input_shape
    _, oh, ow = pool.output_shape
    (kh, kw), (sh, sw), (ph, pw) = pool.kernel, pool.stride, pool.padding
    ch, y, x, dy, dx = np.meshgrid(np.arange(c), np.arange(oh), np.arange(ow), np.arange(kh),
                                   np.arange(kw), indexing="ij")
    iy, ix = y * sh - ph + dy, x * sw - pw + dx
    keep = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd)
    rows = ((ch * oh + y) * ow + x)[keep]
    cols = ((ch * h + iy) * wd + ix)[keep]
    val = 1.0 if pool.kind_ == "sum" else 1.0 / (kh * kw)
    return sp.csr_array((np.full(rows.size, val), (rows, cols)), shape=(c * oh * ow, c * h * wd))


def structural_path(network: Network, conn_name: str) -> list[Flatten | Pool2d]:
    """The Flatten and Pool2d nodes between a connection and its spiking source, source first."""
    path = []
    preds = network.predecessors(conn_name)
    node = network.nodes[preds[0]] if len(preds) == 1 else None
    while isinstance(node, (Flatten, Pool2d)):
        path.append(node)
        preds = network.predecessors(node.name)
        node = network.nodes[preds[0]] if len(preds) == 1 else None
    return path[::-1]


def connection_matrix(network: Network, conn: Dense | Conv2d) -> sp.csr_array:
    """The float (n_out, n_src) matrix from the source's spikes to the target's input, with
    Flatten and Pool2d folded in; stored entries are the existing synapses."""
    mat = conn.csr().copy() if isinstance(conn, Dense) else conv_matrix(conn)
    for node in reversed(structural_path(network, conn.name)):
        if isinstance(node, Pool2d):
            mat = sp.csr_array(mat @ pool_matrix(node))
    return mat


# -- conversion -----------------------------------------------------------------------------------
@dataclass
class _Incoming:
    """A connection being converted: its float weights in the layout the kind needs."""

    conn: Dense | Conv2d
    source: str
    recurrent: bool
    kind: str
    w: np.ndarray | sp.csr_array  # float weights: dense (n_out, n_src), csr, or (co, ci, kh, kw)
    bias: np.ndarray              # (n_out,) connection bias, zeros when none
    pooled: bool                  # a Pool2d lies between source and connection (folded into w)


def _values(w) -> np.ndarray:
    return w.data if sp.issparse(w) else np.asarray(w).reshape(-1)


def _grid(vals: np.ndarray) -> str:
    pos, neg = bool((vals > 0).any()), bool((vals < 0).any())
    if pos and neg:
        return "mixed"
    return "inhibitory" if neg else "excitatory"


def _natural_scale(c: _Incoming, pop: str) -> tuple[float | None, str]:
    """Weight units per integer step that spans the grid (or the codebook's own scale)."""
    vals = _values(c.w)
    quant = None if c.pooled else c.conn.quant  # pooling mixes codebook values
    if quant is not None:
        scale = quant.scale
        ints = np.round(vals / scale).astype(np.int64)
        shift = shared_shift(ints)          # a power of two all integers share moves into the scale, as verify
        ints, scale = ints // shift, scale * shift
        mode = _grid(ints)
        lo, hi = (-128, 127) if mode == "mixed" else (-255, 255)
        bad = ints[(ints < lo) | (ints > hi)]
        if bad.size:
            kind = "mixed-sign" if mode == "mixed" else "one-sign"
            raise ExportError(f"layer {pop!r}: weight mantissa {int(bad[np.argmax(np.abs(bad))])} of connection "
                              f"{c.conn.name!r} exceeds Lava's 8-bit range [{lo}, {hi}] for {kind} weights; "
                              f"quantize with weight_bits <= {8 if mode == 'mixed' else 9}")
        return (scale / 2 if mode == "mixed" else scale), mode
    mode = _grid(vals)
    if not vals.size or not np.any(vals):
        return None, "excitatory"
    if mode == "mixed":  # Lava's own rule (weightutils._determine_weight_exp): 127/max, -128/min
        return max(vals.max() / 127, -vals.min() / 128) / 2, mode
    return np.abs(vals).max() / 255, mode


def _quantize(w, step: float, mode: str):
    """Round w / step onto the sign mode's integer grid (nearest, ties to even)."""
    lo, hi, unit = GRIDS[mode]

    def q(x):
        return (np.clip(np.round(x / (step * unit)), lo // unit, hi // unit) * unit).astype(np.int64)

    if sp.issparse(w):
        out = sp.csr_array((q(w.data), w.indices.copy(), w.indptr.copy()), shape=w.shape)
        out.eliminate_zeros()
        return out
    return q(np.asarray(w))


def drive_bounds(q, kind: str, conv_out: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """Per output neuron: the largest excitatory and inhibitory sums of q in one step of binary
    spikes (``sum_j q_ij s_j`` lies in [-neg, pos]); for conv2d, the bound of each channel."""
    if kind == "conv2d":
        pos = np.clip(q, 0, None).reshape(q.shape[0], -1).sum(1)
        neg = np.clip(-q, 0, None).reshape(q.shape[0], -1).sum(1)
        per = int(np.prod(conv_out[1:]))
        return np.repeat(pos, per), np.repeat(neg, per)
    if sp.issparse(q):
        return (np.asarray(q.maximum(0).sum(axis=1)).reshape(-1),
                np.asarray((-q).maximum(0).sum(axis=1)).reshape(-1))
    return np.clip(q, 0, None).sum(1), np.clip(-q, 0, None).sum(1)


def decay_du(du: float) -> int:
    """12-bit du: Lava multiplies u by 4096 - (du + ds_offset); 0 and 1 map to 4095/4096 and 0."""
    return int(np.clip(round(du * DECAY_UNITY) - DS_OFFSET, 0, DECAY_MAX))


def decay_dv(dv: float) -> int:
    """12-bit dv: Lava multiplies v by 4096 - (dv + dm_offset); dv = 1 maps to 1/4096 kept."""
    return int(np.clip(round(dv * DECAY_UNITY) - DM_OFFSET, 0, DECAY_MAX))


def threshold(vth: float, k: float) -> int:
    """floor(vth * k), with near-integers taken as that integer (exact ties stay ties)."""
    x = vth * k
    return int(math.floor(x * (1 + 1e-12)))


def bias_fixed(bias: np.ndarray, k: float) -> tuple[np.ndarray, int] | None:
    """(bias_mant, bias_exp) for bias * k activation units (bias_raw = bias * k * 64), with the
    smallest exponent whose mantissa fits 13 bits; None when none fits."""
    raw = bias * k * 2 ** ACT_SHIFT
    for exp in range(BIAS_EXP_MAX + 1):
        mant = np.round(raw / 2 ** exp).astype(np.int64)
        if mant.size == 0 or (mant.min() >= BIAS_MANT_MIN and mant.max() <= BIAS_MANT_MAX):
            return mant, exp
    return None


def _conns(network: Network) -> tuple[dict[str, list[_Incoming]], list[str]]:
    inputs = network.inputs
    if len(inputs) != 1:
        raise ExportError(f"network has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                          "the fixed-point form takes exactly one Input node")
    by_pop: dict[str, list[_Incoming]] = {}
    for sl in network.synapse_layers():
        conn = sl.conn
        path = structural_path(network, conn.name)
        pooled = any(isinstance(n, Pool2d) for n in path)
        if isinstance(conn, Conv2d) and not pooled:
            kind, w = "conv2d", conn.weight
        else:
            w = connection_matrix(network, conn)
            kind, w = ("dense", w.toarray()) if isinstance(conn, Dense) and not conn.sparse else ("sparse", w)
        bias = np.zeros(sl.post.size)
        if conn.bias is not None:  # Conv2d: one bias per output channel
            bias = np.repeat(conn.bias, sl.post.size // conn.bias.size)
        n_out = int(np.prod(conn.output_shape))
        if n_out != sl.post.size:
            raise ExportError(f"connection {conn.name!r} has {n_out} outputs for population {sl.post.name!r} "
                              f"of {sl.post.size} neurons; make their shapes agree")
        by_pop.setdefault(sl.post.name, []).append(
            _Incoming(conn, sl.pre.name, sl.recurrent, kind, w, np.asarray(bias, dtype=np.float64), pooled))
    pops = list(by_pop)
    missing = [p.name for p in network.populations() if p.name not in by_pop]
    if missing:
        raise ExportError(f"population {missing[0]!r} has no incoming connection; connect it or remove it")
    return by_pop, pops


def _depths(network: Network, by_pop: dict[str, list[_Incoming]], pops: list[str]) -> dict[str, int]:
    depth = {network.inputs[0].name: 0}
    for p in pops:  # topological order: feed-forward sources come first
        ff = [depth[c.source] + 1 for c in by_pop[p] if not c.recurrent and c.source in depth]
        depth[p] = max(ff, default=1)
    return depth


def output_population(network: Network) -> str:
    """The population a network reports: the one an Output node reads (through Flatten/Pool2d),
    else the last population in topological order."""
    for out in network.outputs:
        preds = network.predecessors(out.name)
        src = network._source(preds[0]) if len(preds) == 1 else None
        if isinstance(src, Neurons):
            return src.name
    pops = [n for n in network.topological_order() if isinstance(network.nodes[n], Neurons)]
    if not pops:
        raise ExportError("network has no neuron population to read out; add Neurons before the Output")
    return pops[-1]


def _convert_population(pop: Neurons, conns: list[_Incoming], depth: dict[str, int]) -> list[FixedLayer]:
    name = pop.name
    scales = [_natural_scale(c, name) for c in conns]
    ks = [None if s is None else 1.0 / s for s, _ in scales]
    live = [k for k in ks if k is not None]
    # k_base: the finest connection keeps its natural grid; coarser ones get a weight exponent.
    k_base = max(live) if live else 2 ** 10 / pop.vth
    extras, qs, modes = [], [], []
    for c, k, (_, mode) in zip(conns, ks, scales):
        extra = 0 if k is None else max(0, math.ceil(math.log2(k_base / k) - 1e-9))
        if extra > WEIGHT_EXP_MAX:
            raise ExportError(f"layer {name!r}: connection {c.conn.name!r} needs weight_exp {extra}, outside "
                              f"Lava's range [{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}]; its weights are 2^{extra} times "
                              f"larger than the other inputs' ones, rescale them")
        extras.append(extra)
        qs.append(_quantize(c.w, 2 ** extra / k_base, mode))
        modes.append(mode)
    conn_bias = sum(c.bias for c in conns)
    if np.any(conn_bias) and pop.du < 1.0:
        with_bias = next(c.conn.name for c in conns if np.any(c.bias))
        raise ExportError(f"layer {name!r}: connection {with_bias!r} has a bias, which Lava adds to v only, so it "
                          f"needs du = 1 (got du {pop.du:g}); set du = 1 or move the bias to the population")
    bias = pop.bias + conn_bias
    du, dv = decay_du(pop.du), decay_dv(pop.dv)
    pos = neg = 0
    for q, c, extra in zip(qs, conns, extras):
        p, n = drive_bounds(q, c.kind, c.conn.output_shape if c.kind == "conv2d" else None)
        pos, neg = pos + p * 2 ** extra, neg + n * 2 ** extra
    drive = float(max(np.max(pos, initial=0), np.max(neg, initial=0)))
    u_gain = DECAY_UNITY / (du + DS_OFFSET)  # bound on |u| / per-step drive (geometric series)

    # Headroom exponent E: the largest in [0, 7 - max extra] that fits vth, bias and |u| < 2**17
    # activation units (no 24-bit wrap of u); E = 0 when even that wraps in the worst case.
    chosen = None
    for E in range(WEIGHT_EXP_MAX - max(extras, default=0), -1, -1):
        k = k_base * 2 ** E
        vth, b = threshold(pop.vth, k), bias_fixed(bias, k)
        if vth <= VTH_MAX and b is not None and (E == 0 or drive * 2 ** E * u_gain < 2 ** (UV_BITS - 1 - ACT_SHIFT)):
            chosen = E, k, vth, b
            break
    if chosen is None:  # report the limit E = 0 breaks
        k = k_base
        vth = threshold(pop.vth, k)
        if vth > VTH_MAX:
            raise ExportError(f"layer {name!r}: vth mantissa {vth} exceeds Lava's 17-bit limit {VTH_MAX}; "
                              "lower the threshold or the weight scale")
        raw = np.abs(bias) * k * 2 ** ACT_SHIFT
        worst = int(np.round(raw.max() / 2 ** BIAS_EXP_MAX))
        raise ExportError(f"layer {name!r}: bias mantissa {worst} exceeds Lava's 13-bit limit {BIAS_MANT_MAX} "
                          f"even at bias_exp {BIAS_EXP_MAX}; lower the bias or the weight scale")
    E, k, vth, (bias_mant, bias_exp) = chosen
    layers = []
    for c, q, extra, mode in zip(conns, qs, extras, modes):
        e = E + extra
        conv = None
        if c.kind == "conv2d":
            ci, h, w = c.conn.input_shape
            co, oh, ow = c.conn.output_shape
            conv = {"input_shape": (ci, h, w), "output_shape": (co, oh, ow),
                    "stride": tuple(c.conn.stride), "padding": tuple(c.conn.padding)}
        layers.append(FixedLayer(
            name=name, conn=c.conn.name, kind=c.kind, weight=q, weight_exp=int(e),
            num_weight_bits=NUM_WEIGHT_BITS, du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=int(bias_exp),
            depth=depth[name], source=c.source, recurrent=c.recurrent, conv=conv,
            scale=float(2 ** e / k), sign_mode=mode))
    return layers


def to_fixed(network: Network) -> FixedNetwork:
    """Lava bit-accurate parameters of ``network``; every range is checked before anything is
    built, and a value out of Lava's ranges raises :class:`ExportError` naming layer, value, limit."""
    by_pop, pops = _conns(network)
    depth = _depths(network, by_pop, pops)
    inp = network.inputs[0]
    shapes = {inp.name: tuple(inp.shape)}
    layers: list[FixedLayer] = []
    for p in pops:
        pop = network.nodes[p]
        shapes[p] = tuple(pop.shape)
        layers.extend(_convert_population(pop, by_pop[p], depth))
    return FixedNetwork(layers=layers, input_name=inp.name, input_size=inp.size,
                        output=output_population(network), shapes=shapes)
