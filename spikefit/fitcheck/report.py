"""The fit report: one :class:`Row` per constraint, plus how the network was placed and measured."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

@dataclass
class Row:
    """One constraint: what the network uses against what the target allows."""

    name: str                       # constraint, e.g. "fan_in" or "unique_weights (per neuron)"
    usage: int | str | None         # largest use; None when it cannot be measured (see detail)
    limit: int | str | None         # the target's limit
    ok: bool
    worst: str = ""                 # where the usage is largest: "layer fc1 neuron 3", "core 17", ...
    detail: str = ""                # why it fails, or how usage was counted

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CoreSummary:
    """How the populations were packed onto cores."""

    cores: int                      # cores used
    neurons_max: int                # neurons on the fullest core
    neurons_mean: float
    synapses_max: int               # incoming non-zero synapses of one core's neurons
    synapses_mean: float
    axons_max: int | None = None    # distinct presynaptic sources of one core (None: not counted)
    axons_mean: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerStats:
    """One connection (Dense or Conv2d) as the check measured it."""

    name: str
    kind: str                       # "dense" | "sparse" | "conv2d"
    pre: str                        # source Input or population
    post: str                       # target population
    recurrent: bool
    synapses: int                   # non-zero synapses (pooling folded in)
    fan_in_max: int                 # largest fan-in of a post neuron through this connection
    fan_out_max: int                # largest fan-out of a pre neuron through this connection
    unique_weights: int | None = None   # distinct non-zero values (None: not measured)
    weight_bits: int | None = None      # signed bits needed after scaling (None: not measured or off-grid)
    scale: float | None = None          # weight units per integer step used for weight_bits

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PopulationStats:
    """One neuron population and where it sits."""

    name: str
    neurons: int
    model: str                      # "if" | "lif" | "cuba-lif"
    first_core: int | None          # cores first_core .. first_core + cores - 1
    cores: int
    fan_in_max: int
    fan_out_max: int                # outgoing non-zero synapses, all target layers together

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitReport:
    """The result of :func:`verify`: ``ok`` when every row is within its limit."""

    target: str
    rows: list[Row]
    cores: CoreSummary
    layers: list[LayerStats]
    populations: list[PopulationStats]
    bounds: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # population -> core row bounds
    placement: object = field(default=None, repr=False)   # the spikefit.placement.Placement it measured

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name or r.name.split(" (")[0] == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def core_of(self, population: str) -> np.ndarray:
        """The core index of every neuron of ``population`` (C order)."""
        pop = next(p for p in self.populations if p.name == population)
        b = self.bounds[population]
        return pop.first_core + np.searchsorted(b, np.arange(pop.neurons), side="right") - 1

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "rows": [r.to_dict() for r in self.rows],
                "cores": self.cores.to_dict(), "populations": [p.to_dict() for p in self.populations],
                "layers": [s.to_dict() for s in self.layers]}

    def verdict(self) -> str:
        if self.ok:
            n = self.cores.cores
            return f"FITS {self.target}: all {len(self.rows)} constraints met on {n} core{'' if n == 1 else 's'}"
        names = ", ".join(r.name for r in self.failures)
        return f"DOES NOT FIT {self.target}: {len(self.failures)} of {len(self.rows)} constraints exceeded ({names})"

    def table(self) -> str:
        """Human-readable text: constraints, details of failures, cores, populations, layers."""
        head = ("constraint", "usage", "limit", "ok", "worst")
        body = [(r.name, _cell(r.usage), _cell(r.limit), "ok" if r.ok else "FAIL", r.worst) for r in self.rows]
        lines = [f"target: {self.target}", *_columns(head, body, right=(1, 2))]
        for r in self.rows:
            if r.detail and not r.ok:
                lines.append(f"  {r.name}: {r.detail}")
        c = self.cores
        ax = f"; axons/core max {c.axons_max} mean {c.axons_mean:.1f}" if c.axons_max is not None else ""
        lines += ["", f"cores: {c.cores} used; neurons/core max {c.neurons_max} mean {c.neurons_mean:.1f}; "
                      f"synapses/core max {c.synapses_max} mean {c.synapses_mean:.1f}{ax}", ""]
        head = ("population", "neurons", "model", "cores", "fan_in max", "fan_out max")
        body = [(p.name, p.neurons, p.model, _core_range(p), p.fan_in_max, p.fan_out_max) for p in self.populations]
        lines += _columns(head, body, right=(1, 4, 5)) + [""]
        head = ("layer", "kind", "pre -> post", "synapses", "fan_in max", "unique w", "bits")
        body = [(s.name, s.kind + (" (rec)" if s.recurrent else ""), f"{s.pre} -> {s.post}", s.synapses,
                 s.fan_in_max, _cell(s.unique_weights), _cell(s.weight_bits)) for s in self.layers]
        lines += _columns(head, body, right=(3, 4, 5, 6))
        return "\n".join(lines)


def _cell(v) -> str:
    return "-" if v is None else str(v)


def _core_range(p: PopulationStats) -> str:
    if not p.cores:
        return "-"
    return str(p.first_core) if p.cores == 1 else f"{p.first_core}-{p.first_core + p.cores - 1}"


def _columns(head, body, right=()) -> list[str]:
    rows = [tuple(str(c) for c in r) for r in [head, *body]]
    width = [max(len(r[i]) for r in rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, width)))
    return [fmt(r).rstrip() for r in rows]

