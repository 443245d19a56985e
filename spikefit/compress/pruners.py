"""Pruning baselines: scores, schedules and the dense network of equal synapse count.

* :func:`gmp_level`: Zhu & Gupta (2017)'s cubic schedule ``s_t = s_f (1 - (1 - t/n)^3)`` from 0 at
  the start of pruning to ``s_f`` at step n, pruning the smallest latent (float) weights every
  ``interval`` steps, globally or per layer (:class:`spikefit.compress.stages.GradualMagnitude`).
* :func:`latent_magnitude_scores`: ``|w|`` of the latent float weights (not of the codebook values).
* :func:`snip_scores`: connection sensitivity ``|c_ij dL/dc_ij|`` of a mask ``c`` on every synapse
  (Lee et al. 2019, SNIP) = ``|w~_ij dL/dw~_ij|`` on the effective (quantized) weights, the loss
  gradient summed over the samples (first order: FSC's Fisher is its per-sample second moment).
* :func:`rewire`: Deep-Rewiring-style step at a fixed synapse count per connection (Bellec et al.
  2018; drop-the-weakest as SET, Mocanu et al. 2018): the ``rate`` fraction of a connection's active
  synapses with the smallest latent ``|w|`` go dormant and as many dormant ones, drawn at random,
  come back at weight 0.
* :func:`dense_gradient` and :func:`regrow`: RigL-style regrowth (Evci et al. 2020) after FSC pruning:
  the ``k`` active synapses of lowest score go dormant and the ``k`` dormant ones with the largest
  ``|dL/dw~|`` (the loss gradient of the effective weight, pruned entries included) come back at 0.
* :func:`equal_width`: hidden widths (or channel counts) of the dense network with (at most) a given number of
  synapses.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import TrainingError
from ..nn import Conv, Probe, count_loss


def gmp_level(progress: float, final: float, initial: float = 0.0) -> float:
    """Sparsity after ``progress`` (0..1) of the pruning period: ``s_f + (s_i - s_f)(1 - p)^3``."""
    p = min(max(float(progress), 0.0), 1.0)
    return final + (initial - final) * (1.0 - p) ** 3


def latent_magnitude_scores(model) -> dict[str, np.ndarray]:
    """``|w|`` of the latent weights; pruned synapses score -inf."""
    return {s.name: np.where(s.mask.numpy() > 0, s.weight.detach().abs().double().numpy(), -np.inf)
            for s in model.synapses()}


def snip_scores(model, x: torch.Tensor, y: torch.Tensor, logit_scale: float,
                batch_size: int = 256) -> dict[str, np.ndarray]:
    """SNIP's ``|dL/dc|`` of a mask on every synapse over the samples ``x`` (t, N, ...), labels ``y``."""
    syns = model.synapses()
    grads = {s.name: torch.zeros_like(s.mask) for s in syns}
    for s in syns:
        s.mask.requires_grad_(True)
    try:
        for i in range(0, x.shape[1], batch_size):
            out = model(x[:, i:i + batch_size])
            loss = count_loss(out, y[i:i + batch_size], logit_scale, reduction="sum")
            gs = torch.autograd.grad(loss, [s.mask for s in syns], allow_unused=True)
            for s, g in zip(syns, gs):
                if g is not None:
                    grads[s.name] += g.detach()
    finally:
        for s in syns:
            s.mask.requires_grad_(False)
    return {s.name: np.where(s.mask.numpy() > 0, (grads[s.name] / x.shape[1]).abs().double().numpy(), -np.inf)
            for s in syns}


@torch.no_grad()
def rewire(model, rate: float, gen: torch.Generator) -> int:
    """Drop the ``rate`` fraction of every connection's active synapses with the smallest latent
    ``|w|`` and regrow as many dormant ones at random (weight 0): each connection keeps its count.
    Returns the number of synapses rewired."""
    if not 0.0 <= rate < 1.0:
        raise TrainingError(f"rewiring rate {rate} must lie in [0, 1)")
    moved = 0
    for s in model.synapses():
        m = s.mask.reshape(-1)
        active = torch.nonzero(m > 0).reshape(-1)
        dormant = torch.nonzero(m == 0).reshape(-1)
        k = min(int(rate * active.numel()), dormant.numel())
        if k == 0:
            continue
        w = s.weight.detach().reshape(-1)
        drop = active[torch.argsort(w[active].abs(), stable=True)[:k]]
        grow = dormant[torch.randperm(dormant.numel(), generator=gen)[:k]]
        m[drop] = 0.0
        m[grow] = 1.0
        w[grow] = 0.0
        moved += k
    model.apply_masks()
    return moved


