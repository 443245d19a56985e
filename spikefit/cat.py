"""Clusterization-Aware Training (CAT): a learnable codebook of M weight values per scope group.

Every connection's weights are drawn from a codebook row ``C[g]`` of M values, one row per scope
group (a neuron, a core's block of neurons, a layer, or the whole chip). Codebook values live on the
chip's integer grid ``scale * q`` with ``q`` a signed ``weight_bits`` integer, never zero (zero means
"no synapse"). The formulation, the two assignment modes and the measurements that chose the default
are in ``docs/method.md``:

* ``hard``: nearest-centroid assignment, straight-through gradients (a weight's gradient goes to its
  latent weight unchanged and is summed into its centroid);
* ``soft``: DKM-like attention ``softmax(-(w - c)^2 / (tau * sigma^2))`` with tau annealed, then hard.

Without a unique-weight limit, CAT is plain quantization-aware training on the uniform integer
grid with a learned layer scale (:class:`UniformQuantizer`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import network as N
from .errors import TrainingError

MODES = ("hard", "soft")
KMEANS_ITERS = 25           # Lloyd iterations of the codebook initialisation (1-D, converges in ~10)


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


def power_of_two_scale(max_abs: float, qmax: int, vth: float) -> float:
    """The finest scale ``vth / 2^k`` that still holds ``max_abs`` within ``qmax`` steps.

    A power-of-two divisor of the threshold keeps ``vth / scale`` an integer (the chip's threshold
    mantissa) and makes ``scale * q`` exact in binary floating point, so float training and the
    integer chip sum the same values."""
    max_abs = max(float(max_abs), 1e-12)
    k = math.floor(math.log2(qmax * vth / max_abs))
    return vth / 2.0 ** k


# -- scope groups ------------------------------------------------------------------------------

def scope_groups(scope: str, rows: int) -> np.ndarray:
    """Codebook row of every weight row (output neuron, or output channel of a convolution) for the
    scopes a layer decides alone; "core" groups come from the placement (:func:`core_groups`)."""
    if scope in ("layer", "chip"):
        return np.zeros(rows, dtype=np.int64)
    if scope == "neuron":
        return np.arange(rows, dtype=np.int64)
    if scope == "core":
        raise TrainingError("core codebook groups come from the target's placement; pass core_groups to attach_cat")
    raise TrainingError(f"unknown codebook scope {scope!r}; use one of {', '.join(N.SCOPES)}")


def core_groups(model, target) -> tuple[dict[str, np.ndarray], int]:
    """One codebook per core, shared by every layer the one placement puts on that core: the group of
    every weight row of every connection (see :meth:`spikefit.placement.Placement.core_groups`)."""
    from .placement import place

    placement = place(model.to_network(), target)
    rows = {}
    for s in model.synapses():
        n_rows, positions = _rows_positions(s)
        rows[s.name] = (model.post_of(s).name, positions)
    return placement.core_groups(rows)


def kmeans_1d(values: list[np.ndarray], M: int, zero: bool = False) -> np.ndarray:
    """k-means of each group's 1-D values into M centers, initialised at the quantiles
    (k + 1/2) / M; returns (groups, M). With ``zero`` a further center is pinned at 0 (values
    nearest to it are absent synapses) and only the M others move. Empty groups get evenly
    spaced centers in [-1, 1]."""
    out = np.zeros((len(values), M))
    q = (np.arange(M) + 0.5) / M
    for g, v in enumerate(values):
        if v.size == 0:
            out[g] = np.linspace(-1, 1, M)
            continue
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


class CodebookQuantizer(nn.Module):
    """Maps latent weights (rows, ...) to their group's codebook values.

    ``groups[r]`` is the codebook row of weight row ``r`` (an output neuron, or a conv channel).
    """

    def __init__(self, codebook: Codebook, groups: np.ndarray, scope: str, mode: str = "hard",
                 tau: float = 1.0, shared_id: str | None = None, zero: bool = False):
        super().__init__()
        if mode not in MODES:
            raise TrainingError(f"unknown CAT mode {mode!r}; use one of {', '.join(MODES)}")
        self.codebook = codebook
        self.register_buffer("groups", torch.as_tensor(groups, dtype=torch.long))
        self.scope, self.mode, self.tau, self.shared_id = scope, mode, float(tau), shared_id
        self.zero = bool(zero)  # 0 (no synapse) is a further, free level: not a codebook value
        self.register_buffer("sigma2", torch.ones(codebook.centers.shape[0]))  # per-group weight variance

    @property
    def M(self) -> int:
        return int(self.codebook.centers.shape[1])

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
            srt, order = levels[0].sort()
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
        if self.mode == "hard":
            if self._single():                                 # layer / chip scope: one row of levels
                lv = self._group_levels()[0]                   # (L,)
                q = lv[self._nearest(rows.detach(), lv.detach()[None], True)]
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
                "shared_id": self.shared_id, "zero": self.zero}


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
                                 spec.get("zero", False))
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

@dataclass
class CatSpec:
    """What CAT must produce: the trainer derives it from the target's limits (``trainer.cat_spec``: M
    capped by the deploy grid), the benchmarks set it directly. Core groups come from the placement."""

    M: int | None                        # distinct non-zero values per group; None: uniform grid (QAT)
    scope: str = "layer"                 # "neuron" | "core" | "layer" | "chip"
    weight_bits: int | None = None       # signed integer precision; None: no integer grid
    weight_scaling: str = "layer"        # one scale per "layer", per "chip", or "none" (integers)
    mode: str = "hard"                   # centroid assignment: "hard" (STE) or "soft" (annealed DKM)
    zero: bool = True                    # 0 (absent synapse) is a free extra level, not one of the M
    layer_bits: tuple = ()               # ((connection, bits, narrow), ...): a layer's own grid (layer_grids)

    def __post_init__(self):
        self.layer_bits = tuple((str(n), int(b), bool(w)) for n, b, w in self.layer_bits)
        grid = weight_grid(self.weight_bits)
        if self.M is not None and grid is not None and self.M > grid[1] - grid[0]:
            raise TrainingError(f"unique_weights M={self.M} exceeds the {grid[1] - grid[0]} non-zero values of a "
                                f"{self.weight_bits}-bit weight; lower unique_weights or raise weight_bits")
        if self.M is not None and self.M < 1:
            raise TrainingError(f"unique_weights M={self.M} must be at least 1")
        if self.mode not in MODES:
            raise TrainingError(f"unknown CAT mode {self.mode!r}; use one of {', '.join(MODES)}")

    @property
    def active(self) -> bool:
        return self.M is not None or self.weight_bits is not None

    def grid_of(self, name: str) -> tuple[int | None, bool]:
        """(bits, narrow) of connection ``name``: its own grid, else weight_bits (two's complement)."""
        for n, bits, narrow in self.layer_bits:
            if n == name:
                return bits, narrow
        return self.weight_bits, False


def layer_grids(model, target) -> tuple:
    """Per-connection grids a target's rule set asks for (e.g. Akida: 4-bit symmetric [-7, 7], 8 bits in
    an input convolution): the ``weight_grids(model)`` of the catalog module whose ``RULES`` serve the
    target, as ``((connection, bits, narrow), ...)``; () when none does."""
    import importlib
    from importlib import resources

    if target is None:
        return ()
    folder = resources.files("spikefit.targets")
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if not p.name.endswith(".py") or p.name.startswith("_"):
            continue
        mod = importlib.import_module(f"spikefit.targets.{p.name[:-3]}")
        rules, grids = getattr(mod, "RULES", None), getattr(mod, "weight_grids", None)
        if rules is not None and grids is not None and (target.name in rules.targets or rules.name in target.rule_tables):
            return tuple((n, int(b), bool(w)) for n, (b, w) in grids(model).items())
    return ()


def _rows_positions(syn) -> tuple[int, int]:
    from .nn import Conv

    if isinstance(syn, Conv):
        return syn.n_out, int(np.prod(syn.output_shape[1:]))
    return syn.n_out, 1


@torch.no_grad()
def attach_cat(model, spec: CatSpec, groups: tuple[dict[str, np.ndarray], int] | None = None) -> None:
    """Give every connection its CAT quantizer, initialised from its current (float) weights.

    :param groups: for the "core" scope, the codebook group of every weight row and the number of
        groups (:func:`core_groups`): one codebook shared by all the layers on a core."""
    model.weight_scaling = spec.weight_scaling
    if not spec.active:
        return
    grid = weight_grid(spec.weight_bits)
    syns = model.synapses()
    scales = {}
    for s in syns:
        vth = model.post_of(s).vth
        w = s.weight * s.mask
        own = weight_grid(*spec.grid_of(s.name))
        scales[s.name] = power_of_two_scale(w.abs().max(), own[1], vth) if own else None
    if grid and spec.weight_scaling == "chip":
        common = max(scales.values())  # the coarsest grid holds every layer's weights
        scales = {k: common for k in scales}
    if spec.M is None:  # no codebook limit: QAT on the uniform integer grid, learned scale
        for s in syns:
            s.quant = UniformQuantizer(*spec.grid_of(s.name)[:1], scales[s.name], narrow=spec.grid_of(s.name)[1])
        return
    shared = None
    if spec.scope in ("chip", "core"):  # one codebook module for every connection, on the coarsest grid
        if spec.scope == "core" and groups is None:
            raise TrainingError("the core scope needs the placement's groups: attach_cat(model, spec, core_groups(model, target))")
        G = groups[1] if spec.scope == "core" else 1
        shared = Codebook(np.zeros((G, spec.M)), max(scales.values()) if grid else None, spec.weight_bits)
    for s in syns:
        rows, positions = _rows_positions(s)
        g = groups[0][s.name] if spec.scope == "core" else scope_groups(spec.scope, rows)
        cb = shared or Codebook(np.zeros((int(g.max()) + 1, spec.M)), scales[s.name], spec.grid_of(s.name)[0])
        s.quant = CodebookQuantizer(cb, g, spec.scope, spec.mode, shared_id=spec.scope if shared else None,
                                    zero=spec.zero)
    if shared is not None:  # one k-means per group over every connection's weights in it
        _init_shared(syns, shared, spec.M, spec.zero)
    else:
        for s in syns:
            s.quant.init_from(s.weight, s.mask)


def _init_shared(syns, cb: Codebook, M: int, zero: bool) -> None:
    G = cb.centers.shape[0]
    per = [[] for _ in range(G)]
    for s in syns:
        for g, v in enumerate(_grouped_values(s.weight.detach().numpy(), s.mask.numpy(), s.quant.groups.numpy(), G)):
            per[g].append(v)
    vals = [np.concatenate(v) for v in per]
    cb.centers.data = torch.as_tensor(kmeans_1d(vals, M, zero), dtype=torch.float32)
    var = torch.as_tensor([max(float(v.var()), 1e-8) if v.size else 1.0 for v in vals], dtype=torch.float32)
    for s in syns:
        s.quant.sigma2 = var.clone()


@torch.no_grad()
def regroup(model, groups: tuple[dict[str, np.ndarray], int]) -> None:
    """After the placement changed (neurons pruned): new core groups for the shared core codebook,
    re-initialised by k-means of the current weights of each group."""
    syns = [s for s in model.synapses() if isinstance(s.quant, CodebookQuantizer) and s.quant.scope == "core"]
    if not syns:
        return
    cb = syns[0].quant.codebook
    cb.centers = nn.Parameter(torch.zeros(groups[1], cb.centers.shape[1]))
    for s in syns:
        s.quant.groups = torch.as_tensor(groups[0][s.name], dtype=torch.long)
    _init_shared(syns, cb, syns[0].quant.M, syns[0].quant.zero)


@torch.no_grad()
def distinct_levels(model) -> None:
    """Make every codebook row hold M distinct integers: a centre that rounds onto a value its row
    already holds moves to the nearest free non-zero integer of the grid (when the grid has room)."""
    seen_books = set()
    for q in codebook_quantizers(model):
        cb = q.codebook
        if id(cb) in seen_books or cb.scale is None:
            continue
        seen_books.add(id(cb))
        qmin, qmax = cb.grid
        ints = cb.integers().detach().round().numpy().astype(np.int64)
        for row in ints:
            if len(set(row.tolist())) == len(row) or qmax - qmin < len(row):
                continue
            taken: set[int] = set()
            for j in np.argsort(np.abs(row), kind="stable"):
                v, d = int(row[j]), 0
                while True:
                    cand = [c for c in (v + d, v - d) if c != 0 and qmin <= c <= qmax and c not in taken]
                    if cand:
                        row[j] = cand[0]
                        break
                    d += 1
                taken.add(int(row[j]))
        cb.centers.data = torch.as_tensor(ints * cb.scale, dtype=torch.float32)


def codebook_quantizers(model) -> list[CodebookQuantizer]:
    return [s.quant for s in model.synapses() if isinstance(s.quant, CodebookQuantizer)]


def set_tau(model, tau: float) -> None:
    for q in codebook_quantizers(model):
        q.tau = float(tau)


def anneal_tau(progress: float, tau0: float, tau1: float) -> float:
    """Exponential annealing from ``tau0`` (progress 0) to ``tau1`` (progress 1)."""
    p = min(max(progress, 0.0), 1.0)
    return tau0 * (tau1 / tau0) ** p


@torch.no_grad()
def harden(model) -> None:
    """End of CAT: hard assignment everywhere, uniform scales frozen on ``vth / 2^k``, and latent
    weights moved onto their assigned values (the deployed weights are what the model computes)."""
    distinct_levels(model)
    for s in model.synapses():
        q = s.quant
        if isinstance(q, CodebookQuantizer):
            q.mode = "hard"
            s.weight.copy_(q(s.weight))
        elif isinstance(q, UniformQuantizer) and q.frozen_scale is None:
            q.freeze(model.post_of(s).vth)
            s.weight.copy_(q(s.weight))
    if model.weight_scaling == "chip":  # one scale for all uniform grids
        uni = [s for s in model.synapses() if isinstance(s.quant, UniformQuantizer)]
        if uni:
            common = max(s.quant.scale for s in uni)
            for s in uni:
                s.quant.freeze(None)
                s.quant.frozen_scale = common
                s.quant.log_scale.fill_(math.log(common))
                s.weight.copy_(s.quant(s.weight))
    model.apply_masks()


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


def distinct_per_group(model) -> dict[str, int]:
    """Largest number of distinct non-zero exported weights over the scope groups of each connection."""
    out = {}
    for s in model.synapses():
        if s.quant is None:
            continue
        ints, quant = s.quant.export(s.weight.detach())
        ints = np.where(s.mask.numpy().astype(bool), ints, 0).reshape(ints.shape[0], -1)
        groups = getattr(s.quant, "groups", None)
        groups = np.zeros(ints.shape[0], dtype=int) if groups is None else groups.numpy()
        worst = 0
        for g in np.unique(groups):
            v = ints[groups == g]
            worst = max(worst, len(np.unique(v[v != 0])))
        out[s.name] = worst
    return out
