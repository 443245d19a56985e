"""Triton kernels for CAT's hard quantizer with one codebook row (layer or chip scope; CUDA only,
imported lazily by :mod:`spikefit.quantizers`).

The torch path of :meth:`spikefit.quantizers.CodebookQuantizer.forward` is some twenty small
operations forward and as many backward (round the codebook onto the grid, append the zero level,
sort, midpoints, bucketize, gather, one masked sum per level). On a GPU each is a launch, so a small
layer pays a fixed cost several times its matrix product. Here the same arithmetic is one launch
forward and one back (two for layers of more than ``SINGLE`` weights):

* ``_assign``: each program computes the levels itself (``_levels``: the codebook's integers
  ``clamp(round(c / scale))`` with 0 moved away from zero, times ``scale``; the zero level appended;
  a stable rank sort of the at most 32 levels; the midpoints between neighbours), then every weight's
  sorted position is the number of midpoints below it (``bucketize``) and its value and codebook
  index are looked up there.
* ``_level_grad``: the incoming gradient summed per level, by one program, which also applies the
  rounding's straight-through mask (``_centroid_grad``); over ``SINGLE`` weights, each of up to
  ``MAX_PROGRAMS`` programs writes a row of partial sums and ``_finish`` adds them. No atomics: the
  sums are deterministic.

Rounding is round-half-to-even through the float32 ``+ 1.5 * 2^23`` trick and divisions are
IEEE-rounded (``div_rn``); with fused multiply-add off the levels, midpoints and assignments equal
the CPU path's bit for bit (``tests/test_quant_triton.py``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024
MAX_PROGRAMS = 1024        # programs of the gradient sum: each loops over its share of the blocks
ROUND = 12582912.0         # 1.5 * 2^23: x + ROUND - ROUND rounds a float32 |x| < 2^22 half to even
LIMIT = 4194304.0          # 2^22


@triton.jit
def _levels(c_ptr, scale, qmin, qmax, M, HAS_GRID: tl.constexpr, ZERO: tl.constexpr, LP: tl.constexpr):
    """The (LP,) levels (codebook values on the grid, the zero level at index M, padding +inf), their
    stable ascending ranks, the value of the next level up and the rounding's straight-through mask."""
    k = tl.arange(0, LP)
    c = tl.load(c_ptr + k, mask=k < M, other=0.0)
    if HAS_GRID:
        x = tl.div_rn(c, scale)
        x = tl.minimum(tl.maximum(x, -4194304.0), 4194304.0)
        r = (x + 12582912.0) - 12582912.0
        q = tl.minimum(tl.maximum(r, qmin), qmax)
        q = tl.where(q == 0.0, tl.where(x >= 0.0, 1.0, -1.0), q)
        v = q * scale
        g = ((r >= qmin) & (r <= qmax)).to(tl.float32)
    else:
        v = c
        g = tl.full([LP], 1.0, tl.float32)
    L = M + ZERO
    v = tl.where(k < M, v, 0.0)                   # the zero level, at index M
    v = tl.where(k < L, v, float("inf"))          # padding sorts last
    before = (v[None, :] < v[:, None]) | ((v[None, :] == v[:, None]) & (k[None, :] < k[:, None]))
    rank = tl.sum(before.to(tl.int32), axis=1)    # stable ascending rank of every level
    nxt = tl.sum(tl.where(rank[None, :] == rank[:, None] + 1, v[None, :], 0.0), axis=1)
    return k, v, rank, nxt, g, L


@triton.jit
def _assign(w_ptr, c_ptr, out_ptr, idx_ptr, n, scale, qmin, qmax, M,
            HAS_GRID: tl.constexpr, ZERO: tl.constexpr, LP: tl.constexpr, BLOCK: tl.constexpr):
    """Every weight's level: its sorted position is the number of midpoints below it (bucketize)."""
    k, v, rank, nxt, g, L = _levels(c_ptr, scale, qmin, qmax, M, HAS_GRID, ZERO, LP)
    mid = tl.where(rank < L - 1, (nxt + v) * 0.5, float("inf"))   # the midpoint above each level
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    w = tl.load(w_ptr + offs, mask=ok, other=0.0)
    pos = tl.sum((mid[None, :] < w[:, None]).to(tl.int32), axis=1)           # (BLOCK,) sorted position
    hit = rank[None, :] == pos[:, None]                                        # (BLOCK, LP) one-hot
    tl.store(out_ptr + offs, tl.sum(tl.where(hit, v[None, :], 0.0), axis=1), mask=ok)
    tl.store(idx_ptr + offs, tl.sum(tl.where(hit, k[None, :], 0), axis=1).to(tl.int8), mask=ok)


