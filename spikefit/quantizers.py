"""Weight quantizers: the modules a connection applies to its latent weights, and their checkpoint form.

:class:`Codebook` (M learnable values per group on the chip's integer grid), :class:`CodebookQuantizer`
(hard or soft assignment to a group's codebook row; "lloyd" assigns as "hard" does), :class:`UniformQuantizer` (a uniform integer grid
with a learnable scale) and :class:`TernaryQuantizer`. ``spikefit.nn`` builds and resizes them;
Clusterization-Aware Training (:mod:`spikefit.cat`) attaches and trains them. This module depends on
neither, so ``nn`` and ``cat`` import it without importing each other.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from . import network as N
from .errors import TrainingError

MODES = ("hard", "lloyd", "soft")    # CAT's codebook updates (spikefit.cat): gradient (STE) / Lloyd / attention
KMEANS_ITERS = 25           # Lloyd iterations of the codebook initialisation (1-D, converges in ~10)
KMEANS_SAMPLE = 2 ** 20     # a larger group is initialised from this many of its values, drawn seeded


def weight_grid(bits: int | None, narrow: bool = False) -> tuple[int, int] | None:
    """Integer range of a signed ``bits``-bit weight: [-2^(b-1), 2^(b-1) - 1]; ``narrow`` makes it
    symmetric, ±(2^(b-1) - 1). None when the precision is unconstrained."""
    if bits is None:
        return None
    hi = 2 ** (bits - 1) - 1
    return (-hi if narrow else -(hi + 1)), hi


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward. ``x - x.detach()`` is exactly 0, so the forward value is
    exactly the rounded one (``x + (round(x) - x)`` would not be, in floating point)."""
    return torch.round(x).detach() + (x - x.detach())


def kmeans_1d(values: list[np.ndarray], M: int, zero: bool = False) -> np.ndarray:
    """k-means of each group's 1-D values into M centers, initialised at the quantiles
    (k + 1/2) / M; returns (groups, M). With ``zero`` a further center is pinned at 0 (values
    nearest to it are absent synapses) and only the M others move. Empty groups get evenly
    spaced centers in [-1, 1]. A group of more than KMEANS_SAMPLE values is clustered on a seeded
    sample of that many (with replacement): on 2^24 normal weights its centres were within 0.3 % of
    the whole group's, in 1.5 s instead of 46 s (a layer of 2.7 x 10^8 weights took minutes)."""
    out = np.zeros((len(values), M))
    q = (np.arange(M) + 0.5) / M
    for g, v in enumerate(values):
        if v.size == 0:
            out[g] = np.linspace(-1, 1, M)
            continue
        if v.size > KMEANS_SAMPLE:
            v = v[np.random.default_rng(g).integers(0, v.size, KMEANS_SAMPLE)]
        c = np.quantile(v, q)
        for _ in range(KMEANS_ITERS):
            cand = np.concatenate([c, [0.0]]) if zero else c
            idx = np.abs(v[:, None] - cand[None, :]).argmin(1)
            sums = np.bincount(idx, weights=v, minlength=len(cand))[:M]
            cnt = np.bincount(idx, minlength=len(cand))[:M]
            new = np.where(cnt > 0, sums / np.maximum(cnt, 1), c)
            if np.allclose(new, c):
                break
            c = new
        out[g] = c
    return out


def lloyd_accumulate(sums: torch.Tensor, counts: torch.Tensor, groups: torch.Tensor, idx: torch.Tensor,
                     rows: torch.Tensor, levels: int, keep: torch.Tensor | None = None) -> None:
    """One Lloyd step's sums, in place: every weight of ``rows`` (one row per output; its codebook
    row ``groups[row]``) adds to bin ``groups[row] * levels + idx`` of the flat ``sums`` and
    ``counts``; ``keep`` (0 or 1 per weight) leaves weights out."""
    flat = (groups[:, None] * levels + idx).reshape(-1)
    sums.index_add_(0, flat, (rows if keep is None else rows * keep).reshape(-1))
    counts.index_add_(0, flat, (torch.ones_like(rows) if keep is None else keep).reshape(-1))


