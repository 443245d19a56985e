"""The fit check: measure a :class:`~spikefit.network.Network` against a :class:`~spikefit.spec.TargetSpec`.

``verify(network, target) -> FitReport`` places the populations on cores with the one placement
(:mod:`spikefit.placement`, also used by the trainer) and reports one :class:`Row` per limit the target
declares (usage, limit, ok and where the usage is largest), then one per chip rule
(:mod:`spikefit.rules`). Limits the target leaves out produce no row.

Modules: :mod:`.report` (rows and the report), :mod:`.check` (the limit rows), :mod:`.weights` (weight
bits and distinct values); the synapses themselves are measured by :mod:`spikefit.synapses`.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelError, SpikefitError
from ..network import Network
from ..spec import TargetSpec
from ..synapses import grid_step
from .report import CoreSummary, FitReport, LayerStats, PopulationStats, Row


def verify(network: Network, target: TargetSpec | str | Path) -> FitReport:
    """Check whether ``network`` fits ``target``: a TargetSpec, a registered target name, or a path
    to a target spec (``.toml``).

    :returns: a :class:`FitReport` with one row per limit the target declares and per chip rule;
        ``report.ok`` is True when every row is within its limit.
    :raises UnknownTargetError: ``target`` names no registered target.
    :raises ModelError: the network's structure cannot be measured (e.g. a connection whose input
        size does not match its source).
    :raises SpecError: the target's ``[rules.*]`` tables are wrong for its rule sets.
    """
    from .check import Check

    if isinstance(target, (str, Path)):
        from ..plugins import get_target

        target = get_target(target)
    if not isinstance(target, TargetSpec):
        raise ModelError(f"target {target!r} is neither a TargetSpec nor a target name; pass e.g. 'loihi2'")
    if not isinstance(network, Network):
        raise ModelError(f"verify needs a spikefit.Network, got {type(network).__name__}; "
                         f"read a model with spikefit.read_nir(path)")
    try:
        return Check(network, target).run()
    except SpikefitError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, ZeroDivisionError) as e:
        msg = " ".join(str(e).split())[:160]
        raise ModelError(f"verify cannot judge this graph ({type(e).__name__}: {msg}); simplify the graph "
                         f"(one source and one target population per connection) or report it") from None


__all__ = ["verify", "FitReport", "Row", "CoreSummary", "LayerStats", "PopulationStats", "grid_step"]
