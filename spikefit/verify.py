"""The fit check: measure a :class:`~spikefit.network.Network` against a :class:`~spikefit.spec.TargetSpec`.

``verify(network, target) -> FitReport`` packs the populations onto cores (rule below, also in
``docs/verify.md``) and reports one :class:`Row` per limit the target declares: usage, limit, ok and
where the usage is largest. Limits the target leaves out produce no row.

Packing rule: populations in ``Network.topological_order``; the neurons of each population fill the
current core in index order; a new core opens when adding the next neuron would exceed
``neurons_per_core``, ``synapses_per_core`` (incoming non-zero synapses of the core's neurons),
``axons_per_core`` (distinct presynaptic sources of the core's neurons) or the core's parameter sets
(distinct shared ``(du, dv, vth)`` values among ``core.shared``). A population starts a new core
unless ``core.share_layers`` is true. A neuron that alone exceeds a per-core limit gets a core of its
own and that limit's row fails.

Everything runs vectorised over synapses: per connection, per core, or per chunk of weight values;
no Python loop runs per neuron or per synapse.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import ModelError
from .fixedpoint import pool_matrix
from .network import Conv2d, Dense, Flatten, Input, Network, Neurons, Pool2d
from .spec import TargetSpec

CODE_CHUNK = 1 << 18     # weight values hashed per numpy step: its temporaries stay in cache
BIG = 1 << 40            # stamp = core * BIG - position: later cores win, then earlier positions
SAMPLE = 1 << 13         # weight values sampled to guess a connection's value set (then checked)
MAX_CODER = 4096         # value sets up to this size get a hash coder; larger ones are sorted
MAX_MASK_CODES = 256     # up to this many distinct values network-wide: per-neuron sets as bit masks
GRID_BITS = 17           # integer grids are searched up to max|w|/s = 2**(GRID_BITS - 1)
REL_TOL = 1e-6           # w/s counts as an integer within this relative tolerance
_MAGICS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
           0xFF51AFD7ED558CCD, 0x94D049BB133111EB)
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


# -- the report ---------------------------------------------------------------------------------

@dataclass
class Row:
    """One constraint: what the network uses against what the target allows."""

    name: str                       # constraint, e.g. "fan_in" or "unique_weights (per neuron)"
    usage: int | str | None         # largest use; None when it cannot be measured (see detail)
    limit: int | str | None         # the target's limit
    ok: bool
    worst: str = ""                 # where the usage is largest: "layer fc1 neuron 3", "core 17", ...
    detail: str = ""                # why it fails, or how usage was counted

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CoreSummary:
    """How the populations were packed onto cores."""

    cores: int                      # cores used
    neurons_max: int                # neurons on the fullest core
    neurons_mean: float
    synapses_max: int               # incoming non-zero synapses of one core's neurons
    synapses_mean: float
    axons_max: int | None = None    # distinct presynaptic sources of one core (None: not counted)
    axons_mean: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerStats:
    """One connection (Dense or Conv2d) as the check measured it."""

    name: str
    kind: str                       # "dense" | "sparse" | "conv2d"
    pre: str                        # source Input or population
    post: str                       # target population
    recurrent: bool
    synapses: int                   # non-zero synapses (pooling folded in)
    fan_in_max: int                 # largest fan-in of a post neuron through this connection
    fan_out_max: int                # largest fan-out of a pre neuron through this connection
    unique_weights: int | None = None   # distinct non-zero values (None: not measured)
    weight_bits: int | None = None      # signed bits needed after scaling (None: not measured or off-grid)
    scale: float | None = None          # weight units per integer step used for weight_bits

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PopulationStats:
    """One neuron population and where it sits."""

    name: str
    neurons: int
    model: str                      # "if" | "lif" | "cuba-lif"
    first_core: int | None          # cores first_core .. first_core + cores - 1
    cores: int
    fan_in_max: int
    fan_out_max: int                # outgoing non-zero synapses, all target layers together

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitReport:
    """The result of :func:`verify`: ``ok`` when every row is within its limit."""

    target: str
    rows: list[Row]
    cores: CoreSummary
    layers: list[LayerStats]
    populations: list[PopulationStats]
    bounds: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # population -> core row bounds

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name or r.name.split(" (")[0] == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def core_of(self, population: str) -> np.ndarray:
        """The core index of every neuron of ``population`` (C order)."""
        pop = next(p for p in self.populations if p.name == population)
        b = self.bounds[population]
        return pop.first_core + np.searchsorted(b, np.arange(pop.neurons), side="right") - 1

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "rows": [r.to_dict() for r in self.rows],
                "cores": self.cores.to_dict(), "populations": [p.to_dict() for p in self.populations],
                "layers": [s.to_dict() for s in self.layers]}

    def verdict(self) -> str:
        if self.ok:
            n = self.cores.cores
            return f"FITS {self.target}: all {len(self.rows)} constraints met on {n} core{'' if n == 1 else 's'}"
        names = ", ".join(r.name for r in self.failures)
        return f"DOES NOT FIT {self.target}: {len(self.failures)} of {len(self.rows)} constraints exceeded ({names})"

    def table(self) -> str:
        """Human-readable text: constraints, details of failures, cores, populations, layers."""
        head = ("constraint", "usage", "limit", "ok", "worst")
        body = [(r.name, _cell(r.usage), _cell(r.limit), "ok" if r.ok else "FAIL", r.worst) for r in self.rows]
        lines = [f"target: {self.target}", *_columns(head, body, right=(1, 2))]
        for r in self.rows:
            if r.detail and not r.ok:
                lines.append(f"  {r.name}: {r.detail}")
        c = self.cores
        ax = f"; axons/core max {c.axons_max} mean {c.axons_mean:.1f}" if c.axons_max is not None else ""
        lines += ["", f"cores: {c.cores} used; neurons/core max {c.neurons_max} mean {c.neurons_mean:.1f}; "
                      f"synapses/core max {c.synapses_max} mean {c.synapses_mean:.1f}{ax}", ""]
        head = ("population", "neurons", "model", "cores", "fan_in max", "fan_out max")
        body = [(p.name, p.neurons, p.model, _core_range(p), p.fan_in_max, p.fan_out_max) for p in self.populations]
        lines += _columns(head, body, right=(1, 4, 5)) + [""]
        head = ("layer", "kind", "pre -> post", "synapses", "fan_in max", "unique w", "bits")
        body = [(s.name, s.kind + (" (rec)" if s.recurrent else ""), f"{s.pre} -> {s.post}", s.synapses,
                 s.fan_in_max, _cell(s.unique_weights), _cell(s.weight_bits)) for s in self.layers]
        lines += _columns(head, body, right=(3, 4, 5, 6))
        return "\n".join(lines)


def _cell(v) -> str:
    return "-" if v is None else str(v)


def _core_range(p: PopulationStats) -> str:
    if not p.cores:
        return "-"
    return str(p.first_core) if p.cores == 1 else f"{p.first_core}-{p.first_core + p.cores - 1}"


def _columns(head, body, right=()) -> list[str]:
    rows = [tuple(str(c) for c in r) for r in [head, *body]]
    width = [max(len(r[i]) for r in rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, width)))
    return [fmt(r).rstrip() for r in rows]


# -- weight values: sets, codes and integer grids -----------------------------------------------

class _Missing(Exception):
    """A weight value outside the value set guessed from a sample (the set must be recomputed)."""

    def __init__(self, part):
        self.part = part


class _Coder:
    """Maps weight values to their index in the sorted value set ``u`` (exact equality): a
    multiplicative hash of the float's bits into a small table, then a check that every value hit."""

    def __init__(self, u: np.ndarray):
        self.u = np.ascontiguousarray(u, dtype=np.float64)
        self.lut = None
        bits = self.u.view(np.uint64)
        base = max(1, math.ceil(math.log2(max(len(u), 1))))
        for k in range(base + 2, base + 7):
            for magic in _MAGICS:
                h = (bits * np.uint64(magic)) >> np.uint64(64 - k)
                if np.unique(h).size == len(u):
                    self.magic, self.shift = np.uint64(magic), np.uint64(64 - k)
                    self.lut = np.zeros(1 << k, dtype=np.intp)
                    self.lut[h.astype(np.int64)] = np.arange(len(u))
                    return

    def codes(self, d: np.ndarray) -> np.ndarray | None:
        """Indices of ``d``'s values in ``u``, or None when some value is not in ``u``."""
        if not len(self.u):
            return None if len(d) else np.zeros(0, np.intp)
        if self.lut is not None:
            h = np.ascontiguousarray(d, dtype=np.float64).view(np.uint64) * self.magic
            h >>= self.shift
            c = self.lut.take(h.view(np.int64))
        else:
            c = np.minimum(np.searchsorted(self.u, d), len(self.u) - 1)
        return c if np.array_equal(self.u.take(c), d) else None