def lloyd_means(centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The codebook (G, M) after a Lloyd step: each value the mean of its bin of
    :func:`lloyd_accumulate`, a value with an empty bin unchanged (bins past M, e.g. the zero level, are
    ignored)."""
    G, M = centers.shape
    sums, counts = sums.reshape(G, -1)[:, :M], counts.reshape(G, -1)[:, :M]
    return torch.where(counts > 0, sums / counts.clamp_min(1), centers)


def _grouped_values(w: np.ndarray, mask: np.ndarray, groups: np.ndarray, G: int) -> list[np.ndarray]:
    rows = w.reshape(w.shape[0], -1)
    m = mask.reshape(mask.shape[0], -1).astype(bool)
    return [rows[groups == g][m[groups == g]] for g in range(G)]


# -- quantizers ----------------------------------------------------------------------------------

class Codebook(nn.Module):
    """M learnable values per group, snapped (straight-through) to the non-zero integer grid."""

    def __init__(self, centers: np.ndarray, scale: float | None, bits: int | None):
        super().__init__()
        self.centers = nn.Parameter(torch.as_tensor(np.atleast_2d(centers), dtype=torch.float32))  # (G, M)
        self.scale = scale
        self.bits = bits

    @property
    def grid(self) -> tuple[int, int] | None:
        return weight_grid(self.bits) if self.scale is not None else None

    def integers(self) -> torch.Tensor:
        """(G, M) codebook in integer steps (straight-through rounding), clamped, never 0."""
        qmin, qmax = self.grid
        x = self.centers / self.scale
        q = torch.clamp(round_ste(x), qmin, qmax)
        away = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        return q + (away - q).detach() * (q.detach() == 0)

    def values(self) -> torch.Tensor:
        """(G, M) codebook in weight units."""
        if self.scale is None:
            return self.centers
        return self.integers() * self.scale


class _PickLevels(torch.autograd.Function):
    """``levels[idx]`` whose backward sums the gradient of each level with one masked reduction per
    level: no atomic add per weight into a handful of addresses (which a GPU serialises) and no wait
    for the host (``bincount`` reads its output size back); the levels are few (M + 1)."""

    @staticmethod
    def forward(ctx, levels, idx):
        ctx.save_for_backward(idx)
        ctx.n = levels.shape[0]
        return levels[idx]

    @staticmethod
    def backward(ctx, grad):
        (idx,) = ctx.saved_tensors
        g = torch.stack([torch.where(idx == k, grad, 0).sum() for k in range(ctx.n)])
        return g, None


def pick_levels(levels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``levels[idx]`` with the centroid gradient summed per level (a histogram on GPUs)."""
    if levels.is_cuda:
        return _PickLevels.apply(levels, idx)
    return levels[idx]


FUSED_MAX_LEVELS = 32       # the Triton hard quantizer holds every level in registers


def fused_hard(rows: torch.Tensor, levels: int) -> bool:
    """CAT's hard quantizer with one codebook row runs as Triton kernels (:mod:`spikefit.quant_triton`):
    on CUDA, with Triton installed, for at most FUSED_MAX_LEVELS levels."""
    if not rows.is_cuda or levels > FUSED_MAX_LEVELS:
        return False
    from .devices import kernels

    return kernels("quant_triton") is not None


class CodebookQuantizer(nn.Module):
    """Maps latent weights (rows, ...) to their group's codebook values.

    ``groups[r]`` is the codebook row of weight row ``r`` (an output neuron, or a conv channel).
    """

    def __init__(self, codebook: Codebook, groups: np.ndarray, scope: str, mode: str = "hard",
                 tau: float = 1.0, shared_id: str | None = None, zero: bool = False, fixed: bool = False):
        super().__init__()
        if mode not in MODES:
            raise TrainingError(f"unknown CAT mode {mode!r}; use one of {', '.join(MODES)}")
        self.codebook = codebook
        self.register_buffer("groups", torch.as_tensor(groups, dtype=torch.long))
        self.scope, self.mode, self.tau, self.shared_id = scope, mode, float(tau), shared_id
        if mode == "lloyd":          # the codebook follows Lloyd steps (spikefit.cat.lloyd_step), not Adam
            codebook.centers.requires_grad_(False)
        self.zero = bool(zero)  # 0 (no synapse) is a further, free level: not a codebook value
        self.fixed = False
        if fixed:
            self.fix()
        self.register_buffer("sigma2", torch.ones(codebook.centers.shape[0]))  # per-group weight variance

    @property
    def M(self) -> int:
        return int(self.codebook.centers.shape[1])

    def fix(self) -> None:
        """The codebook values stop learning (fine-tuning: the weights settle on them)."""
        self.fixed = True
        self.codebook.centers.requires_grad_(False)

    def _levels(self) -> torch.Tensor:
        """(rows, M [+ 1]) the values each row may take: its codebook row, and 0 with ``zero``."""
        c = self.codebook.values()[self.groups]
        return torch.cat([c, torch.zeros_like(c[:, :1])], 1) if self.zero else c

    def _single(self) -> bool:
        return self.codebook.centers.shape[0] == 1

    def _group_levels(self) -> torch.Tensor:
        """(G, M [+ 1]) every group's levels: its codebook row, and 0 with ``zero``."""
        c = self.codebook.values()
        return torch.cat([c, torch.zeros_like(c[:, :1])], 1) if self.zero else c

    @staticmethod
    def _nearest(rows: torch.Tensor, levels: torch.Tensor, single: bool) -> torch.Tensor:
        """Index of the nearest level of every weight (rows, k); ``levels`` (G or rows, L), detached.
        One group: a binary search over the sorted levels (the midpoints); else a (rows, k, L) argmin."""
        if single:
            srt, order = levels[0].sort(stable=True)   # tied levels: the lowest index (as the GPU kernel)
            return order[torch.bucketize(rows, (srt[1:] + srt[:-1]) * 0.5)]
        return (rows[:, :, None] - levels[:, None, :]).abs().argmin(-1)

    def assign(self, w: torch.Tensor) -> torch.Tensor:
        """Index (rows, k) of the level of every weight (M means 0 with ``zero``), as forward picks it."""
        rows = w.reshape(w.shape[0], -1).detach()
        single = self._single()
        levels = (self._group_levels() if single else self._levels()).detach()
        return self._nearest(rows, levels, single)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        rows = w.reshape(w.shape[0], -1)                       # (rows, k)
        if self.mode != "soft":                                # "hard" and "lloyd": nearest level
            if self._single() and fused_hard(rows, self.M + self.zero):   # one GPU kernel forward, two back
                from .quant_triton import hard_quantize

                cb = self.codebook
                return hard_quantize(rows, cb.centers, cb.scale, cb.grid, self.zero).reshape(w.shape)
            if self._single():                                 # layer / chip scope: one row of levels
                lv = self._group_levels()[0]                   # (L,)
                q = pick_levels(lv, self._nearest(rows.detach(), lv.detach()[None], True))
            else:
                c = self._levels()                             # (rows, L)
                q = torch.gather(c, 1, self._nearest(rows.detach(), c.detach(), False))
            # centroid gradient = sum over assigned weights; straight-through to the latent weight (adds exactly 0)
            q = q + (rows - rows.detach())
        else:
            c = self._levels()                                 # (rows, M [+ 1])
            d2 = (rows[:, :, None] - c[:, None, :]) ** 2       # (rows, k, M)
            att = torch.softmax(-d2 / (self.tau * self.sigma2[self.groups][:, None, None]), dim=-1)
            q = (att * c[:, None, :]).sum(-1)
        return q.reshape(w.shape)

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[np.ndarray, N.Quantization]:
        """Integer weights (hard assignment) and the connection's Quantization metadata."""
        cb = self.codebook
        if cb.scale is None:
            raise TrainingError("a codebook without an integer grid (no limits.weight_bits) has no integer export")
        ints = cb.integers().double()  # (G, M)
        levels = ints[self.groups]
        if self.zero:
            levels = torch.cat([levels, torch.zeros_like(levels[:, :1])], 1)
        qi = torch.gather(levels, 1, self.assign(w)).reshape(w.shape)
        quant = N.Quantization(cb.bits, cb.scale, ints.numpy() * cb.scale, self.scope, self.groups.numpy().copy())
        return qi.numpy().astype(np.int64), quant

    @torch.no_grad()
    def init_from(self, w: torch.Tensor, mask: torch.Tensor) -> None:
        """k-means (quantile init) of the unpruned weights of each group."""
        G = self.codebook.centers.shape[0]
        vals = _grouped_values(w.cpu().numpy(), mask.cpu().numpy(), self.groups.numpy(), G)
        self.codebook.centers.copy_(torch.as_tensor(kmeans_1d(vals, self.M, self.zero), dtype=torch.float32))
        self.sigma2.copy_(torch.as_tensor([max(float(v.var()), 1e-8) if v.size else 1.0 for v in vals]))

    def spec(self) -> dict:
        cb = self.codebook
        return {"type": "codebook", "G": int(cb.centers.shape[0]), "M": self.M, "scale": cb.scale, "bits": cb.bits,
                "rows": int(self.groups.numel()), "scope": self.scope, "mode": self.mode, "tau": self.tau,
                "shared_id": self.shared_id, "zero": self.zero, "fixed": self.fixed}


class UniformQuantizer(nn.Module):
    """Uniform integer grid ``scale * clamp(round(w / scale))`` with a learnable (log) scale, LSQ-like
    (Esser et al. 2020): autograd through the straight-through rounding gives the scale's gradient."""

    def __init__(self, bits: int, scale: float, learn_scale: bool = True, narrow: bool = False):
        super().__init__()
        self.bits, self.narrow = int(bits), bool(narrow)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)), requires_grad=learn_scale)
        self.frozen_scale: float | None = None if learn_scale else float(scale)

    @property
    def scale(self) -> float:
        return self.frozen_scale if self.frozen_scale is not None else float(self.log_scale.detach().exp())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        qmin, qmax = weight_grid(self.bits, self.narrow)
        s = self.log_scale.exp() if self.frozen_scale is None else self.frozen_scale
        return torch.clamp(round_ste(w / s), qmin, qmax) * s

    def freeze(self, vth: float | None = None) -> None:
        """Fix the scale; with ``vth``, snap it to the nearest ``vth / 2^k`` (integer threshold)."""
        s = self.scale
        if vth is not None:
            s = vth / 2.0 ** round(math.log2(vth / s))
        self.frozen_scale = float(s)
        with torch.no_grad():
            self.log_scale.fill_(math.log(s))
        self.log_scale.requires_grad_(False)

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[np.ndarray, N.Quantization]:
        """The integers of exactly what the forward pass computes (same float32 rounding)."""
        qi = torch.round(self.forward(w).double() / self.scale)
        return qi.numpy().astype(np.int64), N.Quantization(self.bits, self.scale)

    def spec(self) -> dict:
        return {"type": "uniform", "bits": self.bits, "scale": self.scale, "narrow": self.narrow,
                "frozen": self.frozen_scale is not None}


