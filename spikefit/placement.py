"""One placement: where every neuron and synapse of a network goes on a target's cores.

``place(network, target) -> Placement`` packs the populations onto cores (rule below, also in
``docs/verify.md``). verify, FSC's per-core budgets, CAT's per-core codebook groups, the fit report and
the exporters all read this one placement, so the trainer optimises against the chip that verify checks.

Packing rule: populations in ``Network.topological_order``; the neurons of each population fill the
current core in index order; a new core opens when adding the next neuron would exceed
``neurons_per_core``, ``synapses_per_core`` (incoming non-zero synapses of the core's neurons),
``axons_per_core`` (distinct presynaptic sources of the core's neurons) or the core's parameter sets
(distinct shared ``(du, dv, vth)`` values among ``core.shared``). A population starts a new core
unless ``core.share_layers`` is true. A neuron that alone exceeds a per-core limit gets a core of its
own and that limit's row fails.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .spec import TargetSpec
from .synapses import SynapseGraph, _Stream

BIG = 1 << 40            # stamp = core * BIG - position: later cores win, then earlier positions


# -- packing ------------------------------------------------------------------------------------

def _end(ptr: np.ndarray, s: int, n: int, cap_n: int | None, cap_s: int | None) -> int:
    """Largest e <= n so that rows s..e-1 fit cap_n neurons and cap_s synapses (may be s)."""
    e = n if cap_n is None else min(n, s + cap_n)
    if cap_s is not None:
        e = min(e, int(np.searchsorted(ptr, ptr[s] + cap_s, side="right")) - 1)
    return max(e, s)


class _Packer:
    """The greedy core packing of the module docstring.

    Axons (distinct sources of a core) are counted with one stamp per source: a synapse at global
    position ``p`` on core ``c`` stamps ``c * BIG - p``; after ``np.maximum.at`` a source holds the
    stamp of its first synapse on the newest core, so ``stamp[src] == own stamp`` marks exactly one
    synapse per (source, core), with no sort and no reset between cores."""

    def __init__(self, spec: TargetSpec, n_sources: int, count_axons: bool, keep_pairs: bool):
        lim = spec.limits
        self.npc, self.spc, self.apc = lim.neurons_per_core, lim.synapses_per_core, lim.axons_per_core
        self.max_sets, self.share, self.shared = spec.core.max_parameter_sets, spec.core.share_layers, spec.core.shared
        self.count_axons = count_axons or self.apc is not None
        self.keep_pairs = keep_pairs
        self.stamp = np.full(n_sources, np.iinfo(np.int64).min, dtype=np.int64) if self.count_axons else None
        self.neurons: list[int] = []    # per core
        self.synapses: list[int] = []
        self.axons: list[int] = []
        self.nsets: list[int] = []      # distinct shared-parameter sets per core
        self.open = False               # the last core still takes neurons
        self.sets: set = set()          # shared-parameter sets on the last core
        self.pset: tuple = ()           # the set of the population being packed
        self.position = 0               # global position of the next stream's first synapse
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (global source, core) first occurrences
        self.id_type = np.int32 if n_sources < 2 ** 31 else np.int64

    @property
    def core(self) -> int:
        return len(self.neurons) - 1

    def _new_core(self) -> None:
        for lst in (self.neurons, self.synapses, self.axons):
            lst.append(0)
        self.nsets.append(1)
        self.sets, self.open = {self.pset}, True

    def _caps(self) -> tuple[int | None, int | None]:
        return (None if self.npc is None else self.npc - self.neurons[-1],
                None if self.spc is None else self.spc - self.synapses[-1])

    def pack(self, stream: _Stream) -> tuple[int, np.ndarray]:
        """Place ``stream``'s population; returns (its first core, row bounds of its cores)."""
        n, ptr = stream.n, stream.ptr
        stream.offset = self.position
        self.position += int(ptr[-1])
        self.pset = tuple(float(getattr(stream.pop, p)) for p in self.shared)
        if self.open and self.neurons[-1]:
            too_many_sets = (self.max_sets is not None and self.pset not in self.sets
                             and len(self.sets) >= self.max_sets)
            if not self.share or too_many_sets or (n and _end(ptr, 0, n, *self._caps()) == 0):
                self.open = False
        if n == 0:
            return len(self.neurons), np.zeros(1, dtype=np.int64)
        if not self.open:
            self._new_core()
        self.sets.add(self.pset)
        self.nsets[-1] = len(self.sets)
        first = self.core
        bounds = self._greedy(ptr, n)
        syn = np.diff(ptr[bounds])
        if self.apc is not None and max(syn[0] + self.axons[-1], syn.max()) > self.apc:
            return self._pack_by_core(stream)  # axons may bind: decide core by core
        sizes = np.diff(bounds).tolist()
        self.neurons[-1] += sizes[0]
        self.synapses[-1] += int(syn[0])
        if len(sizes) > 1:
            k = len(sizes) - 1
            self.neurons += sizes[1:]
            self.synapses += syn[1:].tolist()
            self.axons += [0] * k
            self.nsets += [1] * k
            self.sets = {self.pset}
        if self.count_axons:
            self._axons_batch(stream, bounds, first)
        return first, bounds

    def _greedy(self, ptr: np.ndarray, n: int) -> np.ndarray:
        """Core bounds from neurons_per_core and synapses_per_core alone (the open core first)."""
        bounds = [0, max(_end(ptr, 0, n, *self._caps()), 1)]
        if bounds[-1] < n:
            rows = np.arange(n)
            nxt = np.full(n, n, dtype=np.int64) if self.npc is None else np.minimum(rows + self.npc, n)
            if self.spc is not None:
                nxt = np.minimum(nxt, np.searchsorted(ptr, ptr[:-1] + self.spc, side="right") - 1)
            nxt = np.maximum(nxt, rows + 1).tolist()
            s = bounds[-1]
            while s < n:
                s = nxt[s]
                bounds.append(s)
        return np.asarray(bounds, dtype=np.int64)

    def _axons_batch(self, stream: _Stream, bounds: np.ndarray, first: int) -> None:
        """Count the axons of cores already bounded, one numpy step per core (a stamp remembers only
        the newest core of a source, so cores cannot share a step)."""
        cptr = stream.ptr[bounds].tolist()
        for k in range(len(bounds) - 1):
            stv, ids, _ = stream.window(self.stamp, int(bounds[k]), int(bounds[k + 1]))
            hit = self._stamp(stv, ids, first + k, stream.offset + cptr[k])
            self._record(stream, ids, hit, first + k)
            self.axons[first + k] += int(np.count_nonzero(hit))

    @staticmethod
    def _stamp(stv: np.ndarray, ids: np.ndarray, core: int, pos0: int) -> np.ndarray:
        """Stamp synapses ``ids`` (global positions from pos0) on ``core``; True at first occurrences."""
        ids = ids.astype(np.intp, copy=False)  # ufunc.at takes its fast path with native indices only
        vals = np.arange(core * BIG - pos0, core * BIG - pos0 - ids.size, -1, dtype=np.int64)
        np.maximum.at(stv, ids, vals)
        return stv.take(ids) == vals

    def _record(self, stream: _Stream, ids: np.ndarray, hit: np.ndarray, core: int) -> None:
        if not self.keep_pairs:
            return
        src = ids[hit].astype(self.id_type)
        if len(stream.parts) == 1:
            src += stream.parts[0].base
        self.pairs.append((src, np.full(src.size, core, dtype=np.int32)))

    def _pack_by_core(self, stream: _Stream) -> tuple[int, np.ndarray]:
        """Core-by-core packing when axons_per_core may bind: grow a window of rows, stamp it, cut at
        the first row whose new sources exceed the core's axon budget."""
        n, ptr = stream.n, stream.ptr
        bounds: list[int] = []
        first, s, guess = None, 0, 64
        while s < n:
            empty = self.neurons[-1] == 0
            e_c = _end(ptr, s, n, *self._caps())
            if e_c == s:
                if not empty:
                    self._new_core()
                    continue
                e_c = s + 1
            e = self._axon_cut(stream, s, e_c, guess, force=empty)
            if e == s:
                self._new_core()
                continue
            if first is None:
                first = self.core
            bounds.append(s)
            self.neurons[-1] += e - s
            self.synapses[-1] += int(ptr[e] - ptr[s])
            guess = max(8, (e - s) + (e - s) // 8 + 1)
            s = e
            if s < n:
                self._new_core()
        bounds.append(n)
        return first, np.asarray(bounds, dtype=np.int64)

    def _axon_cut(self, stream: _Stream, s: int, e_c: int, guess: int, force: bool) -> int:
        """Largest e <= e_c with rows s..e-1 within the open core's axon budget (at least s + 1
        when ``force``); stamps and records the rows it takes."""
        core, ptr, fill = self.core, stream.ptr, self.axons[-1]
        cur, step = s, guess
        while True:
            e_try = min(e_c, cur + step)
            stv, ids, counts = stream.window(self.stamp, cur, e_try)
            hit = self._stamp(stv, ids, core, stream.offset + int(ptr[cur]))
            ends = np.cumsum(counts)
            new = np.zeros(len(counts), dtype=np.int64)                 # new sources per row
            full = np.flatnonzero(counts)
            if full.size:
                new[full] = np.add.reduceat(hit, ends[full] - counts[full], dtype=np.int64)
            cum = fill + np.cumsum(new)                                 # axons after each row
            k = int(np.searchsorted(cum, self.apc, side="right"))
            if k == 0 and cur == s and force:
                k = 1
            taken = int(ends[k - 1]) if k else 0
            self._record(stream, ids[:taken], hit[:taken], core)
            if k < e_try - cur:
                self.axons[-1] = int(cum[k - 1]) if k else fill
                return cur + k
            fill, cur = int(cum[-1]), e_try
            if cur == e_c:
                self.axons[-1] = fill
                return cur
            step *= 2


def _distinct_per_key(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """For keys ``a`` in 0..n-1 and non-decreasing ``b`` in 0..n-1: the number of distinct ``b`` of each
    ``a`` (pairs need not be distinct). The pairs are stamped block by block of ``b`` in a table of (block rows x n) slots, with the
    stamp trick of :class:`_Packer` (a newer block's stamps win, so the table is never cleared)."""
    counts = np.zeros(n, dtype=np.int64)
    rows = max(1, (1 << 19) // max(n, 1))                # a 4 MB table stays in cache
    stamp = np.full(rows * n, np.iinfo(np.int64).min, dtype=np.int64)
    starts = np.searchsorted(b, np.arange(0, n + rows, rows)).tolist()
    for blk, (i0, i1) in enumerate(zip(starts[:-1], starts[1:])):
        if i0 == i1:
            continue
        key = (b[i0:i1] - blk * rows).astype(np.int64) * n + a[i0:i1]
        vals = np.arange(blk * BIG - i0, blk * BIG - i1, -1, dtype=np.int64)
        np.maximum.at(stamp, key, vals)
        counts += np.bincount(a[i0:i1][stamp.take(key) == vals], minlength=n)
    return counts



# -- the placement ------------------------------------------------------------------------------

@dataclass
class Placement:
    """Where every neuron sits: per-core usage and each population's cores (see the module docstring)."""

    target: str
    neurons: np.ndarray                    # (cores,) neurons on each core
    synapses: np.ndarray                   # (cores,) incoming non-zero synapses of each core's neurons
    axons: np.ndarray | None               # (cores,) distinct presynaptic sources (None: not counted)
    parameter_sets: np.ndarray             # (cores,) distinct shared-parameter sets on each core
    first: dict[str, int]                  # population -> its first core
    bounds: dict[str, np.ndarray]          # population -> row bounds of its cores (cores + 1 entries)
    base: dict[str, int]                   # source (input or population) -> global id of its element 0
    n_sources: int
    pairs: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # distinct (source, core)

    @property
    def n_cores(self) -> int:
        return len(self.neurons)

    def cores(self, population: str) -> int:
        """How many cores ``population`` spans."""
        return len(self.bounds[population]) - 1

    def core_of(self, population: str) -> np.ndarray:
        """The core of every neuron of ``population`` (C order)."""
        b = self.bounds[population]
        if len(b) < 2:
            return np.zeros(0, dtype=np.int64)
        return self.first[population] + np.searchsorted(b, np.arange(int(b[-1])), side="right") - 1

    def layers_on(self, core: int) -> list[str]:
        """Populations with neurons on ``core``."""
        return [n for n, b in self.bounds.items() if len(b) > 1 and self.first[n] <= core < self.first[n] + len(b) - 1]

    def source_cores(self) -> np.ndarray:
        """The core of every global source; inputs are off chip and get the pseudo-core ``n_cores``."""
        out = np.full(self.n_sources, self.n_cores, dtype=np.int64)
        for name, b in self.bounds.items():
            if len(b) > 1:
                out[self.base[name]:self.base[name] + int(b[-1])] = self.core_of(name)
        return out

    def core_groups(self, rows: dict[str, tuple[str, int]]) -> tuple[dict[str, np.ndarray], int]:
        """Codebook groups when one codebook serves each core and every layer on it.

        :param rows: connection -> (post population, neurons per weight row): 1 for a dense row, the
            output positions of a convolution channel.
        :returns: the group of every weight row of each connection, and the number of groups. A row
            whose neurons span several cores joins those cores into one group (its weights must be in
            each of their codebooks), so groups are the connected components of cores."""
        parent = list(range(self.n_cores))

        def find(c):
            while parent[c] != c:
                parent[c] = parent[parent[c]]
                c = parent[c]
            return c

        spans = {}
        for conn, (pop, per) in rows.items():
            core = self.core_of(pop)
            n_rows = len(core) // max(per, 1)
            first, last = core[0:n_rows * per:per], core[per - 1:n_rows * per:per]
            for a, b in zip(first[first != last].tolist(), last[first != last].tolist()):
                for c in range(a + 1, b + 1):
                    parent[find(c)] = find(a)
            spans[conn] = first
        roots = np.asarray([find(c) for c in range(self.n_cores)], dtype=np.int64)
        ids, relabel = np.unique(roots, return_inverse=True)
        return {k: relabel[v] for k, v in spans.items()}, len(ids)

    def to_dict(self) -> dict:
        return {"cores": self.n_cores, "neurons": self.neurons.tolist(), "synapses": self.synapses.tolist(),
                "axons": None if self.axons is None else self.axons.tolist(),
                "populations": {n: {"first_core": self.first[n], "cores": self.cores(n),
                                    "bounds": self.bounds[n].tolist()} for n in self.bounds}}


def place(network, target: TargetSpec, graph: SynapseGraph | None = None, *, count_axons: bool = False,
          keep_pairs: bool = False, by_neurons: bool = False) -> Placement:
    """Pack ``network``'s populations onto ``target``'s cores (the module docstring's rule).

    :param graph: the network's :class:`~spikefit.synapses.SynapseGraph` when the caller has one.
    :param count_axons: count distinct presynaptic sources per core even without an axon limit.
    :param keep_pairs: keep the distinct (source, core) pairs (fan-out in cores).
    :param by_neurons: pack by the neuron and parameter-set limits alone, as if every core's synapses
        and axons were within budget: the placement pruning aims for (once each of its cores is pruned
        to synapses_per_core and axons_per_core, the full rule packs exactly these cores)."""
    graph = graph or SynapseGraph(network)
    packer = _Packer(target, graph.n_sources, count_axons=count_axons and not by_neurons,
                     keep_pairs=keep_pairs and not by_neurons)
    if by_neurons:
        packer.apc = packer.spc = None
    first, bounds = {}, {}
    for s in graph.streams:
        f, b = packer.pack(s)
        first[s.pop.name], bounds[s.pop.name] = f, b
    pairs = None
    if packer.keep_pairs:
        src = np.concatenate([a for a, _ in packer.pairs]) if packer.pairs else np.zeros(0, np.int32)
        dst = np.concatenate([b for _, b in packer.pairs]) if packer.pairs else np.zeros(0, np.int32)
        pairs = (src, dst)
    as_array = lambda v: np.asarray(v, dtype=np.int64)
    return Placement(target.name, as_array(packer.neurons), as_array(packer.synapses),
                     as_array(packer.axons) if packer.count_axons else None, as_array(packer.nsets),
                     first, bounds, dict(graph.base), graph.n_sources, pairs)


def count_cores(target: TargetSpec, sizes: list[tuple[int, object]]) -> int:
    """Cores the packing needs for populations of these sizes, in order (each with an object holding
    its du, dv, vth), from the neuron and parameter-set limits alone: what neuron pruning plans against
    before synapses are cut."""
    packer = _Packer(target, 0, count_axons=False, keep_pairs=False)
    packer.apc = packer.spc = None
    for n, pset in sizes:
        packer.pack(_Stream.empty(n, pset))
    return len(packer.neurons)
