"""Rockpool's Xylo Audio 2 specification of a spikefit Network: what the exporter writes, what the
XyloSim backend runs.

:func:`specification` refuses, before Rockpool is called, any network that spikefit's verify says does
not fit the target (an :class:`~spikefit.errors.ExportError` naming the row, e.g. ``rule
xylo.output_not_recurrent`` and its layer); it then converts the network (:mod:`.convert`), runs
Rockpool's mapper and sets the matrices' weight shifts. The result is the keyword arguments of
``XyloSim.from_specification`` plus, per population, which Xylo neurons hold it.

The file format (``spikefit export --format xylo``) is a NumPy ``.npz`` archive of those arrays (the
specification dict Rockpool's mapper returns, ``mapped_graph`` left out) and one ``spikefit`` entry, a
JSON string: format version, the rockpool and xylosim versions, dt, and the neurons of each population.
:func:`load_specification` reads it back into ``XyloSim.from_specification``'s arguments.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikefit.errors import ExportError
from spikefit.network import Network

FORMAT = "spikefit-xylo-specification/1"
TARGET = "xylo-audio2"
MAX_HIDDEN = 1000          # the mapper's max_hidden_neurons: output neurons get ids from here on
ARRAYS = ("weights_in", "weights_out", "weights_rec", "dash_mem", "dash_mem_out", "dash_syn", "dash_syn_2",
          "dash_syn_out", "threshold", "threshold_out", "bias", "bias_out")
SCALARS = ("weight_shift_in", "weight_shift_rec", "weight_shift_out")


@dataclass
class XyloSpec:
    """``XyloSim.from_specification(**spec.kwargs())`` builds the chip's network."""

    arrays: dict[str, np.ndarray]
    shifts: dict[str, int]                 # weight_shift_in/rec/out
    dt: float
    populations: dict[str, dict] = field(default_factory=dict)  # name -> {"layer": "hidden"|"output", "ids": [...]}
    versions: dict[str, str] = field(default_factory=dict)

    def kwargs(self) -> dict:
        return {**self.arrays, **self.shifts, "dt": self.dt}

    @property
    def n_inputs(self) -> int:
        return int(self.arrays["weights_in"].shape[0])

    def meta(self) -> dict:
        return {"format": FORMAT, "versions": self.versions, "dt": self.dt, "shifts": self.shifts,
                "populations": self.populations}


def _target(target):
    import spikefit

    if target is None:
        return spikefit.get_target(TARGET)
    if target.name != TARGET and "xylo" not in target.rule_tables:
        raise ExportError(f"the xylo format is Xylo Audio 2's; target {target.name!r} is another chip: "
                          f"pass --target {TARGET} (or a spec with a [rules.xylo] table)")
    return target


def refuse_what_does_not_fit(network: Network, target) -> None:
    """An ExportError naming the first failing row of spikefit's verify, before Rockpool is called."""
    import spikefit

    report = spikefit.verify(network, target)
    if report.ok:
        return
    bad = report.failures[0]
    where = f" at {bad.worst}" if bad.worst else ""
    why = f": {bad.detail}" if bad.detail else ""
    raise ExportError(f"{target.name} cannot run this network: {bad.name} uses {bad.usage} of {bad.limit}{where}{why}")


def specification(network: Network, target=None) -> XyloSpec:
    """Rockpool's specification of ``network`` for Xylo Audio 2 (``target``: its TargetSpec, default
    the catalog's ``xylo-audio2``)."""
    from .convert import map_converted, to_rockpool
    from .vendor_import import load, versions

    target = _target(target)
    refuse_what_does_not_fit(network, target)
    rp = load()
    conv = to_rockpool(network, rp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rp.DRCWarning)
        try:
            mapped = map_converted(conv, rp)
        except Exception as e:
            first = " ".join(str(e).split())[:200]
            raise ExportError(f"Rockpool's mapper refused the network: {type(e).__name__}: {first}") from None
    graph = mapped.pop("mapped_graph")
    arrays = {k: np.asarray(mapped[k]) for k in ARRAYS}
    n_hidden = len(arrays["threshold"])
    pops = {}
    from rockpool.graph import GenericNeurons, find_modules_of_subclass

    for mod in find_modules_of_subclass(graph, GenericNeurons):
        out = type(mod).__name__.endswith("OutputNeurons")
        ids = [int(i) - (MAX_HIDDEN if out else 0) for i in mod.hw_ids]
        pops[mod.name] = {"layer": "output" if out else "hidden", "ids": ids}
    for name, p in pops.items():
        top = n_hidden if p["layer"] == "hidden" else len(arrays["threshold_out"])
        if any(not 0 <= i < top for i in p["ids"]):
            raise ExportError(f"Rockpool placed population {name!r} outside its {p['layer']} neurons; report it")
    shifts = {k: int(mapped[k]) for k in SCALARS}
    return XyloSpec(arrays, shifts, float(network.dt), pops, versions())


def save_specification(spec: XyloSpec, path) -> Path:
    path = Path(path)
    with open(path, "wb") as f:  # np.savez on a file object keeps the name as given (no ".npz" added)
        np.savez(f, spikefit=np.array(json.dumps(spec.meta())), **spec.arrays)
    return path


def load_specification(path) -> XyloSpec:
    """Read a file written by ``spikefit export --format xylo``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["spikefit"]))
            arrays = {k: np.asarray(z[k]) for k in ARRAYS}
    except (OSError, KeyError, ValueError) as e:
        raise ExportError(f"'{path}' is not a spikefit xylo export ({type(e).__name__}: {e}); write one with "
                          f"spikefit export --format xylo") from None
    if meta.get("format") != FORMAT:
        raise ExportError(f"'{path}' has format {meta.get('format')!r}, expected {FORMAT!r}")
    return XyloSpec(arrays, {k: int(v) for k, v in meta["shifts"].items()}, float(meta["dt"]),
                    meta["populations"], meta.get("versions", {}))