def _chunks(ptr: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Split rows ``0..len(ptr)-1`` into consecutive ranges of about ``size`` synapses each."""
    n = len(ptr) - 1
    if n <= 0:
        return []
    cuts = np.searchsorted(ptr, np.arange(ptr[0] + size, ptr[-1], size), side="right") - 1
    cuts = np.unique(np.concatenate([[0], cuts, [n]]))
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def _bits(kmin: int, kmax: int) -> int:
    """Signed bits holding integers kmin..kmax: -(2^(b-1)) <= k <= 2^(b-1) - 1."""
    pos = int(max(kmax, 0)).bit_length() + 1
    neg = int(max(-kmin - 1, 0)).bit_length() + 1
    return max(pos, neg, 1)


def _on_grid(v: np.ndarray, s: float) -> bool:
    k = v / s
    return bool(np.all(np.abs(k - np.rint(k)) <= REL_TOL * np.maximum(np.abs(k), 1.0)))


def grid_step(values: np.ndarray) -> float | None:
    """The coarsest step ``s > 0`` that puts every value on an integer grid (``w / s`` integral within a
    relative tolerance of 1e-6), searched up to ``max|w| / s = 2**16``; None when there is none.

    Every value is ``k_i * s``, so ``s = min|w| / q`` for a whole ``q``: the smallest ``q`` for which
    all ``q * |w| / min|w|`` are integers gives the coarsest grid."""
    a = np.unique(np.abs(np.asarray(values, dtype=np.float64)))
    a = a[a > 0]
    if not a.size:
        return None
    amin, amax = float(a[0]), float(a[-1])
    qmax = int(2 ** (GRID_BITS - 1) * amin / amax)
    probe = a if a.size <= 64 else a[np.linspace(0, a.size - 1, 64).astype(np.int64)]
    ratios = probe / amin
    for q0 in range(1, qmax + 1, 1024):
        qs = np.arange(q0, min(q0 + 1024, qmax + 1), dtype=np.float64)
        x = qs[:, None] * ratios[None, :]
        good = np.all(np.abs(x - np.rint(x)) <= REL_TOL * x, axis=1)
        for q in qs[good]:
            if _on_grid(a, amin / q):
                return amin / q
    return None


# -- connections as parts of a population's incoming synapses ----------------------------------

class _Part:
    """The synapses of one connection into its post population, rows = post neurons."""

    conn: Dense | Conv2d
    pre: Input | Neurons
    post: Neurons
    recurrent: bool
    base: int                       # global source id of the pre node's element 0
    fan_in: np.ndarray              # (n_post,) non-zero incoming synapses per post neuron
    u: np.ndarray | None = None     # sorted distinct non-zero weight values
    exact: bool = False             # u is known to hold every value (not just a sample's)
    quant = None                    # Quantization of the connection (None when avg pooling was folded in)
    n_values: int | None = None     # measured: distinct non-zero values
    bits: int | None = None         # measured: signed bits needed (None: off-grid or not measured)
    scale: float | None = None      # measured: the grid step the bits refer to

    @property
    def nnz(self) -> int:
        return int(self.fan_in.sum())

    def drop_zeros(self, known: bool = False) -> None:
        """Kernels count only their non-zero taps: nothing to drop."""

    @property
    def n_pre(self) -> int:
        return int(np.prod(self.pre.output_shape))


class _CsrPart(_Part):
    """Explicit synapses: a CSR matrix (Dense, or any connection with pooling folded in)."""

    def __init__(self, conn, w: sp.csr_array, pre, post, recurrent, base, quant):
        self.conn, self.pre, self.post, self.recurrent, self.base, self.quant = conn, pre, post, recurrent, base, quant
        if not w.has_canonical_format:
            w = w.copy()
            w.sum_duplicates()
        self._set(w)

    def _set(self, w: sp.csr_array) -> None:
        self.w = w
        self.ptr = w.indptr.astype(np.int64, copy=False)
        self.fan_in = np.diff(self.ptr)

    def drop_zeros(self, known: bool = False) -> None:
        """Drop stored zeros (pruned synapses are not synapses); ``known``: the value set says there are."""
        if known or np.count_nonzero(self.w.data) != self.w.data.size:
            w = self.w.copy()
            w.eliminate_zeros()
            self._set(w)
            if self.u is not None:
                self.u = self.u[self.u != 0]

    def window(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        """Source indices (pre-local) of rows ``s..e-1`` in row order, and the per-row counts."""
        return self.w.indices[self.ptr[s]:self.ptr[e]], self.fan_in[s:e]

    def fan_out(self) -> np.ndarray:
        return np.bincount(self.w.indices, minlength=self.n_pre)

    def sample_values(self) -> None:
        d = self.w.data
        step = max(1, d.size // SAMPLE)
        self.u = _checked(np.unique(d[::step]), self.conn.name)
        self.exact = step == 1
        if self.u.size > MAX_CODER:
            self.full_values()

    def full_values(self) -> None:
        self.u, self.exact = _checked(np.unique(self.w.data), self.conn.name), True

    def check(self, coder: _Coder) -> None:
        """Raise _Missing when a value lies outside ``u``."""
        d = self.w.data
        for a in range(0, d.size, CODE_CHUNK):
            if coder.codes(d[a:a + CODE_CHUNK]) is None:
                raise _Missing(self)

    def row_masks(self, coder: _Coder, table: np.ndarray) -> np.ndarray:
        """(n_post, words) bit sets of the values each row holds (bit j = j-th value network-wide)."""
        n, words = len(self.fan_in), table.shape[1]
        out = np.zeros((n, words), dtype=np.uint64)
        flat = table[:, 0].copy() if words == 1 else None
        for r0, r1 in _chunks(self.ptr, CODE_CHUNK):
            a, b = self.ptr[r0], self.ptr[r1]
            if a == b:
                continue
            c = coder.codes(self.w.data[a:b])
            if c is None:
                raise _Missing(self)
            rows = np.flatnonzero(self.fan_in[r0:r1]) + r0
            if flat is not None:
                out[rows, 0] = np.bitwise_or.reduceat(flat.take(c), self.ptr[rows] - a)
            else:
                out[rows] = np.bitwise_or.reduceat(table[c], self.ptr[rows] - a, axis=0)
        return out

    def row_codes(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, code) of every synapse, codes indexing ``values`` (all values network-wide)."""
        rows = np.repeat(np.arange(len(self.fan_in)), self.fan_in)
        return rows, np.searchsorted(values, self.w.data)


class _ConvPart(_Part):
    """A Conv2d counted analytically: fan-in and fan-out from the kernel's non-zero taps and the
    padding borders; the synapses of a range of neurons are generated on demand."""

    def __init__(self, conn: Conv2d, pre, post, recurrent, base):
        self.conn, self.pre, self.post, self.recurrent, self.base, self.quant = conn, pre, post, recurrent, base, conn.quant
        w = conn.weight
        self.c_out, self.c_in, self.kh, self.kw = w.shape
        _, self.h, self.w_in = conn.input_shape
        _, self.oh, self.ow = conn.output_shape
        nz = w != 0
        self.taps = [np.nonzero(nz[c]) for c in range(self.c_out)]       # (ci, ky, kx) per out channel
        vy = _valid(self.oh, self.kh, self.conn.stride[0], self.conn.padding[0], self.h)  # (oh, kh)
        vx = _valid(self.ow, self.kw, self.conn.stride[1], self.conn.padding[1], self.w_in)
        per_out = nz.sum(axis=1).astype(np.int64)                        # (c_out, kh, kw)
        self.fan_in = np.einsum("yk,ckl,xl->cyx", vy, per_out, vx).reshape(-1)
        self._per_in = nz.sum(axis=0).astype(np.int64)                   # (c_in, kh, kw)

    def window(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        return self._window(s, e, values=False)[:2]

    def _window(self, s: int, e: int, values: bool):
        plane = self.oh * self.ow
        sy, sx = self.conn.stride
        py, px = self.conn.padding
        ids, vals, counts = [], [], []
        for c in range(s // plane, (e - 1) // plane + 1 if e > s else s // plane):
            r0, r1 = max(s, c * plane) - c * plane, min(e, (c + 1) * plane) - c * plane
            rem = np.arange(r0, r1)
            ci, ky, kx = self.taps[c]
            iy = (rem // self.ow)[:, None] * sy - py + ky[None, :]
            ix = (rem % self.ow)[:, None] * sx - px + kx[None, :]
            ok = (iy >= 0) & (iy < self.h) & (ix >= 0) & (ix < self.w_in)
            ids.append(((ci[None, :] * self.h + iy) * self.w_in + ix)[ok])
            counts.append(ok.sum(axis=1))
            if values:
                vals.append(np.broadcast_to(self.conn.weight[c][ci, ky, kx], ok.shape)[ok])
        cat = lambda x, t: np.concatenate(x) if x else np.zeros(0, t)
        return cat(ids, np.int64), cat(counts, np.int64), (cat(vals, np.float64) if values else None)

    def explicit(self) -> sp.csr_array:
        ids, counts, vals = self._window(0, len(self.fan_in), values=True)
        ptr = np.concatenate([[0], np.cumsum(counts)])
        return sp.csr_array((vals, ids, ptr), shape=(len(self.fan_in), self.n_pre))

    def fan_out(self) -> np.ndarray:
        hy = _hits(self.h, self.kh, self.conn.stride[0], self.conn.padding[0], self.oh)  # (h, kh)
        hx = _hits(self.w_in, self.kw, self.conn.stride[1], self.conn.padding[1], self.ow)
        return np.einsum("ik,ckl,jl->cij", hy, self._per_in, hx).reshape(-1)

    def sample_values(self) -> None:
        w = self.conn.weight
        self.u, self.exact = _checked(np.unique(w[w != 0]), self.conn.name), True

    full_values = sample_values

    def check(self, coder: _Coder) -> None:
        return None

    def row_masks(self, coder: _Coder, table: np.ndarray) -> np.ndarray:
        w = self.conn.weight
        chan = np.zeros((self.c_out, table.shape[1]), dtype=np.uint64)
        for c in range(self.c_out):
            v = w[c][w[c] != 0]
            if v.size:
                chan[c] = np.bitwise_or.reduce(table[coder.codes(v)], axis=0)
        return np.repeat(chan, self.oh * self.ow, axis=0)

    def row_codes(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.conn.weight
        plane = self.oh * self.ow
        rows, codes = [], []
        for c in range(self.c_out):
            cc = np.searchsorted(values, np.unique(w[c][w[c] != 0]))
            r = np.arange(c * plane, (c + 1) * plane)
            rows.append(np.repeat(r, cc.size))
            codes.append(np.tile(cc, plane))
        return np.concatenate(rows), np.concatenate(codes)


def _valid(n_out: int, k: int, stride: int, pad: int, n_in: int) -> np.ndarray:
    """(n_out, k): output position o reads input o*stride - pad + tap inside the input."""
    pos = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :]
    return ((pos >= 0) & (pos < n_in)).astype(np.int64)


def _hits(n_in: int, k: int, stride: int, pad: int, n_out: int) -> np.ndarray:
    """(n_in, k): input position i is read through tap t by some output position."""
    o = np.arange(n_in)[:, None] + pad - np.arange(k)[None, :]
    return ((o % stride == 0) & (o >= 0) & (o // stride < n_out)).astype(np.int64)


def _checked(u: np.ndarray, name: str) -> np.ndarray:
    if u.size and not np.all(np.isfinite(u)):
        raise ModelError(f"weights of layer {name!r} contain NaN or infinity; fix the model's weights")
    return u


class _Stream:
    """The incoming synapses of one population: its parts merged row by row."""

    def __init__(self, pop: Neurons, parts: list[_Part]):
        self.pop, self.parts, self.n = pop, parts, pop.size
        self.fan_in = sum((p.fan_in for p in parts), np.zeros(self.n, dtype=np.int64))
        self.ptr = np.concatenate([[0], np.cumsum(self.fan_in)])
        self.offset = 0                 # global position of this stream's first synapse (set by the packer)

    def window(self, stamp: np.ndarray, s: int, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stamp view, source ids into it, per-row counts) for rows ``s..e-1``, synapses in stream order."""
        if not self.parts:
            return stamp, np.zeros(0, dtype=np.intp), np.zeros(e - s, dtype=np.int64)
        if len(self.parts) == 1:
            p = self.parts[0]
            ids, counts = p.window(s, e)
            return stamp[p.base:p.base + p.n_pre], ids, counts
        got = [p.window(s, e) for p in self.parts]
        counts = sum(c for _, c in got)
        offs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out = np.empty(int(counts.sum()), dtype=np.int64)
        rows = np.arange(e - s)
        for (ids, cnt), p in zip(got, self.parts):
            row = np.repeat(rows, cnt)
            within = np.arange(ids.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            out[offs[row] + within] = ids.astype(np.int64) + p.base
            offs = offs + cnt
        return stamp, out, counts


# -- packing ------------------------------------------------------------------------------------

def _end(ptr: np.ndarray, s: int, n: int, cap_n: int | None, cap_s: int | None) -> int:
    """Largest e <= n so that rows s..e-1 fit cap_n neurons and cap_s synapses (may be s)."""
    e = n if cap_n is None else min(n, s + cap_n)
    if cap_s is not None:
        e = min(e, int(np.searchsorted(ptr, ptr[s] + cap_s, side="right")) - 1)
    return max(e, s)


class _Packer:
    """The greedy core packing of the module docstring.

    Axons (distinct sources of a core) are counted with one stamp per source: a synapse at global
    position ``p`` on core ``c`` stamps ``c * BIG - p``; after ``np.maximum.at`` a source holds the
    stamp of its first synapse on the newest core, so ``stamp[src] == own stamp`` marks exactly one
    synapse per (source, core), with no sort and no reset between cores."""

    def __init__(self, spec: TargetSpec, n_sources: int, count_axons: bool, keep_pairs: bool):
        lim = spec.limits
        self.npc, self.spc, self.apc = lim.neurons_per_core, lim.synapses_per_core, lim.axons_per_core
        self.max_sets, self.share, self.shared = spec.core.max_parameter_sets, spec.core.share_layers, spec.core.shared
        self.count_axons = count_axons or self.apc is not None
        self.keep_pairs = keep_pairs
        self.stamp = np.full(n_sources, np.iinfo(np.int64).min, dtype=np.int64) if self.count_axons else None
        self.neurons: list[int] = []    # per core
        self.synapses: list[int] = []
        self.axons: list[int] = []
        self.nsets: list[int] = []      # distinct shared-parameter sets per core
        self.open = False               # the last core still takes neurons
        self.sets: set = set()          # shared-parameter sets on the last core
        self.pset: tuple = ()           # the set of the population being packed
        self.position = 0               # global position of the next stream's first synapse
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (global source, core) first occurrences
        self.id_type = np.int32 if n_sources < 2 ** 31 else np.int64

    @property
    def core(self) -> int:
        return len(self.neurons) - 1

    def _new_core(self) -> None:
        for lst in (self.neurons, self.synapses, self.axons):
            lst.append(0)
        self.nsets.append(1)
        self.sets, self.open = {self.pset}, True

    def _caps(self) -> tuple[int | None, int | None]:
        return (None if self.npc is None else self.npc - self.neurons[-1],
                None if self.spc is None else self.spc - self.synapses[-1])

    def pack(self, stream: _Stream) -> tuple[int, np.ndarray]:
        """Place ``stream``'s population; returns (its first core, row bounds of its cores)."""
        n, ptr = stream.n, stream.ptr
        stream.offset = self.position
        self.position += int(ptr[-1])
        self.pset = tuple(float(getattr(stream.pop, p)) for p in self.shared)
        if self.open and self.neurons[-1]:
            too_many_sets = (self.max_sets is not None and self.pset not in self.sets
                             and len(self.sets) >= self.max_sets)
            if not self.share or too_many_sets or (n and _end(ptr, 0, n, *self._caps()) == 0):
                self.open = False
        if n == 0:
            return len(self.neurons), np.zeros(1, dtype=np.int64)
        if not self.open:
            self._new_core()
        self.sets.add(self.pset)
        self.nsets[-1] = len(self.sets)
        first = self.core
        bounds = self._greedy(ptr, n)
        syn = np.diff(ptr[bounds])
        if self.apc is not None and max(syn[0] + self.axons[-1], syn.max()) > self.apc:
            return self._pack_by_core(stream)  # axons may bind: decide core by core
        sizes = np.diff(bounds).tolist()
        self.neurons[-1] += sizes[0]
        self.synapses[-1] += int(syn[0])
        if len(sizes) > 1:
            k = len(sizes) - 1
            self.neurons += sizes[1:]
            self.synapses += syn[1:].tolist()
            self.axons += [0] * k
            self.nsets += [1] * k
            self.sets = {self.pset}
        if self.count_axons:
            self._axons_batch(stream, bounds, first)
        return first, bounds

    def _greedy(self, ptr: np.ndarray, n: int) -> np.ndarray:
        """Core bounds from neurons_per_core and synapses_per_core alone (the open core first)."""
        bounds = [0, max(_end(ptr, 0, n, *self._caps()), 1)]
        if bounds[-1] < n:
            rows = np.arange(n)
            nxt = np.full(n, n, dtype=np.int64) if self.npc is None else np.minimum(rows + self.npc, n)
            if self.spc is not None:
                nxt = np.minimum(nxt, np.searchsorted(ptr, ptr[:-1] + self.spc, side="right") - 1)
            nxt = np.maximum(nxt, rows + 1).tolist()
            s = bounds[-1]
            while s < n:
                s = nxt[s]
                bounds.append(s)
        return np.asarray(bounds, dtype=np.int64)

    def _axons_batch(self, stream: _Stream, bounds: np.ndarray, first: int) -> None:
        """Count the axons of cores already bounded, one numpy step per core (a stamp remembers only
        the newest core of a source, so cores cannot share a step)."""
        cptr = stream.ptr[bounds].tolist()
        for k in range(len(bounds) - 1):
            stv, ids, _ = stream.window(self.stamp, int(bounds[k]), int(bounds[k + 1]))
            hit = self._stamp(stv, ids, first + k, stream.offset + cptr[k])
            self._record(stream, ids, hit, first + k)
            self.axons[first + k] += int(np.count_nonzero(hit))

    @staticmethod
    def _stamp(stv: np.ndarray, ids: np.ndarray, core: int, pos0: int) -> np.ndarray:
        """Stamp synapses ``ids`` (global positions from pos0) on ``core``; True at first occurrences."""
        ids = ids.astype(np.intp, copy=False)  # ufunc.at takes its fast path with native indices only
        vals = np.arange(core * BIG - pos0, core * BIG - pos0 - ids.size, -1, dtype=np.int64)
        np.maximum.at(stv, ids, vals)
        return stv.take(ids) == vals

    def _record(self, stream: _Stream, ids: np.ndarray, hit: np.ndarray, core: int) -> None:
        if not self.keep_pairs:
            return
        src = ids[hit].astype(self.id_type)
        if len(stream.parts) == 1:
            src += stream.parts[0].base
        self.pairs.append((src, np.full(src.size, core, dtype=np.int32)))

    def _pack_by_core(self, stream: _Stream) -> tuple[int, np.ndarray]:
        """Core-by-core packing when axons_per_core may bind: grow a window of rows, stamp it, cut at
        the first row whose new sources exceed the core's axon budget."""
        n, ptr = stream.n, stream.ptr
        bounds: list[int] = []
        first, s, guess = None, 0, 64
        while s < n:
            empty = self.neurons[-1] == 0
            e_c = _end(ptr, s, n, *self._caps())
            if e_c == s:
                if not empty:
                    self._new_core()
                    continue
                e_c = s + 1
            e = self._axon_cut(stream, s, e_c, guess, force=empty)
            if e == s:
                self._new_core()
                continue
            if first is None:
                first = self.core
            bounds.append(s)
            self.neurons[-1] += e - s
            self.synapses[-1] += int(ptr[e] - ptr[s])
            guess = max(8, (e - s) + (e - s) // 8 + 1)
            s = e
            if s < n:
                self._new_core()
        bounds.append(n)
        return first, np.asarray(bounds, dtype=np.int64)

    def _axon_cut(self, stream: _Stream, s: int, e_c: int, guess: int, force: bool) -> int:
        """Largest e <= e_c with rows s..e-1 within the open core's axon budget (at least s + 1
        when ``force``); stamps and records the rows it takes."""
        core, ptr, fill = self.core, stream.ptr, self.axons[-1]
        cur, step = s, guess
        while True:
            e_try = min(e_c, cur + step)
            stv, ids, counts = stream.window(self.stamp, cur, e_try)
            hit = self._stamp(stv, ids, core, stream.offset + int(ptr[cur]))
            ends = np.cumsum(counts)
            new = np.zeros(len(counts), dtype=np.int64)                 # new sources per row
            full = np.flatnonzero(counts)
            if full.size:
                new[full] = np.add.reduceat(hit, ends[full] - counts[full], dtype=np.int64)
            cum = fill + np.cumsum(new)                                 # axons after each row
            k = int(np.searchsorted(cum, self.apc, side="right"))
            if k == 0 and cur == s and force:
                k = 1
            taken = int(ends[k - 1]) if k else 0
            self._record(stream, ids[:taken], hit[:taken], core)
            if k < e_try - cur:
                self.axons[-1] = int(cum[k - 1]) if k else fill
                return cur + k
            fill, cur = int(cum[-1]), e_try
            if cur == e_c:
                self.axons[-1] = fill
                return cur
            step *= 2


# -- the check ----------------------------------------------------------------------------------

def verify(network: Network, target: TargetSpec | str | Path) -> FitReport:
    """Check whether ``network`` fits ``target``: a TargetSpec, a registered target name, or a path
    to a target spec (``.toml``).

    :returns: a :class:`FitReport` with one row per limit the target declares; ``report.ok`` is
        True when every row is within its limit.
    :raises UnknownTargetError: ``target`` names no registered target.
    :raises ModelError: the network's structure cannot be measured (e.g. a connection whose input
        size does not match its source).
    """
    if isinstance(target, (str, Path)):
        from .plugins import get_target

        target = get_target(target)
    if not isinstance(target, TargetSpec):
        raise ModelError(f"target {target!r} is neither a TargetSpec nor a target name; pass e.g. 'loihi2'")
    if not isinstance(network, Network):
        raise ModelError(f"verify needs a spikefit.Network, got {type(network).__name__}; "
                         f"read a model with spikefit.read_nir(path)")
    return _Check(network, target).run()


class _Check:
    def __init__(self, net: Network, spec: TargetSpec):
        self.net, self.spec, self.lim = net, spec, spec.limits
        order = net.topological_order()
        self.pops = [net.nodes[n] for n in order if isinstance(net.nodes[n], Neurons)]
        self.inputs = [net.nodes[n] for n in order if isinstance(net.nodes[n], Input)]
        self.base: dict[str, int] = {}
        total = 0
        for node in self.inputs + self.pops:
            self.base[node.name] = total
            total += int(np.prod(node.output_shape))
        self.n_sources = total
        self.parts = [self._part(sl) for sl in net.synapse_layers()]
        self.streams: list[_Stream] = []     # built once stored zeros are dropped

    def _incoming(self, pop: Neurons) -> list[_Part]:
        return [q for q in self.parts if q.post is pop]

    def _part(self, sl) -> _Part:
        conn, pre = sl.conn, sl.pre
        n_pre = int(np.prod(pre.output_shape))
        path, node = [], self.net.predecessors(conn.name)[0]
        while isinstance(self.net.nodes[node], (Flatten, Pool2d)):
            path.append(self.net.nodes[node])
            node = self.net.predecessors(node)[0]
        pools = [p for p in reversed(path) if isinstance(p, Pool2d)]
        n_in = int(np.prod(conn.input_shape))
        base = self.base[pre.name]
        if pools:
            fold = pool_matrix(pools[0])
            for p in pools[1:]:
                fold = pool_matrix(p) @ fold
            if fold.shape != (n_in, n_pre):
                raise ModelError(f"pooling before layer {conn.name!r} maps {fold.shape[1]} inputs to {fold.shape[0]}, "
                                 f"but its source {pre.name!r} has {n_pre} and the layer reads {n_in}; fix the shapes")
            w = (conn.csr() if isinstance(conn, Dense) else _ConvPart(conn, pre, sl.post, sl.recurrent, base).explicit())
            quant = conn.quant if all(p.kind_ == "sum" for p in pools) else None
            return _CsrPart(conn, sp.csr_array(w @ fold), pre, sl.post, sl.recurrent, base, quant)
        if n_in != n_pre:
            raise ModelError(f"layer {conn.name!r} reads {n_in} inputs but its source {pre.name!r} has {n_pre}; fix the shapes")
        if isinstance(conn, Conv2d):
            return _ConvPart(conn, pre, sl.post, sl.recurrent, base)
        return _CsrPart(conn, conn.csr(), pre, sl.post, sl.recurrent, base, conn.quant)

    # -- measuring --------------------------------------------------------------------------
    def run(self) -> FitReport:
        lim = self.lim
        values = None
        if lim.weight_bits is not None or lim.unique_weights is not None:
            values = self._values(per_neuron=lim.unique_weights is not None
                                  and lim.unique_weights_scope in ("neuron", "core"))
        else:
            for part in self.parts:
                part.drop_zeros()
        self.streams = [_Stream(p, self._incoming(p)) for p in self.pops]
        fan_out = {p.name: np.zeros(p.size, dtype=np.int64) for p in self.pops}
        part_fan_out = []
        for part in self.parts:
            fo = part.fan_out()
            part_fan_out.append(int(fo.max(initial=0)))
            if isinstance(part.pre, Neurons):
                fan_out[part.pre.name] += fo
        by_cores = lim.fan_out is not None and lim.fan_out_unit == "cores"
        pairs_needed = lim.fan_out_cores is not None or by_cores
        packer = _Packer(self.spec, self.n_sources, count_axons=pairs_needed, keep_pairs=pairs_needed)
        self.placed = {s.pop.name: packer.pack(s) for s in self.streams}
        self.n_cores = len(packer.neurons)
        rows = self._rows(packer, fan_out, values)

        n = max(self.n_cores, 1)
        neurons, synapses = np.asarray(packer.neurons), np.asarray(packer.synapses)
        axons = np.asarray(packer.axons) if packer.count_axons else None
        cores = CoreSummary(self.n_cores, int(neurons.max(initial=0)), float(neurons.sum() / n),
                            int(synapses.max(initial=0)), float(synapses.sum() / n),
                            None if axons is None else int(axons.max(initial=0)),
                            None if axons is None else float(axons.sum() / n))
        pops = [PopulationStats(s.pop.name, s.n, s.pop.model, self.placed[s.pop.name][0] if s.n else None,
                                len(self.placed[s.pop.name][1]) - 1, int(s.fan_in.max(initial=0)),
                                int(fan_out[s.pop.name].max(initial=0))) for s in self.streams]
        layers = [LayerStats(p.conn.name, p.conn.kind, p.pre.name, p.post.name, p.recurrent, p.nnz,
                             int(p.fan_in.max(initial=0)), fo, p.n_values, p.bits, p.scale)
                  for p, fo in zip(self.parts, part_fan_out)]
        return FitReport(self.spec.name, rows, cores, layers, pops, {k: b for k, (_, b) in self.placed.items()})

    def _rows(self, packer: _Packer, fan_out: dict[str, np.ndarray], values) -> list[Row]:
        """One row per declared limit, in the order of the spec schema."""
        lim, rows = self.lim, []
        if lim.neurons is not None:
            sizes = {p.name: p.size for p in self.pops}
            big = max(sizes, key=sizes.get, default=None)
            total = sum(sizes.values())
            rows.append(Row("neurons", total, lim.neurons, total <= lim.neurons, f"largest: layer {big}" if big else ""))
        if lim.cores is not None:
            over = self.n_cores > lim.cores
            rows.append(Row("cores", self.n_cores, lim.cores, not over, "",
                            f"the packing needs {self.n_cores} cores, the target has {lim.cores}" if over else ""))
        for name, per, limit in (("neurons_per_core", packer.neurons, lim.neurons_per_core),
                                 ("synapses_per_core", packer.synapses, lim.synapses_per_core),
                                 ("axons_per_core", packer.axons, lim.axons_per_core)):
            if limit is not None:
                rows.append(self._per_core_row(name, np.asarray(per, dtype=np.int64), limit))
        if lim.synapses is not None:
            nnz = [p.nnz for p in self.parts]
            worst = f"largest: layer {self.parts[int(np.argmax(nnz))].conn.name}" if nnz else ""
            rows.append(Row("synapses", int(sum(nnz)), lim.synapses, sum(nnz) <= lim.synapses, worst))
        if lim.fan_in is not None:
            rows.append(self._per_neuron_row("fan_in", {s.pop.name: s.fan_in for s in self.streams}, lim.fan_in,
                                             "incoming non-zero synapses"))
        src = np.concatenate([a for a, _ in packer.pairs]) if packer.pairs else np.zeros(0, np.int32)
        dst = np.concatenate([b for _, b in packer.pairs]) if packer.pairs else np.zeros(0, np.int32)
        if lim.fan_out is not None and lim.fan_out_unit == "cores":
            dest = np.bincount(src, minlength=self.n_sources)   # (source, core) pairs are distinct
            per = {p.name: dest[self.base[p.name]:self.base[p.name] + p.size] for p in self.pops}
            rows.append(self._per_neuron_row("fan_out (cores)", per, lim.fan_out, "distinct destination cores"))
        elif lim.fan_out is not None:
            rows.append(self._per_neuron_row("fan_out", fan_out, lim.fan_out, "outgoing non-zero synapses"))
        if lim.fan_out_cores is not None:
            rows.append(self._fan_out_cores_row(src, dst))
        if values is not None:
            rows += self._weight_rows(values)
        if lim.inputs is not None:
            n_in = sum(int(np.prod(i.shape)) for i in self.inputs)
            rows.append(Row("inputs", n_in, lim.inputs, n_in <= lim.inputs))
        if lim.outputs is not None:
            n_out = self._outputs()
            rows.append(Row("outputs", n_out, lim.outputs, n_out <= lim.outputs))
        rows += self._structure_rows()
        if self.spec.core.max_parameter_sets is not None:
            rows.append(self._per_core_row("parameter_sets", np.asarray(packer.nsets, dtype=np.int64),
                                           self.spec.core.max_parameter_sets))
        return rows

    # -- rows -------------------------------------------------------------------------------
    def _neuron(self, pop: str, i: int) -> str:
        shape = self.net.nodes[pop].shape
        where = f"layer {pop} neuron {i}"
        return where + (f" {tuple(int(x) for x in np.unravel_index(i, shape))}" if len(shape) > 1 else "")

    def _core(self, c: int) -> str:
        names = [n for n, (f, b) in self.placed.items() if len(b) > 1 and f <= c < f + len(b) - 1]
        return f"core {c} (layer{'s' if len(names) > 1 else ''} {', '.join(names)})"

    def _per_neuron_row(self, name: str, per: dict[str, np.ndarray], limit: int, what: str) -> Row:
        best, where, over, total = 0, "", 0, 0
        for pop, arr in per.items():
            if arr.size:
                i = int(np.argmax(arr))
                if arr[i] > best or not where:
                    best, where = int(arr[i]), self._neuron(pop, i)
                over += int(np.count_nonzero(arr > limit))
                total += arr.size
        detail = f"{over} of {total} neurons exceed {limit} {what}" if over else ""
        return Row(name, best, limit, best <= limit, where if best else "", detail)

    def _per_core_row(self, name: str, per: np.ndarray | None, limit: int, what: str = "") -> Row:
        """Largest per-core usage; ``what`` explains a failure (default: a single neuron too big for a core)."""
        if per is None or not per.size:
            return Row(name, 0, limit, True)
        c = int(np.argmax(per))
        usage = int(per[c])
        detail = ""
        if usage > limit:
            over = int(np.count_nonzero(per > limit))
            detail = f"{over} of {per.size} cores {what}" if what else (
                f"{over} of {per.size} cores exceed it: a neuron alone needs {usage}, more than one core holds")
        return Row(name, usage, limit, usage <= limit, self._core(c) if usage else "", detail)

    def _fan_out_cores_row(self, src: np.ndarray, post: np.ndarray) -> Row:
        """Distinct destination cores of each core, from the distinct (source, core) pairs."""
        limit = self.lim.fan_out_cores
        core_of = np.full(self.n_sources, self.n_cores, dtype=np.int32)  # inputs: an off-chip "core" n
        for p in self.pops:
            first, b = self.placed[p.name]
            if p.size:
                core_of[self.base[p.name]:self.base[p.name] + p.size] = \
                    first + np.searchsorted(b, np.arange(p.size), side="right") - 1
        per = _distinct_per_key(core_of.take(src), post, self.n_cores + 1)[:-1]
        return self._per_core_row("fan_out_cores", per, limit,
                                  f"send spikes to more than {limit} cores")

    def _outputs(self) -> int:
        pops = []
        for out in self.net.outputs:
            for pred in self.net.predecessors(out.name):
                src = self.net.nodes[pred]
                while isinstance(src, (Flatten, Pool2d)) and self.net.predecessors(src.name):
                    src = self.net.nodes[self.net.predecessors(src.name)[0]]
                if isinstance(src, Neurons) and src not in pops:
                    pops.append(src)
        if not pops and self.pops:
            pops = [self.pops[-1]]
        return sum(p.size for p in pops)

    def _structure_rows(self) -> list[Row]:
        spec, kinds = self.spec, set(self.spec.layers.kinds)
        accepted = kinds | ({"dense", "sparse"} if kinds & {"dense", "sparse"} else set())
        used, bad = [], []
        for name in self.net.topological_order():
            node = self.net.nodes[name]
            kind = getattr(node, "kind", None) if isinstance(node, (Dense, Conv2d, Flatten, Pool2d)) else None
            if kind is None:
                continue
            need = [kind] + (["recurrent"] if any(p.conn is node and p.recurrent for p in self.parts) else [])
            for k in need:
                if k not in used:
                    used.append(k)
                if k not in accepted and not bad:
                    bad.append(f"layer {name} ({k})")
        rows = [Row("layer_kinds", ", ".join(used) or "-", ", ".join(spec.layers.kinds), not bad, bad[0] if bad else "",
                    f"the target maps {', '.join(spec.layers.kinds)}" if bad else "")]
        convs = [c for c in self.net.connections() if isinstance(c, Conv2d)]
        for key, measure in (("max_kernel", lambda c: max(c.weight.shape[2:])),
                             ("max_channels", lambda c: max(c.weight.shape[:2]))):
            limit = getattr(spec.layers, key)
            if limit is not None:
                worst = max(convs, key=measure, default=None)
                usage = measure(worst) if worst is not None else 0
                rows.append(Row(key, usage, limit, usage <= limit, f"layer {worst.name}" if worst is not None else ""))
        order = ("if", "lif", "cuba-lif")
        models = [p.model for p in self.pops]
        top = max(models, key=order.index, default="-")
        bad = [p for p in self.pops if not spec.neuron.runs(p.model)]
        rows.append(Row("neuron_model", top, ", ".join(spec.neuron.models), not bad,
                        f"layer {bad[0].name} ({bad[0].model})" if bad else "",
                        f"{len(bad)} populations need a model the target does not run" if bad else ""))
        return rows

    # -- weights ----------------------------------------------------------------------------
    def _values(self, per_neuron: bool):
        """Value sets of every connection (verified against all synapses); with ``per_neuron`` also
        each population's per-neuron value sets: bit masks (few values) or (row, code) pairs."""
        for part in self.parts:
            part.sample_values()
        while True:
            for part in self.parts:                  # a zero in the value set: stored zeros to drop
                if np.any(part.u == 0):
                    part.drop_zeros(known=True)
            allv = np.unique(np.concatenate([p.u for p in self.parts])) if self.parts else np.zeros(0)
            try:
                if per_neuron and allv.size <= MAX_MASK_CODES:
                    return allv, self._masks(allv), None
                for part in self.parts:
                    if not part.exact:
                        part.check(_Coder(part.u))
                        part.exact = True
                if per_neuron:
                    return allv, None, self._pairs(allv)
                return allv, None, None
            except _Missing as miss:
                miss.part.full_values()

    def _masks(self, allv: np.ndarray) -> dict[str, np.ndarray]:
        words = max(1, -(-allv.size // 64))
        table = np.zeros((allv.size, words), dtype=np.uint64)
        j = np.arange(allv.size)
        table[j, j // 64] = np.left_shift(np.uint64(1), (j % 64).astype(np.uint64))
        masks = {}
        for pop in self.pops:
            m = np.zeros((pop.size, words), dtype=np.uint64)
            for part in self._incoming(pop):
                m |= part.row_masks(_Coder(part.u), table[np.searchsorted(allv, part.u)])
                part.exact = True
            masks[pop.name] = m
        return masks

    def _pairs(self, allv: np.ndarray) -> dict[str, np.ndarray]:
        """Unique ``row * K + code`` keys of every population (K = number of values network-wide)."""
        k = max(allv.size, 1)
        out = {}
        for pop in self.pops:
            keys = [r.astype(np.int64) * k + c for r, c in (p.row_codes(allv) for p in self._incoming(pop))]
            out[pop.name] = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        return out

    def _weight_rows(self, values) -> list[Row]:
        allv, masks, pairs = values
        lim, rows = self.lim, []
        for part in self.parts:
            part.n_values = int(part.u.size)
        if lim.weight_bits is not None:
            rows.append(self._bits_row(allv))
        if lim.unique_weights is None:
            return rows
        scope, m = lim.unique_weights_scope, lim.unique_weights
        name = f"unique_weights (per {scope})"
        fix = "cluster the weights to a codebook (e.g. spikefit fit)"
        if scope == "chip":
            rows.append(Row(name, int(allv.size), m, allv.size <= m, "chip",
                            f"the network uses {allv.size} distinct non-zero weights; {fix}" if allv.size > m else ""))
        elif scope == "layer":
            counts = {p.conn.name: p.n_values for p in self.parts}
            worst = max(counts, key=counts.get, default=None)
            usage = counts.get(worst, 0)
            over = sum(v > m for v in counts.values())
            rows.append(Row(name, usage, m, usage <= m, f"layer {worst}" if worst else "",
                            f"{over} layers exceed it; {fix}" if over else ""))
        elif scope == "neuron":
            per = {}
            for s in self.streams:
                if masks is not None:
                    per[s.pop.name] = _popcount(masks[s.pop.name])
                else:
                    kk = max(allv.size, 1)
                    per[s.pop.name] = np.bincount(pairs[s.pop.name] // kk, minlength=s.n)
            row = self._per_neuron_row(name, per, m, "distinct non-zero incoming weights")
            if not row.ok:
                row.detail += f"; {fix}"
            rows.append(row)
        else:  # core
            per = self._per_core_values(allv, masks, pairs)
            rows.append(self._per_core_row(name, per, m, f"hold more than {m} distinct non-zero weights; {fix}"))
        return rows

    def _per_core_values(self, allv, masks, pairs) -> np.ndarray:
        n = self.n_cores
        if masks is not None:
            words = next(iter(masks.values())).shape[1] if masks else 1
            core_masks = np.zeros((n, words), dtype=np.uint64)
            for s in self.streams:
                first, b = self.placed[s.pop.name]
                if s.n:
                    core_masks[first:first + len(b) - 1] |= np.bitwise_or.reduceat(masks[s.pop.name], b[:-1], axis=0)
            return _popcount(core_masks)
        kk = max(allv.size, 1)
        keys = []
        for s in self.streams:
            first, b = self.placed[s.pop.name]
            rk = pairs[s.pop.name]
            core = first + np.searchsorted(b, rk // kk, side="right") - 1
            keys.append(core * kk + rk % kk)
        keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        return np.bincount(keys // kk, minlength=n)

    def _bits_row(self, allv: np.ndarray) -> Row:
        lim, scaling = self.lim, self.lim.weight_scaling
        chip_scale = None
        if scaling == "chip":
            scales = {p.quant.scale for p in self.parts if p.quant is not None}
            if len(scales) == 1 and all(p.quant is not None for p in self.parts):
                chip_scale = scales.pop()
            else:
                chip_scale = grid_step(allv)
        off, best, worst = [], 0, ""
        for part in self.parts:
            if not part.u.size:
                part.bits, part.scale = 0, None
                continue
            if scaling == "none":
                s, why = 1.0, "are not integers; this target stores raw integer weights (weight_scaling = none)"
            elif scaling == "chip":
                s, why = chip_scale, "share no integer grid with the other layers (weight_scaling = chip)"
            elif part.quant is not None:
                s, why = part.quant.scale, f"are not multiples of the layer's quantization scale {part.quant.scale:g}"
            else:
                s, why = grid_step(part.u), "are not on an integer grid"
            if s is None or not _on_grid(part.u, s):
                part.bits, part.scale = None, None
                off.append((part.conn.name, why))
                continue
            k = np.rint(part.u / s)
            part.bits, part.scale = _bits(int(k.min()), int(k.max())), float(s)
            if part.bits > best:
                best, worst = part.bits, f"layer {part.conn.name} (scale {s:g})"
        if off:
            name, why = off[0]
            return Row("weight_bits", None, lim.weight_bits, False, f"layer {name}",
                       f"weights of layer {name} {why}; quantize them (e.g. spikefit fit)")
        detail = f"the largest weight needs {best} signed bits" if best > lim.weight_bits else ""
        return Row("weight_bits", best, lim.weight_bits, best <= lim.weight_bits, worst, detail)


def _distinct_per_key(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """For keys ``a`` in 0..n-1 and non-decreasing ``b`` in 0..n-1: the number of distinct ``b`` of each
    ``a`` (pairs need not be distinct). The pairs are stamped block by block of ``b`` in a table of (block rows x n) slots, with the
    stamp trick of :class:`_Packer` (a newer block's stamps win, so the table is never cleared)."""
    counts = np.zeros(n, dtype=np.int64)
    rows = max(1, (1 << 19) // max(n, 1))                # a 4 MB table stays in cache
    stamp = np.full(rows * n, np.iinfo(np.int64).min, dtype=np.int64)
    starts = np.searchsorted(b, np.arange(0, n + rows, rows)).tolist()
    for blk, (i0, i1) in enumerate(zip(starts[:-1], starts[1:])):
        if i0 == i1:
            continue
        key = (b[i0:i1] - blk * rows).astype(np.int64) * n + a[i0:i1]
        vals = np.arange(blk * BIG - i0, blk * BIG - i1, -1, dtype=np.int64)
        np.maximum.at(stamp, key, vals)
        counts += np.bincount(a[i0:i1][stamp.take(key) == vals], minlength=n)
    return counts


def _popcount(m: np.ndarray) -> np.ndarray:
    """Set bits per row of an (n, words) uint64 array."""
    m = np.ascontiguousarray(m)
    return _POP8[m.view(np.uint8)].reshape(len(m), -1).sum(axis=1)
