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

import copy
import heapq
import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .errors import TrainingError
from .nn import SNN, Conv, Linear, Probe, Synapse, count_loss
from .placement import Placement, count_cores
from .spec import Limits, TargetSpec


# -- scores ---------------------------------------------------------------------------------------

PER_SAMPLE_ELEMENTS = 1 << 24   # per-sample gradients held at once (64 MiB of float32); samples are chunked to it


def fisher_scores(model: SNN, x: torch.Tensor, y: torch.Tensor, logit_scale: float,
                  batch_size: int = 256, device: torch.device | str | None = None, shrinkage: float = 0.0
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """FSC scores over the samples ``x`` (t, N, ...), labels ``y`` (N,).

    Per-sample synapse gradients are formed a few samples at a time (at most ``PER_SAMPLE_ELEMENTS``
    values), squared and summed at once, so a layer of 10^6 synapses never holds a batch of them.

    :param device: where the forward and backward passes run (a copy of the model goes there);
        None: where the model is.
    :param shrinkage: weight of the connection's mean in each synapse's curvature estimate
        (:func:`shrink_synapse_scores`; the engine passes ``FitConfig.fisher_shrinkage``); 0: F_ij as is.
    :return: (neuron scores {population: (n,)}, synapse scores {connection: weight-shaped});
        pruned synapses score ``-inf`` so they are never chosen again.
    """
    home = next(model.parameters()).device
    dev = home if device is None else torch.device(device)
    net = model if dev == home else copy.deepcopy(model).to(dev)
    n_total = x.shape[1]
    neuron: dict[str, torch.Tensor] = {}
    synapse: dict[str, torch.Tensor] = {}
    syns = {s.name: s for s in net.synapses()}
    weights = {k: s.effective_weight().detach() for k, s in syns.items()}
    for i in range(0, n_total, batch_size):
        probe = Probe()
        out = net(x[:, i:i + batch_size].to(dev), probe)
        loss = count_loss(out, y[i:i + batch_size].to(dev), logit_scale, reduction="sum")  # per-sample grads exact
        pops = list(probe.masks)
        recs = [(k, xa, a) for k, lst in probe.records.items() for xa, a in lst]
        grads = torch.autograd.grad(loss, [probe.masks[p] for p in pops] + [a for _, _, a in recs],
                                    allow_unused=True)
        for p, g in zip(pops, grads[:len(pops)]):
            if g is not None:
                neuron[p] = neuron.get(p, 0) + (g.reshape(g.shape[0], -1) ** 2).sum(0)
        by_conn: dict[str, list] = {}
        for (k, xa, _), ga in zip(recs, grads[len(pops):]):
            if ga is not None:
                by_conn.setdefault(k, []).append((xa, ga))
        for k, parts in by_conn.items():
            synapse[k] = synapse.get(k, 0) + _squared_contributions(syns[k], weights[k], parts)
    neuron_np = {p: (v / (2 * n_total)).cpu().numpy() for p, v in neuron.items()}
    synapse_np = {}
    for k, s in syns.items():
        v = synapse.get(k, torch.zeros_like(s.weight)) / (2 * n_total)
        scores = np.where(s.mask.cpu().numpy() > 0, v.cpu().numpy(), -np.inf)
        synapse_np[k] = shrink_synapse_scores(scores, weights[k].cpu().numpy(), shrinkage)
    return neuron_np, synapse_np


def shrink_synapse_scores(scores: np.ndarray, w: np.ndarray, shrinkage: float) -> np.ndarray:
    """A connection's synapse scores ``F_ij = w_ij^2 h_ij`` with each curvature estimate ``h_ij`` (the
    mean squared gradient over the Fisher samples) shrunk towards the connection's mean ``hbar`` over
    its unpruned non-zero weights: ``w_ij^2 ((1 - shrinkage) h_ij + shrinkage hbar)``. At 1 the ranking
    within a connection is by magnitude and the connection's Fisher scale sets its place against the
    others and against whole neurons (docs/method.md: "Shrinking the synapse scores"). Pruned synapses
    (``-inf``) stay pruned."""
    if not 0.0 <= shrinkage <= 1.0:
        raise TrainingError(f"fisher_shrinkage {shrinkage} must lie in [0, 1]")
    if shrinkage == 0.0:
        return scores
    w2 = w.astype(np.float64) ** 2
    live = np.isfinite(scores) & (w2 > 0)
    h = np.where(live, scores / np.where(w2 > 0, w2, 1), 0.0)
    hbar = h[live].mean() if live.any() else 0.0
    return np.where(np.isfinite(scores), w2 * ((1 - shrinkage) * h + shrinkage * hbar), -np.inf)


def _squared_contributions(syn: Synapse, w: torch.Tensor, parts: list) -> torch.Tensor:
    """sum over samples n of (w * dL_n/dW)^2, where a connection's records ``parts`` (input, grad of
    its output) may be several (a recurrent connection: one per step) and add up per sample."""
    b = _batch_of(syn, parts[0][0])
    per = max(int(w.numel()) * (1 + len(parts)), 1)
    chunk = max(1, min(b, PER_SAMPLE_ELEMENTS // per))
    total = torch.zeros_like(w)
    for j in range(0, b, chunk):
        g = 0
        for xa, ga in parts:
            g = g + _per_sample_weight_grad(syn, _samples(syn, xa, j, chunk), _samples(syn, ga, j, chunk))
        total += ((w * g) ** 2).sum(0)
    return total


def _batch_of(syn: Synapse, x: torch.Tensor) -> int:
    if isinstance(syn, Conv):
        return x.shape[1] if x.dim() == 5 else x.shape[0]
    return x.shape[-2]


def _samples(syn: Synapse, t: torch.Tensor, j: int, n: int) -> torch.Tensor:
    """Samples j..j+n of a record: (t, b, ...) for time-major records, (b, ...) for one step's."""
    if isinstance(syn, Conv):
        return t[:, j:j + n] if t.dim() == 5 else t[j:j + n]
    return t[..., j:j + n, :]


def _per_sample_weight_grad(syn: Synapse, x: torch.Tensor, ga: torch.Tensor) -> torch.Tensor:
    """dL_n/dW for each sample n: (b, *weight.shape), summed over time steps."""
    if isinstance(syn, Conv):
        t, b = x.shape[:2] if x.dim() == 5 else (1, x.shape[0])
        xs = x.reshape(t * b, *x.shape[-3:])
        cols = F.unfold(xs, syn.weight.shape[2:], padding=syn.padding, stride=syn.stride)  # (tb, ckk, L)
        g = ga.reshape(t, b, syn.n_out, -1)                                                # (t, b, c_out, L)
        per = torch.einsum("tbol,tbkl->bok", g, cols.reshape(t, b, *cols.shape[1:]))
        return per.reshape(b, *syn.weight.shape)
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


# -- budgets ------------------------------------------------------------------------------------
# The budgets are the target's own ``Limits`` (or a pruning round's interpolation of them); where
# neurons sit on cores comes from the one placement (spikefit.placement), the same one verify reads.

def prunes_synapses(lim: Limits) -> bool:
    return any(v is not None for v in (lim.synapses, lim.synapses_per_core, lim.axons_per_core, lim.fan_in, lim.fan_out))


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


def prune_synapses(model: SNN, scores: dict[str, np.ndarray], lim: Limits,
                   neuron_scores: dict[str, np.ndarray] | None = None, placement: Placement | None = None) -> None:
    """Zero the lowest-scoring synapses until every synapse budget of ``lim`` holds (pruning is
    monotone, so one pass in this order satisfies all: fan-in, fan-out, per-core, total). Cores are
    those of ``placement`` (needed for per-core budgets and fan-out in cores). With ``neuron_scores``
    and dense connections, the total budget may also take whole hidden neurons (see
    :func:`prune_to_sparsity`)."""
    syns = {s.name: s for s in model.synapses()}
    sc = {k: v.copy() for k, v in scores.items()}

    def drop(name, keep):
        sc[name] = np.where(keep, sc[name], -np.inf)

    for pop in model.populations():
        inc = [s for s in model.incoming(pop)]
        if lim.fan_in is not None and inc:
            rows = np.concatenate([sc[s.name].reshape(s.n_out, -1) for s in inc], 1)
            keep = _topk_rows(rows, lim.fan_in)
            o = 0
            for s in inc:  # a conv row is a channel's kernel: top-k entries bound every position's fan-in
                k = sc[s.name][0].size
                drop(s.name, keep[:, o:o + k].reshape(sc[s.name].shape))
                o += k
        if lim.fan_out is not None:
            out = model.outgoing(pop)
            if any(isinstance(s, Conv) for s in out):
                raise TrainingError(f"population {pop.name!r} feeds a convolution; fan_out pruning supports dense "
                                    "connections only")
            if out:
                cols = np.concatenate([sc[s.name] for s in out], 0).T  # (pre, posts)
                if lim.fan_out_unit == "cores":
                    keep = _topk_cores(model, out, cols, lim.fan_out, _need(placement, "fan_out in cores")).T
                else:
                    keep = _topk_rows(cols, lim.fan_out).T
                o = 0
                for s in out:
                    drop(s.name, keep[o:o + s.n_out])
                    o += s.n_out
    if lim.synapses_per_core is not None or lim.axons_per_core is not None:
        _prune_cores(model, _need(placement, "per-core budgets"), sc, lim, drop)
    if lim.synapses is not None and neuron_scores is not None and all(isinstance(s, Linear) for s in syns.values()):
        _set_masks(model, {k: np.isfinite(v) for k, v in sc.items()})
        _greedy_neurons_and_synapses(model, sc, neuron_scores, lim.synapses)
        return
    if lim.synapses is not None:
        counts = {k: synapse_counts(syns[k]) for k in sc}
        flat = np.concatenate([sc[k].ravel() for k in sc])
        cnt = np.concatenate([counts[k].ravel() for k in sc])
        order = np.argsort(-flat, kind="stable")
        alive = np.isfinite(flat[order])
        total = np.cumsum(np.where(alive, cnt[order], 0))
        keep_flat = np.zeros(flat.size, dtype=bool)
        keep_flat[order[(total <= lim.synapses) & alive]] = True
        o = 0
        for k in sc:
            n = sc[k].size
            drop(k, keep_flat[o:o + n].reshape(sc[k].shape))
            o += n
    _set_masks(model, {k: np.isfinite(v) for k, v in sc.items()})


def _need(placement: Placement | None, what: str) -> Placement:
    if placement is None:
        raise TrainingError(f"{what} need the network's placement on the target's cores; pass "
                            "placement=spikefit.placement.place(model.to_network(), target)")
    return placement


def _topk_cores(model: SNN, out: list[Synapse], cols: np.ndarray, k: int, placement: Placement) -> np.ndarray:
    """fan_out in cores: every presynaptic neuron keeps the synapses into its ``k`` best destination
    cores (summed score), the cores being where the placement puts each post neuron."""
    core = np.concatenate([placement.core_of(model.post_of(s).name) for s in out])
    ids, core = np.unique(core, return_inverse=True)
    finite = np.where(np.isfinite(cols), cols, 0.0)
    per_core = np.zeros((cols.shape[0], len(ids)))
    np.add.at(per_core.T, core, finite.T)                   # (pre, cores) summed scores
    used = np.zeros_like(per_core, dtype=bool)
    np.logical_or.at(used.T, core, np.isfinite(cols).T)
    best = _topk_rows(np.where(used, per_core, -np.inf), k)  # (pre, cores)
    return best[:, core] & np.isfinite(cols)


def _source_ids(model: SNN, inc: list[Synapse], placement: Placement) -> np.ndarray:
    """The global source id of every column of a population's incoming weight rows."""
    ids = []
    for s in inc:
        pre = model.pre_of(s)
        base = placement.base.get(model.input_name if pre is None else pre.name, 0)
        ids.append(base + np.arange(int(np.prod(s.weight.shape[1:]))))
    return np.concatenate(ids)


def _prune_cores(model: SNN, placement: Placement, sc: dict, lim: Limits, drop) -> None:
    """Per core of the placement (all the layers it holds together): keep the top synapses_per_core
    synapses and the top axons_per_core presynaptic sources (by summed score)."""
    blocks: dict[int, list] = {}
    rows, ids, keep = {}, {}, {}
    for pop in model.populations():
        inc = model.incoming(pop)
        if not inc:
            continue
        if any(isinstance(s, Conv) for s in inc):
            raise TrainingError(f"population {pop.name!r} is fed by a convolution; per-core pruning supports dense "
                                "connections only")
        rows[pop.name] = np.concatenate([sc[s.name] for s in inc], 1)   # (n, sources)
        ids[pop.name] = _source_ids(model, inc, placement)
        keep[pop.name] = np.isfinite(rows[pop.name])
        b, first = placement.bounds[pop.name], placement.first[pop.name]
        for k in range(len(b) - 1):
            blocks.setdefault(first + k, []).append((pop.name, int(b[k]), int(b[k + 1])))
    for core in sorted(blocks):
        parts = blocks[core]
        if lim.axons_per_core is not None:
            src = np.concatenate([ids[n] for n, _, _ in parts])
            score = np.concatenate([np.where(np.isfinite(rows[n][a:e]), rows[n][a:e], 0).sum(0) for n, a, e in parts])
            used = np.concatenate([keep[n][a:e].any(0) for n, a, e in parts])
            uniq, inv = np.unique(src, return_inverse=True)
            total = np.bincount(inv, weights=score, minlength=len(uniq))
            live = np.bincount(inv, weights=used, minlength=len(uniq)) > 0
            if live.sum() > lim.axons_per_core:
                ranked = np.argsort(-np.where(live, total, -np.inf), kind="stable")[:lim.axons_per_core]
                allowed = np.zeros(len(uniq), dtype=bool)
                allowed[ranked] = True
                ok = allowed[inv]
                o = 0
                for n, a, e in parts:
                    w = ids[n].size
                    keep[n][a:e] &= ok[None, o:o + w]
                    o += w
        if lim.synapses_per_core is not None:
            vals = np.concatenate([np.where(keep[n][a:e], rows[n][a:e], -np.inf).ravel() for n, a, e in parts])
            if np.isfinite(vals).sum() > lim.synapses_per_core:
                top = np.argsort(-vals, kind="stable")[:lim.synapses_per_core]
                k2 = np.zeros(vals.size, dtype=bool)
                k2[top] = True
                o = 0
                for n, a, e in parts:
                    size = (e - a) * rows[n].shape[1]
                    keep[n][a:e] &= k2[o:o + size].reshape(e - a, -1)
                    o += size
    for pop in model.populations():
        if pop.name not in keep:
            continue
        o = 0
        for s in model.incoming(pop):
            k = s.weight.shape[1]
            drop(s.name, keep[pop.name][:, o:o + k])
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


def neuron_plan(model: SNN, scores: dict[str, np.ndarray], lim: Limits, target: TargetSpec) -> dict[str, np.ndarray]:
    """Which hidden neurons to keep ({population: sorted indices}) so that ``lim``'s neuron and core
    budgets hold, cores counted by the target's own packing (:func:`spikefit.placement.count_cores`):
    the globally lowest-F_i hidden neurons go first; output neurons are never removed."""
    pops = model.populations()[:-1]
    out_pop = model.output_population()
    limit = None if lim.neurons is None else lim.neurons - out_pop.size
    entries = [(float(scores[p.name][i]), p.name, i) for p in pops for i in range(p.size)]
    entries.sort(key=lambda e: -e[0])
    keep = {p.name: [] for p in pops}
    n_keep = len(entries) if limit is None else min(limit, len(entries))

    def cores(k):
        chosen = {p.name: 0 for p in pops}
        for _, name, _ in entries[:k]:
            chosen[name] += 1
        sizes = [(max(chosen[p.name], 1), p) for p in pops] + [(out_pop.size, out_pop)]
        return count_cores(target, sizes)

    if lim.cores is not None:
        lo, hi = len(pops), n_keep     # the largest count that fits: cores(k) grows with k
        if cores(hi) > lim.cores:
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if cores(mid) <= lim.cores:
                    lo = mid
                else:
                    hi = mid - 1
            n_keep = lo
    for _, name, i in entries[:n_keep]:
        keep[name].append(i)
    for p in pops:  # every hidden layer keeps its best neuron
        if not keep[p.name]:
            keep[p.name] = [int(np.argmax(scores[p.name]))]
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in keep.items()}


def remove_dead_neurons(model: SNN) -> int:
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
                model.remove_neurons(p.name, keep)
                changed = True
    return removed


def prune_neurons(model: SNN, scores: dict[str, np.ndarray], lim: Limits, target: TargetSpec) -> int:
    """Remove hidden neurons to meet the neuron and core budgets; returns how many were removed."""
    plan = neuron_plan(model, scores, lim, target)
    removed = 0
    for name, keep in plan.items():
        pop = model.stage(name)
        if len(keep) < pop.size:
            removed += pop.size - len(keep)
            model.remove_neurons(name, keep)
    return removed


INTERPOLATED = ("neurons", "synapses", "fan_in", "fan_out")   # budgets a pruning round approaches gradually


def interpolate(lim: Limits, usage: dict[str, int], progress: float) -> Limits:
    """The limits of an intermediate pruning round: geometric interpolation between the current
    ``usage`` (verify's rows, progress 0) and the target's limits (progress 1)."""
    def mix(key):
        goal, now = getattr(lim, key), usage.get(key)
        if goal is None or now is None or now <= goal:
            return goal
        return int(math.floor(now * (goal / now) ** progress)) if progress < 1 else goal

    keys = [k for k in INTERPOLATED if not (k == "fan_out" and lim.fan_out_unit == "cores")]
    return replace(lim, **{k: mix(k) for k in keys})
