"""Quantization-aware training baselines at M weight values: LSQ, DKM and k-means QAT.

* :class:`LSQQuantizer`: Learned Step Size Quantization (Esser et al., ICLR 2020). The step ``s`` is
  learned; ``w_q = s * clamp(round(w / s), -Qn, Qp)`` with straight-through rounding, and the
  step's gradient is scaled by ``g = 1 / sqrt(N * Qp)`` (N weights in the layer), the paper's
  gradient scale. Initial step ``s0 = 2 mean|w| / sqrt(Qp)`` (the paper's). The harness trains with
  Adam, which normalises a gradient's size, so ``g`` alone would not temper the step's updates (LSQ
  was stated with SGD): the parameter is ``s / s0`` (``s = s0 * step``), which makes Adam's update of
  ``s`` proportional to ``s0``, the balance with the weights' updates that ``g`` gives under SGD.
  Learning ``s`` itself at the weights' learning rate collapsed a seed (mnist1d M=4 seed 1: 47.9 %). With M non-zero levels
  (M even) the grid is ``s * {-M/2 .. -1, 0, 1 .. M/2}``: the same M non-zero values per layer
  as CAT with its free zero level.
* :class:`DKMQuantizer`: Differentiable K-Means (Cho et al., ICLR 2022). Every training forward
  runs ``iters`` EM steps from the last centroids ``C``: attention
  ``A = softmax(-|w - C| / (tau * sigma))`` over the distances, then ``C <- sum A w / sum A``
  (weights of the group); the gradient flows through the iterations into the latent weights, and
  ``w_q = A C``. The centroids are not a gradient parameter: they move only by the soft assignment.
  The zero level (an absent synapse) is pinned.
* :class:`KMeansQATQuantizer`: hard nearest-centroid assignment with straight-through gradients, the
  centroids re-clustered by Lloyd iterations (warm-started) of the latent weights on every training
  forward instead of learned by gradient.

All three harden to what CAT hardens to (:func:`spikefit.cat.harden`): a :class:`UniformQuantizer`
on a frozen ``vth / 2^k`` step (LSQ) or a hard :class:`CodebookQuantizer` on the integer grid (DKM,
k-means QAT), so the deployed network and the checkpoint format are those of the other methods.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import TrainingError
from ..quantizers import CodebookQuantizer, UniformQuantizer, lloyd_accumulate, lloyd_means, round_ste


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x`` forward, gradient times ``g`` backward (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


class LSQQuantizer(UniformQuantizer):
    """LSQ on the symmetric grid ``s * [-q, q]`` (``q = M // 2``): learned step, scaled gradient."""

    def __init__(self, M: int, w: torch.Tensor):
        if M < 2 or M % 2:
            raise TrainingError(f"LSQ needs an even number of non-zero levels M >= 2 (±1..±M/2), got {M}")
        self.qmax = M // 2
        bits = int(math.ceil(math.log2(self.qmax + 1))) + 1          # a signed integer holding ±qmax
        a = float(w.detach().abs().mean())
        init = max(2 * a / math.sqrt(self.qmax), 1e-8)
        super().__init__(bits, init, learn_scale=True, narrow=True)
        del self.log_scale
        self.s0 = init
        self.step = torch.nn.Parameter(torch.tensor(1.0))                   # s = s0 * step
        self.g = 1.0 / math.sqrt(w.numel() * self.qmax)
        self.register_buffer("log_scale", torch.tensor(math.log(init)))   # kept in step with ``step``

    @property
    def scale(self) -> float:
        return self.frozen_scale if self.frozen_scale is not None else self.s0 * float(self.step.detach().abs())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.frozen_scale is not None:
            s = self.frozen_scale
        else:
            s = self.s0 * grad_scale(self.step.abs().clamp_min(1e-6), self.g)
        return torch.clamp(round_ste(w / s), -self.qmax, self.qmax) * s

    def freeze(self, vth: float | None = None) -> None:
        s = self.scale
        if vth is not None:
            s = vth / 2.0 ** round(math.log2(vth / s))
        self.frozen_scale = float(s)
        with torch.no_grad():
            self.step.fill_(s / self.s0)
            self.log_scale.fill_(math.log(s))
        self.step.requires_grad_(False)


class DKMQuantizer(CodebookQuantizer):
    """DKM soft assignment (EM iterations in the forward pass) until hardened; then CAT's hard path."""

    def __init__(self, codebook, groups: np.ndarray, scope: str, tau: float = 0.05, iters: int = 3,
                 zero: bool = True):
        super().__init__(codebook, groups, scope, "soft", tau, None, zero)
        self.iters = int(iters)
        codebook.centers.requires_grad_(False)   # centroids move by the soft assignment, not by Adam

    def _soft(self, rows: torch.Tensor, update: bool) -> torch.Tensor:
        G = self.codebook.centers.shape[0]
        c = self.codebook.centers.detach()                           # (G, M), last iteration's centroids
        sigma = self.sigma2.sqrt()[self.groups][:, None, None]        # (rows, 1, 1)
        for it in range(max(self.iters, 1)):
            lv = c[self.groups]                                       # (rows, M)
            if self.zero:
                lv = torch.cat([lv, torch.zeros_like(lv[:, :1])], 1)
            att = torch.softmax(-(rows[:, :, None] - lv[:, None, :]).abs() / (self.tau * sigma), dim=-1)
            if it == self.iters - 1 or self.iters == 0:
                break
            a = att[..., :self.M]                                     # the zero level stays at 0
            num = torch.zeros(G, self.M, device=rows.device).index_add(0, self.groups, (a * rows[:, :, None]).sum(1))
            den = torch.zeros(G, self.M, device=rows.device).index_add(0, self.groups, a.sum(1))
            c = torch.where(den > 1e-12, num / den.clamp_min(1e-12), c)
        if update:
            self.codebook.centers.data.copy_(c.detach())
        return (att * lv[:, None, :]).sum(-1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.mode == "hard":
            return super().forward(w)
        rows = w.reshape(w.shape[0], -1)
        return self._soft(rows, self.training).reshape(w.shape)


class KMeansQATQuantizer(CodebookQuantizer):
    """Hard assignment + straight-through; centroids = Lloyd iterations of the latent weights."""

    def __init__(self, codebook, groups: np.ndarray, scope: str, iters: int = 1, zero: bool = True):
        super().__init__(codebook, groups, scope, "hard", 1.0, None, zero)
        self.iters = int(iters)
        self.recluster = True                    # off after hardening: the codebook is final
        codebook.centers.requires_grad_(False)

    @torch.no_grad()
    def lloyd(self, w: torch.Tensor) -> None:
        """``iters`` Lloyd steps per group from the current centroids (the zero level pinned)."""
        rows = w.reshape(w.shape[0], -1)
        G, M = self.codebook.centers.shape
        c = self.codebook.centers.data
        for _ in range(self.iters):
            lv = c[self.groups]
            if self.zero:
                lv = torch.cat([lv, torch.zeros_like(lv[:, :1])], 1)
            idx = (rows[:, :, None] - lv[:, None, :]).abs().argmin(-1)        # (rows, k)
            sums = torch.zeros(G * (M + 1), device=rows.device)
            counts = torch.zeros_like(sums)
            lloyd_accumulate(sums, counts, self.groups, idx, rows, M + 1)
            c = lloyd_means(c, sums, counts)
        self.codebook.centers.data.copy_(c)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training and self.recluster:
            self.lloyd(w.detach())
        return super().forward(w)
