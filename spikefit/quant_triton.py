"""Triton kernels for CAT's hard quantizer with one codebook row (layer or chip scope; CUDA only,
imported lazily by :mod:`spikefit.quantizers`).

The torch path of :meth:`spikefit.quantizers.CodebookQuantizer.forward` is some twenty small
operations forward and as many backward (round the codebook onto the grid, append the zero level,
sort, midpoints, bucketize, gather, one masked sum per level). On a GPU each is a launch, so a small
layer pays a fixed cost several times its matrix product. Here the same arithmetic is four launches:

* ``_levels``: one program. The codebook's integers ``clamp(round(c / scale))`` (0 moved away from
  zero), times ``scale``; the zero level appended; a stable rank sort of the (at most 17) levels;
  the midpoints between neighbours.
* ``_assign``: every weight's sorted position is the number of midpoints below it (``bucketize``),
  its value and its codebook index are looked up there.
* ``_level_grad``: each program sums the incoming gradient per level over its blocks into one row
  of partial sums (no atomics: the sums are deterministic).
* ``_finish``: one program adds the rows and applies the rounding's straight-through mask.

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
def _levels(c_ptr, srt_ptr, order_ptr, mid_ptr, gmask_ptr, scale, qmin, qmax, M,
            HAS_GRID: tl.constexpr, ZERO: tl.constexpr, LP: tl.constexpr):
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
    vi = v[:, None]
    vj = v[None, :]
    ki = k[:, None]
    kj = k[None, :]
    before = (vj < vi) | ((vj == vi) & (kj < ki))
    rank = tl.sum(before.to(tl.int32), axis=1)    # stable ascending rank of every level
    nxt = tl.sum(tl.where(rank[None, :] == rank[:, None] + 1, vj, 0.0), axis=1)
    ok = k < L
    tl.store(srt_ptr + rank, v, mask=ok)
    tl.store(order_ptr + rank, k, mask=ok)
    tl.store(mid_ptr + rank, (nxt + v) * 0.5, mask=ok & (rank < L - 1))
    tl.store(gmask_ptr + k, g, mask=k < M)


@triton.jit
def _assign(w_ptr, srt_ptr, order_ptr, mid_ptr, out_ptr, idx_ptr, n, L: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    w = tl.load(w_ptr + offs, mask=ok, other=0.0)
    pos = tl.zeros([BLOCK], dtype=tl.int32)
    for k in tl.static_range(L - 1):
        pos += (tl.load(mid_ptr + k) < w).to(tl.int32)
    tl.store(out_ptr + offs, tl.load(srt_ptr + pos), mask=ok)
    tl.store(idx_ptr + offs, tl.load(order_ptr + pos).to(tl.int8), mask=ok)


@triton.jit
def _level_grad(g_ptr, idx_ptr, part_ptr, n, per, LP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    lv = tl.arange(0, LP)
    acc = tl.zeros([LP], dtype=tl.float32)
    for b in range(per):
        offs = (pid.to(tl.int64) * per + b) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < n
        g = tl.load(g_ptr + offs, mask=ok, other=0.0)
        i = tl.load(idx_ptr + offs, mask=ok, other=-1).to(tl.int32)
        acc += tl.sum(tl.where(i[:, None] == lv[None, :], g[:, None], 0.0), axis=0)
    tl.store(part_ptr + pid * LP + lv, acc)


@triton.jit
def _finish(part_ptr, gmask_ptr, out_ptr, programs, scale, M, HAS_GRID: tl.constexpr, LP: tl.constexpr):
    lv = tl.arange(0, LP)
    acc = tl.zeros([LP], dtype=tl.float32)
    for p in range(programs):
        acc += tl.load(part_ptr + p * LP + lv)
    if HAS_GRID:   # values = integers * scale, integers = round_ste(c / scale): d/dc = (g * s) / s
        acc = tl.div_rn(acc * scale, scale)
    acc = acc * tl.load(gmask_ptr + lv, mask=lv < M, other=0.0)
    tl.store(out_ptr + lv, acc, mask=lv < M)


def _lp(L: int) -> int:
    return max(triton.next_power_of_2(L), 2)


class HardQuantize(torch.autograd.Function):
    """``(rows, centers (1, M)) -> q``: every weight on its nearest level, straight-through to the
    weight, the level gradients summed into the centroids (as the torch path computes them)."""

    @staticmethod
    def forward(ctx, rows, centers, scale, grid, zero):
        M = centers.shape[-1]
        L = M + int(zero)
        LP = _lp(L)
        dev = rows.device
        srt = torch.empty(L, device=dev, dtype=torch.float32)
        order = torch.empty(L, device=dev, dtype=torch.int32)
        mid = torch.empty(max(L - 1, 1), device=dev, dtype=torch.float32)
        gmask = torch.empty(M, device=dev, dtype=torch.float32)
        has_grid = scale is not None
        qmin, qmax = grid if has_grid else (0, 0)
        _levels[(1,)](centers.detach().float().contiguous(), srt, order, mid, gmask, float(scale or 1.0),
                      float(qmin), float(qmax), M, HAS_GRID=has_grid, ZERO=int(zero), LP=LP, enable_fp_fusion=False)
        w = rows.detach().float().contiguous()
        n = w.numel()
        out = torch.empty_like(w)
        idx = torch.empty(w.shape, device=dev, dtype=torch.int8)
        _assign[(triton.cdiv(n, BLOCK),)](w, srt, order, mid, out, idx, n, L=L, BLOCK=BLOCK, enable_fp_fusion=False)
        ctx.save_for_backward(idx, gmask)
        ctx.meta = (M, LP, float(scale or 1.0), has_grid)
        return out

    @staticmethod
    def backward(ctx, grad):
        idx, gmask = ctx.saved_tensors
        M, LP, scale, has_grid = ctx.meta
        g = grad.contiguous().float()
        n = g.numel()
        blocks = triton.cdiv(n, BLOCK)
        programs = min(blocks, MAX_PROGRAMS)
        per = triton.cdiv(blocks, programs)
        part = torch.empty((programs, LP), device=g.device, dtype=torch.float32)
        _level_grad[(programs,)](g, idx, part, n, per, LP=LP, BLOCK=BLOCK)
        gc = torch.empty((1, M), device=g.device, dtype=torch.float32)
        _finish[(1,)](part, gmask, gc, programs, scale, M, HAS_GRID=has_grid, LP=LP, enable_fp_fusion=False)
        return grad, gc, None, None, None


def hard_quantize(rows: torch.Tensor, centers: torch.Tensor, scale: float | None, grid, zero: bool) -> torch.Tensor:
    return HardQuantize.apply(rows, centers, scale, grid, zero)
