"""Chip rules that a TOML cannot say, as plugin code (after Rockpool's Xylo design-rule list).

Numbers live in the target spec; a chip's design rules and memory formulas live in a :class:`RuleSet`
that a plugin registers through the ``register_rules`` hook. Each :class:`Rule` is a small named
function of a :class:`ChipView` (the network, the spec, the one placement and what verify measured)
that returns report rows; verify reports each as ``rule <name>`` next to the limits, and the trainer
checks the same rules before it trains.

A rule set applies to a target when the target's name is in ``RuleSet.targets`` or the spec has a
``[rules.<set name>]`` table; that table holds the set's parameters, validated against
``RuleSet.params`` (an unknown key or a wrong type is a :class:`~spikefit.errors.SpecError`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import SpecError, SpikefitError
from .fitcheck.report import LayerStats, PopulationStats, Row
from .network import Network, Neurons, Output
from .spec import TargetSpec, closest

ABOUT = ("structure", "size", "weights")   # what a failing rule asks for: another graph, pruning, CAT
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


@dataclass(frozen=True)
class Rule:
    """One design rule: ``check(view)`` returns None, a Row or a list of Rows (see :meth:`ChipView.row`)."""

    name: str                               # e.g. "xylo.output_not_recurrent"; reported as "rule <name>"
    check: Callable[["ChipView"], Any]
    doc: str = ""                           # one line: what the rule says, and its source
    about: str = "structure"                # "structure" | "size" (pruning can fix it) | "weights" (CAT can)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SpecError(f"rule name {self.name!r} must be lower-case letters, digits, '.', '_' or '-'")
        if not callable(self.check):
            raise SpecError(f"rule {self.name!r}: check must be a function of a ChipView, got {self.check!r}")
        if self.about not in ABOUT:
            raise SpecError(f"rule {self.name!r}: about {self.about!r} is not one of {', '.join(ABOUT)}")


@dataclass(frozen=True)
class RuleSet:
    """A chip's rules and the parameters they read from the spec's ``[rules.<name>]`` table."""

    name: str                                         # e.g. "xylo"
    targets: tuple[str, ...] = ()                     # target names it applies to
    rules: tuple[Rule, ...] = ()
    params: dict[str, tuple[type, Any]] = field(default_factory=dict)  # key -> (type, default)
    doc: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SpecError(f"rule set name {self.name!r} must be lower-case letters, digits, '.', '_' or '-'")
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "rules", tuple(self.rules))
        for r in self.rules:
            if not isinstance(r, Rule):
                raise SpecError(f"rule set {self.name!r} holds {r!r}, which is not a spikefit.rules.Rule")
        for key, spec in self.params.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], type)):
                raise SpecError(f"rule set {self.name!r}: parameter {key!r} must be declared as (type, default)")

    def applies_to(self, spec: TargetSpec) -> bool:
        return spec.name in self.targets or self.name in spec.rule_tables

    def parameters(self, spec: TargetSpec) -> dict[str, Any]:
        """This set's parameters for ``spec``: defaults, overridden by ``[rules.<name>]``, validated."""
        table = spec.rule_tables.get(self.name, {})
        out = {k: default for k, (_, default) in self.params.items()}
        for key, value in table.items():
            where = f"{spec.path or spec.name}: rules.{self.name}.{key}"
            if key not in self.params:
                near = closest(key, list(self.params))
                hint = f" (did you mean {near!r}?)" if near else ""
                known = ", ".join(self.params) or "none"
                raise SpecError(f"{where} is not a parameter of rule set {self.name!r}{hint}; its parameters: {known}")
            typ = self.params[key][0]
            ok = isinstance(value, typ) and not (typ in (int, float) and isinstance(value, bool))
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value, ok = float(value), True
            if not ok:
                raise SpecError(f"{where} must be {typ.__name__}; got {type(value).__name__} {value!r}")
            out[key] = value
        return out


@dataclass
class ChipView:
    """What a rule sees: the network, the spec, this set's parameters and what verify measured."""

    network: Network
    spec: TargetSpec
    params: dict[str, Any]
    placement: Any                          # spikefit.placement.Placement
    layers: list[LayerStats]
    populations: list[PopulationStats]
    rule: Rule | None = None                # the rule being checked (set by apply_rules)

    def output_populations(self) -> list[Neurons]:
        """Populations that feed an Output node (looking back through Flatten and Pool2d)."""
        out = []
        for node in self.network.nodes.values():
            if isinstance(node, Output):
                for pred in self.network.predecessors(node.name):
                    src = self.network._source(pred)
                    if isinstance(src, Neurons) and src not in out:
                        out.append(src)
        return out

    def layer(self, name: str) -> LayerStats:
        return next(s for s in self.layers if s.name == name)

    def row(self, usage, limit, ok: bool, worst: str = "", detail: str = "") -> Row:
        """A report row named after the rule being checked."""
        return Row(f"rule {self.rule.name}", usage, limit, bool(ok), worst, detail)


def rule_sets() -> list[RuleSet]:
    """Every registered rule set (``register_rules`` hook), by name."""
    from .plugins import registry

    return [registry("rule_set")[k] for k in sorted(registry("rule_set"))]


def rule_sets_for(spec: TargetSpec) -> list[RuleSet]:
    """The rule sets that apply to ``spec``; a ``[rules.<name>]`` table that no set claims is an error."""
    sets = rule_sets()
    names = {s.name for s in sets}
    for table in spec.rule_tables:
        if table not in names:
            near = closest(table, sorted(names))
            hint = f" (did you mean {near!r}?)" if near else ""
            raise SpecError(f"{spec.path or spec.name}: [rules.{table}] names no registered rule set{hint}; "
                            f"known rule sets: {', '.join(sorted(names)) or '(none)'}; install the plugin "
                            f"that provides it or remove the table")
    return [s for s in sets if s.applies_to(spec)]


def apply_rules(view: ChipView) -> list[Row]:
    """Every applicable rule's rows. A rule that raises (other than a SpikefitError) becomes a failing
    row naming the rule and its plugin: the others still run, and the network is not declared to fit."""
    from .plugins import owner_of

    rows: list[Row] = []
    for rs in rule_sets_for(view.spec):
        view.params = rs.parameters(view.spec)
        for rule in rs.rules:
            view.rule = rule
            try:
                got = rule.check(view)
            except SpikefitError:
                raise
            except Exception as e:  # a broken rule must not take verify down
                msg = " ".join(str(e).split())[:160]
                rows.append(Row(f"rule {rule.name}", None, None, False, "",
                                f"rule {rule.name!r} of plugin {owner_of('rule_set', rs.name)!r} raised "
                                f"{type(e).__name__}: {msg}; the rule could not be checked, report it to the plugin's author"))
                continue
            for r in ([] if got is None else [got] if isinstance(got, Row) else list(got)):
                if not isinstance(r, Row):
                    raise SpecError(f"rule {rule.name!r} returned {r!r}; a rule returns None, a Row or a list of Rows")
                rows.append(r)
        view.rule = None
    return rows


def rule_kind(row_name: str) -> str | None:
    """``about`` of the rule behind a report row named ``rule <name>`` (None for limit rows)."""
    if not row_name.startswith("rule "):
        return None
    name = row_name[5:]
    for rs in rule_sets():
        for r in rs.rules:
            if r.name == name:
                return r.about
    return "structure"


__all__ = ["Rule", "RuleSet", "ChipView", "Row", "apply_rules", "rule_sets", "rule_sets_for", "rule_kind"]
