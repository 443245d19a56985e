"""The LIF time loop as one operation: all T steps of a population in one forward and one backward.

:class:`spikefit.nn.LIF` without recurrence runs its whole sequence through :func:`lif_scan`. The
dynamics are those of :mod:`spikefit.nn` (``u = u (1 - du) + a``; ``w = v (1 - dv) + u + bias``;
``s = (w - vth) / vth > 0``; ``v = w (1 - s)``), the gradient that of the step-by-step autograd graph:
the fast-sigmoid surrogate through the spike, none through the reset. Backward is the reverse-time
recurrence of that graph::

    gw[t] = gs[t] sg(x[t]) / vth + (1 - dv) (1 - s[t]) gw[t+1]
    gu[t] = gw[t] + (1 - du) gu[t+1]  = the gradient of a[t];   gbias = sum over t, batch of gw

Only the pre-reset potential ``w`` is kept for backward (the spikes are recomputed from it).

* CUDA (with Triton): one kernel per direction, each program holding a block of neurons in registers
  and stepping through T (:mod:`spikefit.lif_triton`); floating-point contraction is off, so spikes
  are those of the CPU path bit for bit.
* CPU: the same recurrence in place, without building an autograd graph per step.
"""
from __future__ import annotations

import torch

def triton_available() -> bool:
    """Whether the Triton LIF kernels can run (Triton importable; checked once)."""
    from .devices import kernels

    return kernels("lif_triton") is not None


def _forward_loop(a: torch.Tensor, au: float, av: float, vth: float, bias: torch.Tensor | None,
                  du_is_one: bool, dv_is_zero: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and pre-reset potentials (t, m), step by step in place (the nn.LIF arithmetic, op for op)."""
    steps = a.shape[0]
    spikes = torch.empty_like(a)
    w = torch.empty_like(a)
    u = torch.zeros_like(a[0])
    v = torch.zeros_like(a[0])
    for k in range(steps):
        if du_is_one:
            u = a[k]
        else:
            u = u.mul_(au).add_(a[k])
        if dv_is_zero:
            v = v.add_(u)
        else:
            v = v.mul_(av).add_(u)
        if bias is not None:
            v = v.add_(bias)
        x = (v - vth) / vth
        s = spikes[k]
        torch.gt(x, 0, out=s)  # float 0/1
        w[k].copy_(v)
        v.mul_(1.0 - s)
    return spikes, w


def _backward_loop(gs: torch.Tensor, w: torch.Tensor, au: float, av: float, vth: float, slope: float,
                   need_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    steps = gs.shape[0]
    ga = torch.empty_like(gs)
    gw = torch.zeros_like(gs[0])
    gu = torch.zeros_like(gs[0])
    gb = torch.zeros_like(gs[0]) if need_bias else None
    for k in range(steps - 1, -1, -1):
        x = (w[k] - vth) / vth
        keep = (x <= 0).to(gs.dtype)                   # 1 - s
        sg = gs[k] / (1.0 + slope * x.abs()) ** 2 / vth
        gw = sg.add_(gw.mul_(keep).mul_(av))
        gu = gu.mul_(au).add_(gw)
        ga[k].copy_(gu)
        if gb is not None:
            gb.add_(gw)
    return ga, gb


class LIFScan(torch.autograd.Function):
    """``LIFScan.apply(a (t, b, *shape), bias or None, du, dv, vth, slope) -> spikes (t, b, *shape)``."""

    @staticmethod
    def forward(ctx, a, bias, du: float, dv: float, vth: float, slope: float):
        au, av = 1.0 - du, 1.0 - dv
        shape = a.shape
        flat = a.reshape(shape[0], -1).contiguous()
        b_flat = None
        if bias is not None:  # bias (*shape) broadcast over the batch
            b_flat = bias.detach().reshape(1, -1).expand(shape[1], -1).reshape(-1).contiguous().to(flat.dtype)
        if flat.is_cuda and triton_available():
            from .lif_triton import forward as tri_forward
            spikes, w = tri_forward(flat, b_flat, au, av, vth)
        else:
            spikes, w = _forward_loop(flat, au, av, vth, b_flat, du == 1.0, dv == 0.0)
        ctx.save_for_backward(w)
        ctx.consts = (au, av, vth, slope, shape, bias is not None,
                      None if bias is None else tuple(bias.shape))
        return spikes.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        au, av, vth, slope, shape, has_bias, bias_shape = ctx.consts
        gs = grad.reshape(shape[0], -1).contiguous().to(w.dtype)
        need_bias = has_bias and ctx.needs_input_grad[1]
        if gs.is_cuda and triton_available():
            from .lif_triton import backward as tri_backward
            ga, gb = tri_backward(gs, w, au, av, vth, slope, need_bias)
        else:
            ga, gb = _backward_loop(gs, w, au, av, vth, slope, need_bias)
        gbias = None
        if gb is not None:
            gbias = gb.reshape(shape[1], -1).sum(0).reshape(bias_shape)
        return ga.reshape(shape), gbias, None, None, None, None


def lif_scan(a: torch.Tensor, bias: torch.Tensor | None, du: float, dv: float, vth: float,
             slope: float) -> torch.Tensor:
    """Spikes (t, b, *shape) of a current-based LIF population driven by ``a`` (t, b, *shape)."""
    return LIFScan.apply(a, bias, float(du), float(dv), float(vth), float(slope))
