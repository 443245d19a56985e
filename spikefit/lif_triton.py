"""Triton kernels for :mod:`spikefit.lifscan` (CUDA only; imported lazily).

Inputs are time-major and flattened: ``(t, m)`` with ``m = batch x neurons``, contiguous. Each
program owns ``BLOCK`` neurons and steps through all ``t``, holding ``u``, ``v`` (forward) or the two
adjoints (backward) in registers: one read of the input and one write of spikes and potentials per
step, no launch per step. ``enable_fp_fusion=False`` keeps multiply and add separately rounded, as on
the CPU path, so the spikes agree bit for bit.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 128


@triton.jit
def _lif_fwd(a_ptr, bias_ptr, s_ptr, w_ptr, m, steps, au, av, vth,
             HAS_BIAS: tl.constexpr, DU_ONE: tl.constexpr, DV_ZERO: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < m
    u = tl.zeros([BLOCK], dtype=tl.float32)
    v = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs, mask=ok, other=0.0)
    for k in range(steps):
        p = k.to(tl.int64) * m + offs
        a = tl.load(a_ptr + p, mask=ok, other=0.0)
        if DU_ONE:
            u = a
        else:
            u = u * au + a
        if DV_ZERO:
            v = v + u
        else:
            v = v * av + u
        if HAS_BIAS:
            v = v + bias
        x = (v - vth) / vth
        s = (x > 0).to(tl.float32)
        tl.store(w_ptr + p, v, mask=ok)
        tl.store(s_ptr + p, s, mask=ok)
        v = v * (1.0 - s)


@triton.jit
def _lif_bwd(gs_ptr, w_ptr, ga_ptr, gb_ptr, m, steps, au, av, vth, slope,
             HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < m
    gw = tl.zeros([BLOCK], dtype=tl.float32)
    gu = tl.zeros([BLOCK], dtype=tl.float32)
    gb = tl.zeros([BLOCK], dtype=tl.float32)
    for j in range(steps):
        k = steps - 1 - j
        p = k.to(tl.int64) * m + offs
        w = tl.load(w_ptr + p, mask=ok, other=0.0)
        g = tl.load(gs_ptr + p, mask=ok, other=0.0)
        x = (w - vth) / vth
        keep = (x <= 0).to(tl.float32)
        d = 1.0 + slope * tl.abs(x)
        gw = g / (d * d) / vth + gw * keep * av
        gu = gu * au + gw
        tl.store(ga_ptr + p, gu, mask=ok)
        if HAS_BIAS:
            gb = gb + gw
    if HAS_BIAS:
        tl.store(gb_ptr + offs, gb, mask=ok)


def _grid(m: int):
    return (triton.cdiv(m, BLOCK),)


def forward(a: torch.Tensor, bias: torch.Tensor | None, au: float, av: float, vth: float):
    a = a.float()
    steps, m = a.shape
    spikes = torch.empty_like(a)
    w = torch.empty_like(a)
    _lif_fwd[_grid(m)](a, a if bias is None else bias.float(), spikes, w, m, steps, au, av, vth,
                       HAS_BIAS=bias is not None, DU_ONE=au == 0.0, DV_ZERO=av == 1.0, BLOCK=BLOCK,
                       enable_fp_fusion=False)
    return spikes, w


def backward(gs: torch.Tensor, w: torch.Tensor, au: float, av: float, vth: float, slope: float, need_bias: bool):
    steps, m = gs.shape
    ga = torch.empty_like(gs)
    gb = torch.empty(m, device=gs.device, dtype=torch.float32) if need_bias else None
    _lif_bwd[_grid(m)](gs.float(), w, ga, ga if gb is None else gb, m, steps, au, av, vth, slope,
                       HAS_BIAS=need_bias, BLOCK=BLOCK, enable_fp_fusion=False)
    return ga, gb
