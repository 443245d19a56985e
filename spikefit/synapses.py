"""The incoming synapses of every population, measured vectorised: one part per connection.

A :class:`SynapseGraph` turns a :class:`~spikefit.network.Network` into parts (a CSR matrix, or a
convolution counted analytically) with their fan-in, fan-out and weight values, merged per population
into streams. The placement (:mod:`spikefit.placement`) and the fit check (:mod:`spikefit.fitcheck`)
both read it, so they count the same synapses.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .errors import ModelError
from .fixedpoint import pool_matrix
from .network import Conv2d, Dense, Flatten, Input, Network, Neurons, Pool2d

CODE_CHUNK = 1 << 18     # weight values hashed per numpy step: its temporaries stay in cache
SAMPLE = 1 << 13         # weight values sampled to guess a connection's value set (then checked)
MAX_CODER = 4096         # value sets up to this size get a hash coder; larger ones are sorted
GRID_BITS = 17           # integer grids are searched up to max|w|/s = 2**(GRID_BITS - 1)
REL_TOL = 1e-6           # w/s counts as an integer within this relative tolerance
_MAGICS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
           0xFF51AFD7ED558CCD, 0x94D049BB133111EB)


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
        # columns index the convolution's own input (after any pooling), not its spiking source
        return sp.csr_array((vals, ids, ptr), shape=(len(self.fan_in), int(np.prod(self.conn.input_shape))))

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

    @classmethod
    def empty(cls, n: int, pop) -> "_Stream":
        """``n`` neurons with no synapses and ``pop``'s shared parameters (du, dv, vth): for counting cores."""
        s = cls.__new__(cls)
        s.pop, s.parts, s.n, s.offset = pop, [], int(n), 0
        s.fan_in = np.zeros(s.n, dtype=np.int64)
        s.ptr = np.zeros(s.n + 1, dtype=np.int64)
        return s

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



# -- the graph ----------------------------------------------------------------------------------

class SynapseGraph:
    """Populations, spike sources and synapse parts of a network, built once and shared by the
    placement and the fit check. Sources (inputs, then populations, in topological order) get global
    ids ``base[name] + index``."""

    def __init__(self, net: Network):
        self.net = net
        order = net.topological_order()
        self.pops: list[Neurons] = [net.nodes[n] for n in order if isinstance(net.nodes[n], Neurons)]
        self.inputs: list[Input] = [net.nodes[n] for n in order if isinstance(net.nodes[n], Input)]
        self.base: dict[str, int] = {}
        total = 0
        for node in self.inputs + self.pops:
            self.base[node.name] = total
            total += int(np.prod(node.output_shape))
        self.n_sources = total
        self.parts: list[_Part] = [self._part(sl) for sl in net.synapse_layers()]
        self._streams: list[_Stream] | None = None

    def incoming(self, pop: Neurons) -> list[_Part]:
        return [q for q in self.parts if q.post is pop]

    @property
    def streams(self) -> list[_Stream]:
        """Each population's incoming synapses merged row by row (stored zeros dropped first)."""
        if self._streams is None:
            for part in self.parts:
                part.drop_zeros()
            self._streams = [_Stream(p, self.incoming(p)) for p in self.pops]
        return self._streams

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
