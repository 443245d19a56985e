"""The trainer's view of the chip: verify's rows and the one placement, read for a torch SNN.

The trainer asks the chip the same questions verify answers, through the same code: which rows a
model exceeds (:func:`binding`), how much it uses (:func:`usage`), and, before any training, whether
even the smallest network of the model's shape could fit (:func:`check_feasible`): every hidden
population between dense connections pruned to one neuron, every neuron to one incoming synapse,
recurrent connections removed. What pruning cannot change (inputs, outputs, layer kinds, neuron
models, structural chip rules, cores the readout alone needs) then fails in seconds, with the row named.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from .errors import DoesNotFitError
from .fitcheck import FitReport, Row, verify
from .rules import rule_kind
from .spec import Limits, TargetSpec

#: rows that pruning neurons and synapses can bring down
PRUNABLE = ("neurons", "cores", "neurons_per_core", "synapses", "synapses_per_core", "axons_per_core", "fan_in",
            "fan_out", "fan_out_cores")
#: rows that CAT (quantization) meets, not pruning
WEIGHT_ROWS = ("weight_bits", "unique_weights")


def key(row: Row) -> str:
    """A row's limit key: "unique_weights (per core)" -> "unique_weights"."""
    return row.name.split(" (")[0]


def report(model, target: TargetSpec, limits: Limits | None = None) -> FitReport:
    """verify of the model's exported network, against ``limits`` instead of the target's when given."""
    spec = target if limits is None else replace(target, limits=limits)
    return verify(model.to_network(), spec)


def binding(model, target: TargetSpec, limits: Limits | None = None) -> list[str]:
    """The prunable limits (and size rules) the model exceeds; empty: nothing to prune."""
    rep = report(model, target, limits)
    return sorted({key(r) if key(r) in PRUNABLE else r.name for r in rep.failures
                   if key(r) in PRUNABLE or rule_kind(r.name) == "size"})


def usage(rep: FitReport) -> dict[str, int]:
    """Usage per limit key, as verify's rows report it (the report's and verify's numbers are one)."""
    out = {}
    for r in rep.rows:
        if isinstance(r.usage, (int, np.integer)) and not isinstance(r.usage, bool):
            out[key(r)] = int(r.usage)
    out["cores_used"] = rep.cores.cores
    out["neurons_total"] = sum(p.neurons for p in rep.populations)
    out["synapses_total"] = sum(s.synapses for s in rep.layers)
    return out


@torch.no_grad()
def skeleton(model):
    """The smallest network pruning can reach from ``model``: one neuron per prunable hidden layer,
    one (the strongest) incoming synapse per neuron of a dense connection, no recurrent connection."""
    from .fsc import _neuron_units
    from .nn import Linear

    sk = copy.deepcopy(model)
    for name in dict.fromkeys(u[0] for u in _neuron_units(sk)):
        sk.remove_neurons(name, np.array([0]))
    for pop in sk.populations():
        if pop.recurrent is not None:
            pop.recurrent.mask.zero_()
    for s in sk.synapses():
        if isinstance(s, Linear) and s.mask.any():
            score = (s.weight.abs() + 1e-12) * s.mask
            best = score.argmax(1)
            m = torch.zeros_like(s.mask)
            m[torch.arange(m.shape[0]), best] = 1
            s.mask.copy_(m * (s.mask.gather(1, best[:, None]) > 0))
    sk.apply_masks()
    for s in sk.synapses():  # on an integer grid (CAT puts them on one): rules that read integers see some
        if s.quant is None and s.weight.abs().max() > 0:
            step = float(s.weight.abs().max()) / 7
            s.weight.copy_(torch.round(s.weight / step) * step)
    return sk


def check_feasible(model, target: TargetSpec) -> None:
    """Stop before training, with the limit named, when not even :func:`skeleton` fits the target
    (weight rows excepted: CAT meets those; fan-out in synapses excepted: more hidden neurons spread it).

    :raises DoesNotFitError: the first such row."""
    rep = verify(skeleton(model).to_network(), target)
    bad = [r for r in rep.failures
           if key(r) not in WEIGHT_ROWS and rule_kind(r.name) != "weights" and r.name != "fan_out"]
    if bad:
        r = bad[0]
        where = f" at {r.worst}" if r.worst else ""
        why = f" ({r.detail})" if r.detail else ""
        raise DoesNotFitError(f"target {target.name!r} cannot hold this network even pruned to one neuron per "
                              f"hidden layer and one synapse per neuron: {r.name} needs {r.usage} of {r.limit}"
                              f"{where}{why}; use a larger target or a smaller network")
