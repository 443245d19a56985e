"""The chips' own neurons for training (:class:`spikefit.nn.LIF` with ``model`` other than "lif"): the
float counterparts of :mod:`spikefit.chipneurons`, with surrogate gradients.

* ``xylo-lif``: ``i = (i + a) (1 - 2^-dash_syn)``, ``v = v (1 - 2^-dash_mem) + i + bias``, ``floor(v / vth)``
  spikes (at most 31, 1 on the output), subtractive reset; later layers receive their input a step late;
* ``speck-if``: ``v += a + bias``, ``floor(v / vth)`` spikes, the target's reset;
* ``akida-act``: no state, a spike where ``a + bias > vth``;
* ``truenorth-lif``: ``v += a + bias``, a linear leak of ``dv * vth`` toward 0, spike at ``v > vth``, reset 0.
"""
from __future__ import annotations

import torch

from .nn import SpikeFn

XYLO_HIDDEN_SPIKES, XYLO_OUTPUT_SPIKES = 31, 1


class MultiSpikeFn(torch.autograd.Function):
    """``floor(x)`` spikes where ``x = v / vth >= 1``, at most ``top`` (None: no cap): the several spikes per
    step of Xylo and Speck. Gradient: the fast-sigmoid surrogate below threshold, 1 (straight through)
    from the threshold up to the cap, 0 beyond it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float, top: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope, ctx.top = slope, top
        n = torch.floor(x).clamp(min=0)
        return n if top is None else n.clamp(max=top)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        g = torch.where(x < 1, 1.0 / (1.0 + ctx.slope * (1 - x).abs()) ** 2, torch.ones_like(x))
        if ctx.top is not None:
            g = torch.where(x > ctx.top + 1, torch.zeros_like(x), g)
        return grad * g, None, None


def xylo_decay(d: float) -> float:
    """The fraction Xylo's shift decay ``x >> dash`` removes per step for spikefit's decay ``d``
    (``dash`` as spikefit.targets.xylo_audio2.dash reads it)."""
    from spikefit.targets.xylo_audio2 import dash

    return 2.0 ** -dash(d)


def chip_forward(lif, a: torch.Tensor, probe=None) -> torch.Tensor:
    """``lif``'s chip neuron (``lif.model``) on input a (t, b, *shape): spikes or spike counts."""
    steps, b = a.shape[:2]
    i = torch.zeros_like(a[0])
    v = torch.zeros_like(a[0])
    s_prev = torch.zeros_like(a[0])
    mask = None
    if probe is not None:
        mask = torch.ones_like(a[0], requires_grad=True)
        probe.masks[lif.name] = mask
    keep_i = 1.0 - xylo_decay(lif.du) if lif.model == "xylo-lif" else 0.0
    keep_v = 1.0 - xylo_decay(lif.dv) if lif.model == "xylo-lif" else 1.0
    out = []
    for k in range(steps):
        a_k = a[k]
        if lif.recurrent is not None:
            a_k = a_k + lif.recurrent(s_prev.reshape(b, -1), probe).reshape(a_k.shape)
        bias = 0.0 if lif.bias is None else lif.bias
        if lif.model == "akida-act":      # stateless: a spike where this step's sum exceeds the threshold
            s = SpikeFn.apply((a_k + bias - lif.vth) / lif.vth, lif.slope)
        elif lif.model == "truenorth-lif":
            v = v + a_k + bias
            leak = lif.dv * lif.vth
            v = v - torch.sign(v.detach()) * torch.clamp(v.detach().abs(), max=leak)
            s = SpikeFn.apply((v - lif.vth) / lif.vth, lif.slope)
            v = v * (1.0 - s.detach())
        else:                              # xylo-lif (current decays before it is integrated) / speck-if
            if lif.model == "xylo-lif":
                i = (i + a_k) * keep_i
                v = v * keep_v + i + bias
            else:
                v = v + a_k + bias
            s = MultiSpikeFn.apply(v / lif.vth, lif.slope, lif.max_spikes)
            if lif.reset == "subtract":
                v = v - s.detach() * lif.vth
            else:
                v = v * (s.detach() == 0)
        if mask is not None:
            s = s * mask
        out.append(s)
        s_prev = s
    return torch.stack(out)


def set_neuron_model(model, chip_model: str | None, reset: str = "zero"):
    """Give every population of ``model`` the chip neuron ``chip_model`` (spikefit.spec.CHIP_MODELS; None:
    spikefit's LIF) with that chip's timing: on Xylo every population after the first receives its
    feed-forward input one step late and spikes up to 31 times a step (the output once)."""
    pops = model.populations()
    for k, p in enumerate(pops):
        p.model = chip_model or "lif"
        p.reset = reset
        p.delay = 1 if chip_model == "xylo-lif" and k > 0 else 0
        p.max_spikes = None
        if chip_model == "xylo-lif":
            p.max_spikes = XYLO_OUTPUT_SPIKES if p is pops[-1] else XYLO_HIDDEN_SPIKES
            p.reset = "subtract"
    return model