def dense_gradient(model, x: torch.Tensor, y: torch.Tensor, logit_scale: float,
                   batch_size: int = 256) -> dict[str, torch.Tensor]:
    """``dL/dw~`` of every connection's effective weight over the samples, pruned entries included
    (from the synaptic inputs' gradients: a dense layer's ``sum_t g_t^T x_t``, a convolution's
    ``conv2d_weight``)."""
    grads = {s.name: torch.zeros_like(s.weight) for s in model.synapses()}
    syns = {s.name: s for s in model.synapses()}
    for i in range(0, x.shape[1], batch_size):
        probe = Probe()
        loss = count_loss(model(x[:, i:i + batch_size], probe), y[i:i + batch_size], logit_scale, reduction="sum")
        recs = [(k, xa, a) for k, lst in probe.records.items() for xa, a in lst]
        gas = torch.autograd.grad(loss, [a for _, _, a in recs], allow_unused=True)
        for (k, xa, _), ga in zip(recs, gas):
            if ga is None:
                continue
            s = syns[k]
            if isinstance(s, Conv):
                t, b = xa.shape[:2]
                grads[k] += torch.nn.grad.conv2d_weight(xa.reshape(t * b, *xa.shape[2:]), s.weight.shape,
                                                        ga.reshape(t * b, *ga.shape[2:]), s.stride, s.padding)
            else:
                grads[k] += torch.einsum("...o,...i->oi", ga, xa)
    return {k: g / x.shape[1] for k, g in grads.items()}


@torch.no_grad()
def regrow(model, scores: dict[str, np.ndarray], grads: dict[str, torch.Tensor], fraction: float) -> int:
    """In every connection: ``k = fraction * active`` active synapses with the lowest ``scores`` go
    dormant, the ``k`` dormant ones with the largest ``|grads|`` come back at weight 0 (the count
    stays). Returns the number of synapses moved."""
    moved = 0
    for s in model.synapses():
        m = s.mask.reshape(-1)
        active = torch.nonzero(m > 0).reshape(-1)
        dormant = torch.nonzero(m == 0).reshape(-1)
        k = min(int(fraction * active.numel()), dormant.numel())
        if k == 0:
            continue
        sc = torch.as_tensor(scores[s.name], dtype=torch.float64).reshape(-1)
        g = grads[s.name].detach().abs().reshape(-1)
        drop = active[torch.argsort(sc[active], stable=True)[:k]]
        grow = dormant[torch.argsort(-g[dormant], stable=True)[:k]]
        m[drop] = 0.0
        m[grow] = 1.0
        s.weight.reshape(-1)[grow] = 0.0
        moved += k
    model.apply_masks()
    return moved


def synapse_count(n_in: int, hidden: tuple[int, ...], n_out: int) -> int:
    """Synapses of a dense feed-forward network n_in -> hidden... -> n_out."""
    sizes = [n_in, *hidden, n_out]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def equal_width(n_in: int, hidden: tuple[int, ...], n_out: int, synapses: int,
                count=None) -> tuple[int, ...]:
    """The hidden widths ``round(f * hidden)`` (every layer scaled by one factor ``f``, at least 1
    neuron each) with the largest synapse count not above ``synapses``.

    :param count: the synapse count of a hidden-size tuple (default: the dense feed-forward
        :func:`synapse_count` of ``n_in -> hidden -> n_out``); for a convolutional network, its
        weights at those channel counts (:meth:`spikefit.training.config.ConvLayers.synapses`)."""
    count = count or (lambda h: synapse_count(n_in, h, n_out))
    ones = tuple(1 for _ in hidden)
    if synapses < count(ones):
        raise TrainingError(f"{synapses} synapses are fewer than a network with one neuron (channel) per hidden "
                            f"layer has ({count(ones)}); raise the budget")

    def scaled(f: float) -> tuple[int, ...]:
        return tuple(max(1, round(f * h)) for h in hidden)

    lo, hi = 0.0, 1.0
    while count(scaled(hi)) <= synapses:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if count(scaled(mid)) <= synapses:
            lo = mid
        else:
            hi = mid
    return scaled(lo)
