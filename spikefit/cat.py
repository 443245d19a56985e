"""Clusterization-Aware Training (CAT): a learnable codebook of M weight values per scope group.

Every connection's weights are drawn from a codebook row ``C[g]`` of M values, one row per scope
group (a neuron, a core of the placement with every layer on it, a layer, or the whole chip). Codebook values live on the
chip's integer grid ``scale * q`` with ``q`` a signed ``weight_bits`` integer, never zero (zero means
"no synapse"). The formulation, the three modes and the measurements that chose the default are in
``docs/method.md``:

* ``hard`` (default): nearest-centroid assignment, straight-through gradients (a weight's gradient
  goes to its latent weight unchanged and is summed into its centroid);
* ``lloyd``: the same assignment; after every training step each codebook value moves to the mean
  of the latent weights assigned to it (one Lloyd step, :func:`lloyd_step`). When CAT ends
  (:func:`harden`) the codebook becomes a gradient parameter: pruning rounds and fine-tuning learn
  its values as in ``hard``;
* ``soft``: attention ``softmax(-(w - c)^2 / (tau * sigma^2))`` with tau annealed, then hard (the
  centroids are learned by gradient; DKM's EM re-estimation is :mod:`spikefit.compress.quantizers_qat`).

Without a unique-weight limit, CAT is plain quantization-aware training on the uniform integer
grid with a learned layer scale (:class:`UniformQuantizer`). The quantizer modules themselves live in
:mod:`spikefit.quantizers` (re-exported here), which ``spikefit.nn`` imports without importing CAT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import network as N
from .errors import TrainingError
from .nn import Conv
from .quantizers import (KMEANS_ITERS, MODES, Codebook, CodebookQuantizer, TernaryQuantizer,  # noqa: F401 (re-exported)
                         UniformQuantizer, _grouped_values, build_quantizer, kmeans_1d, lloyd_accumulate, lloyd_means,
                         quantizer_from_quantization, resize_rows, round_ste, weight_grid)

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


def resolve_mode(mode: str, scope: str) -> str:
    """CAT's codebook update for ``mode`` at ``scope``: "auto" is "lloyd" where a codebook row is shared
    by many neurons' weights (``layer``, ``core``, ``chip``) and "hard" with one row per neuron, where
    each row holds one neuron's fan-in (docs/method.md: "CAT's codebook: gradient or Lloyd steps")."""
    if mode == "auto":
        return "hard" if scope == "neuron" else "lloyd"
    if mode not in MODES:
        raise TrainingError(f"unknown CAT mode {mode!r}; use one of auto, {', '.join(MODES)}")
    return mode


@dataclass
class CatSpec:
    """What CAT must produce: the trainer derives it from the target's limits (``trainer.cat_spec``: M
    capped by the deploy grid), the benchmarks set it directly. Core groups come from the placement."""

    M: int | None                        # distinct non-zero values per group; None: uniform grid (QAT)
    scope: str = "layer"                 # "neuron" | "core" | "layer" | "chip"
    weight_bits: int | None = None       # signed integer precision; None: no integer grid
    weight_scaling: str = "layer"        # one scale per "layer", per "chip", or "none" (integers)
    mode: str = "auto"                   # codebook update: "hard" (STE gradient), "lloyd", "soft" (annealed DKM);
                                         # "auto": resolved by the scope (:func:`resolve_mode`)
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
        self.mode = resolve_mode(self.mode, self.scope)

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
        # a connection pruned to nothing (pruning before CAT) holds only zeros: the grid of its latent weights
        amax = float((s.weight * s.mask).abs().max()) or float(s.weight.abs().max()) or vth
        own = weight_grid(*spec.grid_of(s.name))
        scales[s.name] = power_of_two_scale(amax, own[1], vth) if own else None
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


@torch.no_grad()
def lloyd_step(model) -> None:
    """One Lloyd step of every codebook in "lloyd" mode: each value becomes the mean of the unpruned
    latent weights assigned to it, pooled over every connection that shares the codebook; a value
    no weight is assigned to stays; 0 (an absent synapse) stays pinned. On the model's device,
    without a wait for the host."""
    books: dict[int, tuple[Codebook, list]] = {}
    for s in model.synapses():
        q = s.quant
        if isinstance(q, CodebookQuantizer) and q.mode == "lloyd":
            books.setdefault(id(q.codebook), (q.codebook, []))[1].append(s)
    for cb, syns in books.values():
        G, M = cb.centers.shape
        L = M + 1                                          # the zero level, when a quantizer has it, is bin M
        sums = torch.zeros(G * L, device=cb.centers.device)
        counts = torch.zeros(G * L, device=cb.centers.device)
        for s in syns:
            rows = s.weight.detach().reshape(s.weight.shape[0], -1)
            keep = (s.mask.reshape(rows.shape) != 0).to(rows.dtype)
            lloyd_accumulate(sums, counts, s.quant.groups, s.quant.assign(s.weight), rows, L, keep)
        cb.centers.copy_(lloyd_means(cb.centers, sums, counts))


def codebook_quantizers(model) -> list[CodebookQuantizer]:
    return [s.quant for s in model.synapses() if isinstance(s.quant, CodebookQuantizer)]


def set_tau(model, tau: float) -> None:
    for q in codebook_quantizers(model):
        q.tau = float(tau)


def anneal_tau(progress: float, tau0: float, tau1: float) -> float:
    """Exponential annealing from ``tau0`` (progress 0) to ``tau1`` (progress 1)."""
    p = min(max(progress, 0.0), 1.0)
    return tau0 * (tau1 / tau0) ** p


def fix_codebooks(model) -> None:
    """Fine-tuning: every codebook keeps its values and the weights settle on them. A value that
    still learns can round onto the next integer of a coarse grid and move every weight it holds at
    once (measured: docs/method.md, "Fine-tuning on fixed codebook values")."""
    for q in codebook_quantizers(model):
        q.fix()


@torch.no_grad()
def harden(model) -> None:
    """End of CAT: hard assignment everywhere, uniform scales frozen on ``vth / 2^k``, and latent
    weights moved onto their assigned values (the deployed weights are what the model computes)."""
    distinct_levels(model)
    for s in model.synapses():
        q = s.quant
        if isinstance(q, CodebookQuantizer):
            if q.mode == "lloyd" and not q.fixed:       # later stages learn the values by gradient
                q.codebook.centers.requires_grad_(True)
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
