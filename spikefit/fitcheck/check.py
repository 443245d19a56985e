"""The fit check proper: one :class:`~spikefit.fitcheck.report.Row` per limit the target declares,
then one per chip rule (:mod:`spikefit.rules`), from the one placement (:mod:`spikefit.placement`)."""
from __future__ import annotations

import numpy as np

from ..network import Conv2d, Dense, Flatten, Network, Neurons, Pool2d
from ..placement import Placement, _distinct_per_key, place
from ..rules import ChipView, apply_rules
from ..spec import TargetSpec
from ..synapses import SynapseGraph, _Part, _Stream
from .report import CoreSummary, FitReport, LayerStats, PopulationStats, Row
from .weights import WeightRows


class Check(WeightRows):
    """One fit check: measure, place, then one row per declared limit and per chip rule."""

    def __init__(self, net: Network, spec: TargetSpec):
        self.net, self.spec, self.lim = net, spec, spec.limits
        self.graph = SynapseGraph(net)
        self.pops, self.inputs, self.parts = self.graph.pops, self.graph.inputs, self.graph.parts
        self.base, self.n_sources = self.graph.base, self.graph.n_sources
        self.placement: Placement | None = None

    @property
    def streams(self) -> list[_Stream]:
        return self.graph.streams

    @property
    def n_cores(self) -> int:
        return self.placement.n_cores

    def _incoming(self, pop: Neurons) -> list[_Part]:
        return self.graph.incoming(pop)

    # -- measuring --------------------------------------------------------------------------
    def run(self) -> FitReport:
        lim = self.lim
        values = None
        if lim.weight_bits is not None or lim.unique_weights is not None:
            values = self._values(per_neuron=lim.unique_weights is not None
                                  and lim.unique_weights_scope in ("neuron", "core"))
        fan_out = {p.name: np.zeros(p.size, dtype=np.int64) for p in self.pops}
        part_fan_out = []
        for part in self.parts:
            fo = part.fan_out()
            part_fan_out.append(int(fo.max(initial=0)))
            if isinstance(part.pre, Neurons):
                fan_out[part.pre.name] += fo
        by_cores = lim.fan_out is not None and lim.fan_out_unit == "cores"
        pairs_needed = lim.fan_out_cores is not None or by_cores
        pl = self.placement = place(self.net, self.spec, self.graph, count_axons=pairs_needed, keep_pairs=pairs_needed)
        rows = self._rows(fan_out, values)

        n = max(pl.n_cores, 1)
        cores = CoreSummary(pl.n_cores, int(pl.neurons.max(initial=0)), float(pl.neurons.sum() / n),
                            int(pl.synapses.max(initial=0)), float(pl.synapses.sum() / n),
                            None if pl.axons is None else int(pl.axons.max(initial=0)),
                            None if pl.axons is None else float(pl.axons.sum() / n))
        pops = [PopulationStats(s.pop.name, s.n, s.pop.model, pl.first[s.pop.name] if s.n else None,
                                pl.cores(s.pop.name), int(s.fan_in.max(initial=0)),
                                int(fan_out[s.pop.name].max(initial=0))) for s in self.streams]
        layers = [LayerStats(p.conn.name, p.conn.kind, p.pre.name, p.post.name, p.recurrent, p.nnz,
                             int(p.fan_in.max(initial=0)), fo, p.n_values, p.bits, p.scale)
                  for p, fo in zip(self.parts, part_fan_out)]
        rows += apply_rules(ChipView(self.net, self.spec, {}, pl, layers, pops))
        return FitReport(self.spec.name, rows, cores, layers, pops, dict(pl.bounds), pl)

    def _rows(self, fan_out: dict[str, np.ndarray], values) -> list[Row]:
        """One row per declared limit, in the order of the spec schema."""
        lim, rows = self.lim, []
        if lim.neurons is not None:
            sizes = {p.name: p.size for p in self.pops}
            big = max(sizes, key=sizes.get, default=None)
            total = sum(sizes.values())
            rows.append(Row("neurons", total, lim.neurons, total <= lim.neurons, f"largest: layer {big}" if big else ""))
        if lim.cores is not None:
            over = self.n_cores > lim.cores
            rows.append(Row("cores", self.n_cores, lim.cores, not over, "",
                            f"the packing needs {self.n_cores} cores, the target has {lim.cores}" if over else ""))
        pl = self.placement
        for name, per, limit in (("neurons_per_core", pl.neurons, lim.neurons_per_core),
                                 ("synapses_per_core", pl.synapses, lim.synapses_per_core),
                                 ("axons_per_core", pl.axons, lim.axons_per_core)):
            if limit is not None:
                rows.append(self._per_core_row(name, np.asarray(per, dtype=np.int64), limit))
        if lim.synapses is not None:
            nnz = [p.nnz for p in self.parts]
            worst = f"largest: layer {self.parts[int(np.argmax(nnz))].conn.name}" if nnz else ""
            rows.append(Row("synapses", int(sum(nnz)), lim.synapses, sum(nnz) <= lim.synapses, worst))
        if lim.fan_in is not None:
            rows.append(self._per_neuron_row("fan_in", {s.pop.name: s.fan_in for s in self.streams}, lim.fan_in,
                                             "incoming non-zero synapses"))
        src, dst = pl.pairs if pl.pairs is not None else (np.zeros(0, np.int32), np.zeros(0, np.int32))
        if lim.fan_out is not None and lim.fan_out_unit == "cores":
            dest = np.bincount(src, minlength=self.n_sources)   # (source, core) pairs are distinct
            per = {p.name: dest[self.base[p.name]:self.base[p.name] + p.size] for p in self.pops}
            rows.append(self._per_neuron_row("fan_out (cores)", per, lim.fan_out, "distinct destination cores"))
        elif lim.fan_out is not None:
            rows.append(self._per_neuron_row("fan_out", fan_out, lim.fan_out, "outgoing non-zero synapses"))
        if lim.fan_out_cores is not None:
            rows.append(self._fan_out_cores_row(src, dst))
        if values is not None:
            rows += self._weight_rows(values)
        if lim.inputs is not None:
            n_in = sum(int(np.prod(i.shape)) for i in self.inputs)
            rows.append(Row("inputs", n_in, lim.inputs, n_in <= lim.inputs))
        if lim.outputs is not None:
            n_out = self._outputs()
            rows.append(Row("outputs", n_out, lim.outputs, n_out <= lim.outputs))
        rows += self._structure_rows()
        if self.spec.core.max_parameter_sets is not None:
            rows.append(self._per_core_row("parameter_sets", pl.parameter_sets,
                                           self.spec.core.max_parameter_sets))
        return rows

    # -- rows -------------------------------------------------------------------------------
    def _neuron(self, pop: str, i: int) -> str:
        shape = self.net.nodes[pop].shape
        where = f"layer {pop} neuron {i}"
        return where + (f" {tuple(int(x) for x in np.unravel_index(i, shape))}" if len(shape) > 1 else "")

    def _core(self, c: int) -> str:
        names = self.placement.layers_on(c)
        return f"core {c} (layer{'s' if len(names) > 1 else ''} {', '.join(names)})"

    def _per_neuron_row(self, name: str, per: dict[str, np.ndarray], limit: int, what: str) -> Row:
        best, where, over, total = 0, "", 0, 0
        for pop, arr in per.items():
            if arr.size:
                i = int(np.argmax(arr))
                if arr[i] > best or not where:
                    best, where = int(arr[i]), self._neuron(pop, i)
                over += int(np.count_nonzero(arr > limit))
                total += arr.size
        detail = f"{over} of {total} neurons exceed {limit} {what}" if over else ""
        return Row(name, best, limit, best <= limit, where if best else "", detail)

    def _per_core_row(self, name: str, per: np.ndarray | None, limit: int, what: str = "") -> Row:
        """Largest per-core usage; ``what`` explains a failure (default: a single neuron too big for a core)."""
        if per is None or not per.size:
            return Row(name, 0, limit, True)
        c = int(np.argmax(per))
        usage = int(per[c])
        detail = ""
        if usage > limit:
            over = int(np.count_nonzero(per > limit))
            detail = f"{over} of {per.size} cores {what}" if what else (
                f"{over} of {per.size} cores exceed it: a neuron alone needs {usage}, more than one core holds")
        return Row(name, usage, limit, usage <= limit, self._core(c) if usage else "", detail)

    def _fan_out_cores_row(self, src: np.ndarray, post: np.ndarray) -> Row:
        """Distinct destination cores of each core, from the distinct (source, core) pairs."""
        limit = self.lim.fan_out_cores
        core_of = self.placement.source_cores()                          # inputs: an off-chip "core" n
        per = _distinct_per_key(core_of.take(src), post, self.n_cores + 1)[:-1]
        return self._per_core_row("fan_out_cores", per, limit,
                                  f"send spikes to more than {limit} cores")

    def _outputs(self) -> int:
        pops = []
        for out in self.net.outputs:
            for pred in self.net.predecessors(out.name):
                src = self.net.nodes[pred]
                while isinstance(src, (Flatten, Pool2d)) and self.net.predecessors(src.name):
                    src = self.net.nodes[self.net.predecessors(src.name)[0]]
                if isinstance(src, Neurons) and src not in pops:
                    pops.append(src)
        if not pops and self.pops:
            pops = [self.pops[-1]]
        return sum(p.size for p in pops)

    def _structure_rows(self) -> list[Row]:
        spec, kinds = self.spec, set(self.spec.layers.kinds)
        accepted = kinds | ({"dense", "sparse"} if kinds & {"dense", "sparse"} else set())
        used, bad = [], []
        for name in self.net.topological_order():
            node = self.net.nodes[name]
            kind = getattr(node, "kind", None) if isinstance(node, (Dense, Conv2d, Flatten, Pool2d)) else None
            if kind is None:
                continue
            need = [kind] + (["recurrent"] if any(p.conn is node and p.recurrent for p in self.parts) else [])
            for k in need:
                if k not in used:
                    used.append(k)
                if k not in accepted and not bad:
                    bad.append(f"layer {name} ({k})")
        rows = [Row("layer_kinds", ", ".join(used) or "-", ", ".join(spec.layers.kinds), not bad, bad[0] if bad else "",
                    f"the target maps {', '.join(spec.layers.kinds)}" if bad else "")]
        convs = [c for c in self.net.connections() if isinstance(c, Conv2d)]
        for key, measure in (("max_kernel", lambda c: max(c.weight.shape[2:])),
                             ("max_channels", lambda c: max(c.weight.shape[:2]))):
            limit = getattr(spec.layers, key)
            if limit is not None:
                worst = max(convs, key=measure, default=None)
                usage = measure(worst) if worst is not None else 0
                rows.append(Row(key, usage, limit, usage <= limit, f"layer {worst.name}" if worst is not None else ""))
        order = ("if", "lif", "cuba-lif")
        models = [p.model for p in self.pops]
        top = max(models, key=order.index, default="-")
        bad = [p for p in self.pops if not spec.neuron.runs(p.model)]
        rows.append(Row("neuron_model", top, ", ".join(spec.neuron.models), not bad,
                        f"layer {bad[0].name} ({bad[0].model})" if bad else "",
                        f"{len(bad)} populations need a model the target does not run" if bad else ""))
        return rows
