"""Fisher Spike Contribution (FSC): Fisher-information pruning of neurons and synapses.

A neuron's spike train is multiplied by a mask ``m_i`` (1 in the network). The empirical Fisher
information of that mask (Theis et al. 2018, applied to spike trains) estimates the loss increase
from removing the neuron::

    g_{n,i} = dL_n/dm_i = sum_t s_{n,i}(t) * dL_n/ds_{n,i}(t)        F_i = 1/(2N) sum_n g_{n,i}^2

and the same for a mask on one synapse ``w_ij``::

    g_{n,ij} = sum_t w_ij s_{n,j}(t) dL_n/da_{n,i}(t)                F_ij = 1/(2N) sum_n g_{n,ij}^2

Per-sample gradients are exact: the loss is summed over the batch (samples do not interact), the
neuron masks are (b, n) tensors and synapse gradients are per-sample outer products (einsum).
Pruning keeps the highest-scoring synapses under every budget of a target (fan-in per row, fan-out
per column, synapses and axons per core, total synapses) and removes the lowest-scoring hidden
neurons under the neuron and core budgets; see ``docs/method.md``.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import TrainingError
from .nn import SNN, Conv, Linear, Probe, Synapse, count_loss


# -- scores ---------------------------------------------------------------------------------------

def fisher_scores(model: SNN, x: torch.Tensor, y: torch.Tensor, logit_scale: float,
                  batch_size: int = 256) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """FSC scores over the samples ``x`` (t, N, ...), labels ``y`` (N,).

    :return: (neuron scores {population: (n,)}, synapse scores {connection: weight-shaped});
        pruned synapses score ``-inf`` so they are never chosen again.
    """
    n_total = x.shape[1]
    neuron: dict[str, torch.Tensor] = {}
    synapse: dict[str, torch.Tensor] = {}
    syns = {s.name: s for s in model.synapses()}
    weights = {k: s.effective_weight().detach() for k, s in syns.items()}
    for i in range(0, n_total, batch_size):
        probe = Probe()
        out = model(x[:, i:i + batch_size], probe)
        loss = count_loss(out, y[i:i + batch_size], logit_scale, reduction="sum")  # per-sample grads exact
        pops = list(probe.masks)
        recs = [(k, xa, a) for k, lst in probe.records.items() for xa, a in lst]
        grads = torch.autograd.grad(loss, [probe.masks[p] for p in pops] + [a for _, _, a in recs],
                                    allow_unused=True)
        for p, g in zip(pops, grads[:len(pops)]):
            if g is not None:
                neuron[p] = neuron.get(p, 0) + (g.reshape(g.shape[0], -1) ** 2).sum(0)
        per_sample: dict[str, torch.Tensor] = {}
        for (k, xa, _), ga in zip(recs, grads[len(pops):]):
            if ga is None:
                continue
            g = _per_sample_weight_grad(syns[k], xa, ga)
            per_sample[k] = per_sample.get(k, 0) + g
        for k, g in per_sample.items():
            synapse[k] = synapse.get(k, 0) + ((weights[k] * g) ** 2).sum(0)
    neuron_np = {p: (v / (2 * n_total)).numpy() for p, v in neuron.items()}
    synapse_np = {}
    for k, s in syns.items():
        v = synapse.get(k, torch.zeros_like(s.weight)) / (2 * n_total)
        synapse_np[k] = np.where(s.mask.numpy() > 0, v.numpy(), -np.inf)
    return neuron_np, synapse_np


def _per_sample_weight_grad(syn: Synapse, x: torch.Tensor, ga: torch.Tensor) -> torch.Tensor:
    """dL_n/dW for each sample n: (b, *weight.shape), summed over time steps."""
    if isinstance(syn, Conv):
        t, b = x.shape[:2] if x.dim() == 5 else (1, x.shape[0])
        xs = x.reshape(t * b, *x.shape[-3:])
        cols = F.unfold(xs, syn.weight.shape[2:], padding=syn.padding, stride=syn.stride)  # (tb, ckk, L)
        g = ga.reshape(t * b, syn.n_out, -1)                                               # (tb, c_out, L)
        per = torch.bmm(g, cols.transpose(1, 2)).reshape(t, b, *syn.weight.shape)
        return per.sum(0)
    b = x.shape[-2]
    return torch.einsum("tbo,tbi->boi", ga.reshape(-1, b, ga.shape[-1]), x.reshape(-1, b, x.shape[-1]))


def magnitude_scores(model: SNN) -> dict[str, np.ndarray]:
    """|w| of the effective (quantized) weights, ties (a codebook has few values) broken by the
    latent weight's magnitude; pruned synapses score -inf."""
    out = {}
    for s in model.synapses():
        w = s.effective_weight().detach().abs().double().numpy()
        latent = s.weight.detach().abs().double().numpy()
        gap = np.diff(np.unique(w)).min(initial=1.0) if w.size else 1.0
        tie = 0.5 * gap * latent / max(latent.max(), 1e-30)  # below the smallest gap: order kept
        out[s.name] = np.where(s.mask.numpy() > 0, w + tie, -np.inf)
    return out