class TernaryQuantizer(nn.Module):
    """Ternary weights (TWN, Li et al. 2016): threshold 0.7 * mean|w| per layer, scale = mean |w| above
    it (closed form, recomputed every step), straight-through gradient to the latent weight."""

    def __init__(self, ratio: float = 0.7):
        super().__init__()
        self.ratio = ratio

    def _parts(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = w.detach().abs()
        delta = self.ratio * a[a > 0].mean() if (a > 0).any() else a.new_tensor(0.0)
        keep = a > delta
        alpha = a[keep].mean() if keep.any() else a.new_tensor(1.0)
        return torch.sign(w.detach()) * keep, alpha

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t, alpha = self._parts(w)
        return (t * alpha).detach() + (w - w.detach())

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[np.ndarray, N.Quantization]:
        t, alpha = self._parts(w)
        return t.numpy().astype(np.int64), N.Quantization(2, float(alpha))

    def spec(self) -> dict:
        return {"type": "ternary", "ratio": self.ratio}


def build_quantizer(spec: dict, shared: dict | None = None) -> nn.Module:
    """Rebuild a quantizer from its :meth:`spec` (checkpoints); ``shared`` maps shared codebook ids to
    already built codebooks so chip-scope sharing survives the round trip."""
    kind = spec["type"]
    if kind == "codebook":
        shared = {} if shared is None else shared
        sid = spec.get("shared_id")
        cb = shared.get(sid) if sid else None
        if cb is None:
            cb = Codebook(np.zeros((spec["G"], spec["M"])), spec["scale"], spec["bits"])
            if sid:
                shared[sid] = cb
        return CodebookQuantizer(cb, np.zeros(spec["rows"], dtype=np.int64), spec["scope"], spec["mode"], spec["tau"], sid,
                                 spec.get("zero", False), spec.get("fixed", False))
    if kind == "uniform":
        q = UniformQuantizer(spec["bits"], spec["scale"], learn_scale=not spec["frozen"], narrow=spec["narrow"])
        return q
    if kind == "ternary":
        return TernaryQuantizer(spec["ratio"])
    raise TrainingError(f"unknown quantizer type {kind!r} in checkpoint")


def quantizer_from_quantization(q: N.Quantization, w: np.ndarray, groups: np.ndarray | None) -> nn.Module:
    """A frozen-grid quantizer reproducing a connection's stored Quantization (``--init`` of a fitted
    model): its weights, already on the codebook / grid, map to themselves."""
    if q.codebook is None:
        return UniformQuantizer(q.weight_bits, q.scale, learn_scale=False)
    rows = w.shape[0]
    groups = np.zeros(rows, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    cb = Codebook(q.codebook, q.scale, q.weight_bits)
    return CodebookQuantizer(cb, groups, q.scope, zero=True)  # its zeros are absent synapses


# -- attaching CAT to a model ---------------------------------------------------------------------


@torch.no_grad()
def resize_rows(model, syn, keep: np.ndarray) -> None:
    """After neuron pruning removed rows of ``syn``: keep the codebook rows of the kept neurons
    ("neuron" scope); the kept rows keep their core group until :func:`regroup` re-places them."""
    q = syn.quant
    if not isinstance(q, CodebookQuantizer):
        return
    if q.scope == "neuron":
        old = q.codebook.centers.data[q.groups[keep]]
        q.codebook.centers = nn.Parameter(old.clone())
        q.sigma2 = q.sigma2[q.groups[keep]].clone()
        q.groups = torch.arange(len(keep))
    elif q.scope == "core":
        q.groups = q.groups[torch.as_tensor(keep)].clone()
    else:
        q.groups = torch.zeros(len(keep), dtype=torch.long)