@triton.jit
def _level_grad(g_ptr, idx_ptr, part_ptr, out_ptr, c_ptr, n, per, scale, qmin, qmax, M,
                HAS_GRID: tl.constexpr, ZERO: tl.constexpr, ONE: tl.constexpr, LP: tl.constexpr,
                BLOCK: tl.constexpr):
    """Each program sums the gradient per level over ``per`` blocks: into its row of ``part``, or,
    as the only program (``ONE``), straight into the centroid gradient."""
    pid = tl.program_id(0)
    lv = tl.arange(0, LP)
    acc = tl.zeros([LP], dtype=tl.float32)
    for b in range(per):
        offs = (pid.to(tl.int64) * per + b) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < n
        g = tl.load(g_ptr + offs, mask=ok, other=0.0)
        i = tl.load(idx_ptr + offs, mask=ok, other=-1).to(tl.int32)
        acc += tl.sum(tl.where(i[:, None] == lv[None, :], g[:, None], 0.0), axis=0)
    if ONE:
        _centroid_grad(acc, out_ptr, c_ptr, scale, qmin, qmax, M, HAS_GRID, ZERO, LP)
    else:
        tl.store(part_ptr + pid * LP + lv, acc)


@triton.jit
def _finish(part_ptr, out_ptr, c_ptr, programs, scale, qmin, qmax, M,
            HAS_GRID: tl.constexpr, ZERO: tl.constexpr, LP: tl.constexpr):
    lv = tl.arange(0, LP)
    acc = tl.zeros([LP], dtype=tl.float32)
    for p in range(programs):
        acc += tl.load(part_ptr + p * LP + lv)
    _centroid_grad(acc, out_ptr, c_ptr, scale, qmin, qmax, M, HAS_GRID, ZERO, LP)


@triton.jit
def _centroid_grad(acc, out_ptr, c_ptr, scale, qmin, qmax, M, HAS_GRID: tl.constexpr, ZERO: tl.constexpr,
                   LP: tl.constexpr):
    """values = integers * scale, integers = clamp(round_ste(c / scale)): d/dc = (g * s) / s where the
    rounded value lies inside the grid, else 0."""
    k, v, rank, nxt, g, L = _levels(c_ptr, scale, qmin, qmax, M, HAS_GRID, ZERO, LP)
    if HAS_GRID:
        acc = tl.div_rn(acc * scale, scale)
    tl.store(out_ptr + k, acc * g, mask=k < M)


def _lp(L: int) -> int:
    return max(triton.next_power_of_2(L), 2)


def _block(lp: int) -> int:
    """Weights per program: a (BLOCK, LP) comparison stays at 8,192 values."""
    return max(BLOCK * 8 // lp, 128)


SINGLE = 2 ** 20           # up to this many weights the gradient sum is one program (one launch)


class HardQuantize(torch.autograd.Function):
    """``(rows, centers (1, M)) -> q``: every weight on its nearest level, straight-through to the
    weight, the level gradients summed into the centroids (as the torch path computes them)."""

    @staticmethod
    def forward(ctx, rows, centers, scale, grid, zero):
        M = centers.shape[-1]
        has_grid = scale is not None
        qmin, qmax = grid if has_grid else (0, 0)
        meta = dict(HAS_GRID=has_grid, ZERO=int(zero), LP=_lp(M + int(zero)))
        args = (float(scale or 1.0), float(qmin), float(qmax), M)
        c = centers.detach().float().contiguous()
        w = rows.detach().float().contiguous()
        n = w.numel()
        out = torch.empty_like(w)
        idx = torch.empty(w.shape, device=w.device, dtype=torch.int8)
        block = _block(meta["LP"])
        _assign[(triton.cdiv(n, block),)](w, c, out, idx, n, *args, **meta, BLOCK=block, enable_fp_fusion=False)
        ctx.save_for_backward(idx, c)
        ctx.meta, ctx.args = meta, args
        return out

    @staticmethod
    def backward(ctx, grad):
        idx, c = ctx.saved_tensors
        meta, args = ctx.meta, ctx.args
        g = grad.contiguous().float()
        n = g.numel()
        block = _block(meta["LP"])
        blocks = triton.cdiv(n, block)
        programs = 1 if n <= SINGLE else min(blocks, MAX_PROGRAMS)
        per = triton.cdiv(blocks, programs)
        gc = torch.empty((1, args[-1]), device=g.device, dtype=torch.float32)
        part = gc if programs == 1 else torch.empty((programs, meta["LP"]), device=g.device, dtype=torch.float32)
        _level_grad[(programs,)](g, idx, part, gc, c, n, per, *args, **meta, ONE=programs == 1, BLOCK=block,
                                 enable_fp_fusion=False)
        if programs > 1:
            _finish[(1,)](part, gc, c, programs, *args, **meta, enable_fp_fusion=False)
        return grad, gc, None, None, None


def hard_quantize(rows: torch.Tensor, centers: torch.Tensor, scale: float | None, grid, zero: bool) -> torch.Tensor:
    return HardQuantize.apply(rows, centers, scale, grid, zero)