def random_scores(model: SNN, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for s in model.synapses():
        out[s.name] = np.where(s.mask.numpy() > 0, rng.random(tuple(s.weight.shape)), -np.inf)
    return out


# -- budgets --------------------------------------------------------------------------------------

@dataclass
class Budget:
    """The pruning budgets of a target (None: unconstrained)."""

    neurons: int | None = None            # all populations, output included
    cores: int | None = None              # cores, with each layer packed in blocks of neurons_per_core
    neurons_per_core: int | None = None
    synapses: int | None = None           # total non-zero synapses
    synapses_per_core: int | None = None  # non-zero synapses into one core's neurons
    axons_per_core: int | None = None     # distinct presynaptic sources of one core
    fan_in: int | None = None             # non-zero incoming synapses per neuron
    fan_out: int | None = None            # outgoing non-zero synapses (or destination cores) per neuron
    fan_out_unit: str = "synapses"        # what fan_out counts: "synapses" | "cores"

    @classmethod
    def from_target(cls, target) -> "Budget":
        lim = target.limits
        return cls(lim.neurons, lim.cores, lim.neurons_per_core, lim.synapses, lim.synapses_per_core,
                   lim.axons_per_core, lim.fan_in, lim.fan_out, getattr(lim, "fan_out_unit", "synapses"))

    @property
    def prunes_synapses(self) -> bool:
        return any(v is not None for v in (self.synapses, self.synapses_per_core, self.axons_per_core,
                                           self.fan_in, self.fan_out))


def synapse_counts(syn: Synapse) -> np.ndarray:
    """How many synapses each weight entry stands for: 1 for dense; for a convolution, the number
    of output positions where the kernel entry meets an input (padding excluded)."""
    if not isinstance(syn, Conv):
        return np.ones(tuple(syn.weight.shape))
    c_in, h, w = syn.input_shape
    kh, kw = syn.weight.shape[2:]
    ones = torch.ones(1, 1, h, w)
    cols = F.unfold(ones, (kh, kw), padding=syn.padding, stride=syn.stride)  # (1, kh*kw, L)
    per_k = cols.sum(-1).reshape(kh, kw).numpy()
    return np.broadcast_to(per_k, tuple(syn.weight.shape)).copy()


def cores_used(model: SNN, npc: int | None) -> int:
    if not npc:
        return 0
    return sum(math.ceil(p.size / npc) for p in model.populations())


def usage(model: SNN) -> dict:
    """Neurons, synapses and the worst per-neuron fan-in / fan-out of the model (dense rows/columns)."""
    syns = model.synapses()
    synapses = int(sum((synapse_counts(s) * s.mask.numpy()).sum() for s in syns))
    fan_in = fan_out = 0
    for pop in model.populations():
        rows = [s.mask.numpy().reshape(s.n_out, -1) for s in model.incoming(pop) if isinstance(s, Linear)]
        if rows:
            fan_in = max(fan_in, int(np.concatenate(rows, 1).sum(1).max()))
        cols = [s.mask.numpy() for s in model.outgoing(pop) if isinstance(s, Linear)]
        if cols:
            fan_out = max(fan_out, int(np.concatenate(cols, 0).sum(0).max()))
    return {"neurons": sum(p.size for p in model.populations()), "synapses": synapses,
            "fan_in": fan_in, "fan_out": fan_out}


def check_feasible(model: SNN, budget: Budget, n_classes: int, target_name: str = "target") -> None:
    """Stop early, with the reason, when no classifier of this shape can meet the budgets."""
    hidden = len(model.populations()) - 1
    need = n_classes + hidden  # every hidden layer keeps at least one neuron
    if budget.neurons is not None and budget.neurons < need:
        raise TrainingError(f"target {target_name!r} allows {budget.neurons} neurons but the classifier needs "
                            f"{n_classes} output neurons plus {hidden} hidden; use a larger target or fewer classes")
    if budget.cores and budget.neurons_per_core:
        min_cores = math.ceil(n_classes / budget.neurons_per_core) + hidden
        if budget.cores < min_cores:
            raise TrainingError(f"target {target_name!r} has {budget.cores} cores but the classifier needs at least "
                                f"{min_cores} ({n_classes} outputs on {min_cores - hidden}, one per hidden layer); use a larger target")
    for name in ("fan_in", "synapses_per_core", "axons_per_core", "synapses"):
        if getattr(budget, name) == 0:
            raise TrainingError(f"target {target_name!r} allows 0 {name.replace('_', ' ')}; no network can fit")


# -- pruning --------------------------------------------------------------------------------------

def _set_masks(model: SNN, keep: dict[str, np.ndarray]) -> None:
    for s in model.synapses():
        if s.name in keep:
            with torch.no_grad():
                s.mask.mul_(torch.as_tensor(keep[s.name], dtype=s.mask.dtype))
    model.apply_masks()


def _topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask keeping the k highest finite scores of every row."""
    keep = np.zeros(scores.shape, dtype=bool)
    if k <= 0:
        return keep
    if k >= scores.shape[1]:
        return np.isfinite(scores)
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    np.put_along_axis(keep, idx, True, axis=1)
    return keep & np.isfinite(scores)


def prune_synapses(model: SNN, scores: dict[str, np.ndarray], budget: Budget,
                   neuron_scores: dict[str, np.ndarray] | None = None) -> None:
    """Zero the lowest-scoring synapses until every synapse budget holds (pruning is monotone, so
    one pass in this order satisfies all: fan-in, fan-out, per-core, total). With ``neuron_scores``
    and dense connections, the total budget may also take whole hidden neurons (see
    :func:`prune_to_sparsity`)."""
    syns = {s.name: s for s in model.synapses()}
    sc = {k: v.copy() for k, v in scores.items()}

    def drop(name, keep):
        sc[name] = np.where(keep, sc[name], -np.inf)

    for pop in model.populations():
        inc = [s for s in model.incoming(pop)]
        if budget.fan_in is not None:
            rows = np.concatenate([sc[s.name].reshape(s.n_out, -1) for s in inc], 1)
            keep = _topk_rows(rows, budget.fan_in)
            o = 0
            for s in inc:  # a conv row is a channel's kernel: top-k entries bound every position's fan-in
                k = sc[s.name][0].size
                drop(s.name, keep[:, o:o + k].reshape(sc[s.name].shape))
                o += k
        if budget.fan_out is not None:
            out = model.outgoing(pop)
            if any(isinstance(s, Conv) for s in out):
                raise TrainingError(f"population {pop.name!r} feeds a convolution; fan_out pruning supports dense "
                                    "connections only")
            if out:
                cols = np.concatenate([sc[s.name] for s in out], 0).T  # (pre, posts)
                if budget.fan_out_unit == "cores":
                    keep = _topk_cores(model, out, cols, budget).T
                else:
                    keep = _topk_rows(cols, budget.fan_out).T
                o = 0
                for s in out:
                    drop(s.name, keep[o:o + s.n_out])
                    o += s.n_out
        if budget.neurons_per_core and (budget.synapses_per_core or budget.axons_per_core):
            _prune_cores(model, pop, inc, sc, budget, drop)
    if budget.synapses is not None and neuron_scores is not None and all(isinstance(s, Linear) for s in syns.values()):
        _set_masks(model, {k: np.isfinite(v) for k, v in sc.items()})
        _greedy_neurons_and_synapses(model, sc, neuron_scores, budget.synapses)
        return
    if budget.synapses is not None:
        counts = {k: synapse_counts(syns[k]) for k in sc}
        flat = np.concatenate([sc[k].ravel() for k in sc])
        cnt = np.concatenate([counts[k].ravel() for k in sc])
        order = np.argsort(-flat, kind="stable")
        alive = np.isfinite(flat[order])
        total = np.cumsum(np.where(alive, cnt[order], 0))
        keep_flat = np.zeros(flat.size, dtype=bool)
        keep_flat[order[(total <= budget.synapses) & alive]] = True
        o = 0
        for k in sc:
            n = sc[k].size
            drop(k, keep_flat[o:o + n].reshape(sc[k].shape))
            o += n
    _set_masks(model, {k: np.isfinite(v) for k, v in sc.items()})


def _topk_cores(model: SNN, out: list[Synapse], cols: np.ndarray, budget: Budget) -> np.ndarray:
    """fan_out in cores: every presynaptic neuron keeps the synapses into its ``fan_out`` best
    destination cores (summed score); cores are blocks of neurons_per_core neurons of each layer."""
    npc = budget.neurons_per_core or max(s.n_out for s in out)
    core = np.concatenate([np.arange(s.n_out) // npc + 10 ** 6 * k for k, s in enumerate(out)])
    ids, core = np.unique(core, return_inverse=True)
    finite = np.where(np.isfinite(cols), cols, 0.0)
    per_core = np.zeros((cols.shape[0], len(ids)))
    np.add.at(per_core.T, core, finite.T)                   # (pre, cores) summed scores
    used = np.zeros_like(per_core, dtype=bool)
    np.logical_or.at(used.T, core, np.isfinite(cols).T)
    best = _topk_rows(np.where(used, per_core, -np.inf), budget.fan_out)  # (pre, cores)
    return best[:, core] & np.isfinite(cols)


def _prune_cores(model: SNN, pop, inc: list[Synapse], sc: dict, budget: Budget, drop) -> None:
    """Per core (block of neurons_per_core rows of the population): keep the top synapses_per_core
    synapses and the top axons_per_core presynaptic sources (by summed score)."""
    if any(isinstance(s, Conv) for s in inc):
        raise TrainingError(f"population {pop.name!r} is fed by a convolution; per-core pruning supports dense "
                            "connections only")
    npc = budget.neurons_per_core
    rows = np.concatenate([sc[s.name] for s in inc], 1)  # (n, sources)
    keep = np.isfinite(rows)
    for start in range(0, rows.shape[0], npc):
        block = rows[start:start + npc]
        kb = keep[start:start + npc]
        if budget.axons_per_core is not None:
            col = np.where(np.isfinite(block), block, 0).sum(0)
            used = np.isfinite(block).any(0)
            if used.sum() > budget.axons_per_core:
                ranked = np.argsort(-np.where(used, col, -np.inf), kind="stable")[:budget.axons_per_core]
                allowed = np.zeros(block.shape[1], dtype=bool)
                allowed[ranked] = True
                kb &= allowed[None, :]
        if budget.synapses_per_core is not None:
            vals = np.where(kb, block, -np.inf).ravel()
            if np.isfinite(vals).sum() > budget.synapses_per_core:
                top = np.argsort(-vals, kind="stable")[:budget.synapses_per_core]
                k2 = np.zeros(vals.size, dtype=bool)
                k2[top] = True
                kb &= k2.reshape(kb.shape)
        keep[start:start + npc] = kb
    o = 0
    for s in inc:
        k = s.weight.shape[1]
        drop(s.name, keep[:, o:o + k])
        o += k


def prune_to_sparsity(model: SNN, scores: dict[str, np.ndarray], fraction: float, per_layer: bool = False,
                      neuron_scores: dict[str, np.ndarray] | None = None) -> None:
    """Zero the lowest-scoring weights so that ``fraction`` of all weights (of each connection with
    ``per_layer``) are zero. Scores already ``-inf`` (pruned) count towards the fraction.

    With ``neuron_scores`` (FSC's F_i) a hidden neuron may go as a whole: one ranking by loss
    increase per freed synapse, over single synapses (F_ij) and whole neurons (F_i / k_i for a
    neuron with k_i remaining synapses, in and out), see :func:`_greedy_neurons_and_synapses`."""
    if not 0.0 <= fraction < 1.0:
        raise TrainingError(f"sparsity {fraction} must lie in [0, 1)")
    if neuron_scores is not None and not per_layer:
        total = sum(v.size for v in scores.values())
        _greedy_neurons_and_synapses(model, scores, neuron_scores, int(round(total * (1.0 - fraction))))
        return
    groups = [[k] for k in scores] if per_layer else [list(scores)]
    keep = {}
    for names in groups:
        flat = np.concatenate([scores[k].ravel() for k in names])
        n_keep = int(round(flat.size * (1.0 - fraction)))
        order = np.argsort(-flat, kind="stable")
        mask = np.zeros(flat.size, dtype=bool)
        mask[order[:n_keep]] = True
        mask &= np.isfinite(flat)
        o = 0
        for k in names:
            keep[k] = mask[o:o + scores[k].size].reshape(scores[k].shape)
            o += scores[k].size
    _set_masks(model, keep)


def _neuron_units(model: SNN) -> list[tuple[str, int, list[tuple[str, tuple]]]]:
    """Hidden neurons between dense connections: (population, index, [(connection, weight index)])
    where the index selects the neuron's row (incoming) or column (outgoing)."""
    units = []
    for pop in model.populations()[:-1]:
        inc, out = model.incoming(pop), model.outgoing(pop)
        if len(pop.shape) != 1 or not all(isinstance(s, Linear) for s in inc + out):
            continue
        for i in range(pop.size):
            parts = [(s.name, (i, slice(None))) for s in inc] + [(s.name, (slice(None), i)) for s in out]
            units.append((pop.name, i, parts))
    return units


def _greedy_neurons_and_synapses(model: SNN, scores: dict[str, np.ndarray], neuron_scores: dict[str, np.ndarray],
                                 n_keep: int) -> None:
    """Free synapses in order of loss increase per freed synapse until ``n_keep`` remain: a synapse
    costs F_ij for 1; a hidden neuron costs F_i for its k_i synapses still present, so its price per
    synapse rises as its cheap synapses go first (a lazily updated heap keeps the order exact). A
    neuron whose removal would free more synapses than are still to be freed is skipped, so the count
    is met exactly."""
    alive = {k: np.isfinite(v) for k, v in scores.items()}
    to_free = sum(int(a.sum()) for a in alive.values()) - n_keep
    if to_free <= 0:
        return
    heap: list[tuple[float, int, int]] = []  # (cost per synapse, kind 0 synapse / 1 neuron, id)
    flat = []
    for name, v in scores.items():
        idx = np.flatnonzero(alive[name])
        base = len(flat)
        flat.extend((name, int(j)) for j in idx)
        heap.extend(zip(v.ravel()[idx].tolist(), [0] * len(idx), range(base, base + len(idx))))
    units = _neuron_units(model)

    def present(parts) -> int:
        return sum(int(alive[n][ix].sum()) for n, ix in parts)

    for u, (pop, i, parts) in enumerate(units):
        k = present(parts)
        if k:
            heap.append((float(neuron_scores[pop][i]) / k, 1, u))
    heapq.heapify(heap)
    while heap and to_free > 0:
        cost, kind, ident = heapq.heappop(heap)
        if kind == 0:
            name, j = flat[ident]
            cell = alive[name].reshape(-1)
            if cell[j]:
                cell[j] = False
                to_free -= 1
            continue
        pop, i, parts = units[ident]
        k = present(parts)
        if k == 0:
            continue
        now = float(neuron_scores[pop][i]) / k
        if now > cost * (1 + 1e-12) + 1e-300:   # fewer synapses left than when queued: re-queue at its price
            heapq.heappush(heap, (now, 1, ident))
        elif k <= to_free:
            for n, ix in parts:
                alive[n][ix] = False
            to_free -= k
    _set_masks(model, alive)


def sparsity(model: SNN) -> float:
    """Fraction of all weight entries that are zero (pruned)."""
    total = sum(s.mask.numel() for s in model.synapses())
    return 1.0 - sum(s.nonzero() for s in model.synapses()) / total


def neuron_plan(model: SNN, scores: dict[str, np.ndarray], budget: Budget) -> dict[str, np.ndarray]:
    """Which hidden neurons to keep ({population: sorted indices}) so that the neuron and core budgets
    hold: the globally lowest-F_i hidden neurons go first; output neurons are never removed."""
    pops = model.populations()[:-1]
    out_pop = model.output_population()
    limit = None if budget.neurons is None else budget.neurons - out_pop.size
    npc = budget.neurons_per_core
    entries = [(float(scores[p.name][i]), p.name, i) for p in pops for i in range(p.size)]
    entries.sort(key=lambda e: -e[0])
    keep = {p.name: [] for p in pops}
    n_keep = len(entries) if limit is None else min(limit, len(entries))

    def cores(k):
        chosen = {p.name: 0 for p in pops}
        for _, name, _ in entries[:k]:
            chosen[name] += 1
        return sum(math.ceil(max(c, 1) / npc) for c in chosen.values()) + math.ceil(out_pop.size / npc)

    if budget.cores and npc:
        while n_keep > len(pops) and cores(n_keep) > budget.cores:
            n_keep -= 1
    for _, name, i in entries[:n_keep]:
        keep[name].append(i)
    for p in pops:  # every hidden layer keeps its best neuron
        if not keep[p.name]:
            keep[p.name] = [int(np.argmax(scores[p.name]))]
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in keep.items()}


def remove_dead_neurons(model: SNN, neurons_per_core: int | None = None) -> int:
    """Remove hidden neurons that pruning left without input (and without bias: they never spike) or
    without output (their spikes reach nothing); every hidden layer keeps at least one neuron.
    Returns how many were removed."""
    removed, changed = 0, True
    while changed:  # removing one layer's neurons can leave the next layer's without input
        changed = False
        names = {u[0] for u in _neuron_units(model)}
        for p in [p for p in model.populations() if p.name in names]:  # model order: deterministic
            inc = np.concatenate([s.mask.numpy().reshape(s.n_out, -1) for s in model.incoming(p)], 1).any(1)
            out = np.concatenate([s.mask.numpy() for s in model.outgoing(p)], 0).any(0)
            has_bias = np.zeros(p.size, dtype=bool) if p.bias is None else p.bias.detach().numpy().reshape(-1) != 0
            keep = np.flatnonzero((inc | has_bias) & out)
            if len(keep) == 0:
                keep = np.array([0])
            if len(keep) < p.size:
                removed += p.size - len(keep)
                model.remove_neurons(p.name, keep, neurons_per_core)
                changed = True
    return removed


def prune_neurons(model: SNN, scores: dict[str, np.ndarray], budget: Budget) -> int:
    """Remove hidden neurons to meet the neuron and core budgets; returns how many were removed."""
    plan = neuron_plan(model, scores, budget)
    removed = 0
    for name, keep in plan.items():
        pop = model.stage(name)
        if len(keep) < pop.size:
            removed += pop.size - len(keep)
            model.remove_neurons(name, keep, budget.neurons_per_core)
    return removed


def interpolate(budget: Budget, model: SNN, progress: float) -> Budget:
    """The budget of an intermediate pruning round: geometric interpolation between the model's
    current usage (progress 0) and the target budget (progress 1)."""
    use = usage(model)
    now = {"neurons": use["neurons"], "synapses": use["synapses"], "fan_in": use["fan_in"],
           "fan_out": use["fan_out"]}

    def mix(key):
        goal = getattr(budget, key)
        if goal is None or key not in now or now[key] <= goal:
            return goal
        return int(math.floor(now[key] * (goal / now[key]) ** progress)) if progress < 1 else goal

    fan_out = budget.fan_out if budget.fan_out_unit == "cores" else mix("fan_out")
    return Budget(mix("neurons"), budget.cores, budget.neurons_per_core, mix("synapses"),
                  budget.synapses_per_core, budget.axons_per_core, mix("fan_in"), fan_out, budget.fan_out_unit)


def _fan_out_cores(model: SNN, budget: Budget) -> int:
    """Largest number of destination cores (per-layer blocks of neurons_per_core) of one neuron."""
    worst = 0
    for pop in model.populations():
        out = [s for s in model.outgoing(pop) if isinstance(s, Linear)]
        if not out:
            continue
        npc = budget.neurons_per_core or max(s.n_out for s in out)
        cols = np.concatenate([s.mask.numpy() for s in out], 0).T > 0
        core = np.concatenate([np.arange(s.n_out) // npc + 10 ** 6 * k for k, s in enumerate(out)])
        _, core = np.unique(core, return_inverse=True)
        hit = np.zeros((cols.shape[0], core.max() + 1), dtype=bool)
        np.logical_or.at(hit.T, core, cols.T)
        worst = max(worst, int(hit.sum(1).max()))
    return worst


def binding(budget: Budget, model: SNN) -> list[str]:
    """The budgets the model currently exceeds (empty: nothing to prune)."""
    use = usage(model)
    keys = ("neurons", "synapses", "fan_in") + (("fan_out",) if budget.fan_out_unit == "synapses" else ())
    out = [k for k in keys if getattr(budget, k) is not None and use[k] > getattr(budget, k)]
    if budget.fan_out is not None and budget.fan_out_unit == "cores" and _fan_out_cores(model, budget) > budget.fan_out:
        out.append("fan_out")
    if budget.cores and budget.neurons_per_core and cores_used(model, budget.neurons_per_core) > budget.cores:
        out.append("cores")
    if budget.neurons_per_core and (budget.synapses_per_core or budget.axons_per_core):
        for pop in model.populations():
            inc = np.concatenate([s.mask.numpy().reshape(s.n_out, -1) for s in model.incoming(pop)], 1)
            for start in range(0, inc.shape[0], budget.neurons_per_core):
                blk = inc[start:start + budget.neurons_per_core]
                if budget.synapses_per_core and blk.sum() > budget.synapses_per_core:
                    out.append("synapses_per_core")
                if budget.axons_per_core and blk.any(0).sum() > budget.axons_per_core:
                    out.append("axons_per_core")
    return sorted(set(out))
