"""Energy and latency per inference of a network on a chip, from counted activity and the chip's
published constants (the ``[energy]`` section of its target spec).

The model (``docs/energy.md``)::

    E_dynamic = N_synop x synop_pj + N_update x neuron_update_pj + N_message x spike_pj
    latency   = T x time_step_us
    E_static  = static_mw x latency
    E         = E_dynamic + E_static          (per inference: every count is divided by the samples)

``N_synop`` is spikefit's synaptic-operation count (every spike times its neuron's non-zero outgoing
synapses, :func:`spikefit.runner.synaptic_operations`), ``N_update`` the neurons times the steps (a
time-stepped chip updates every neuron every step), ``N_message`` every spike times the number of
distinct cores holding its targets under verify's packing (``FitReport.core_of``). A term whose
constant the chip does not publish is left out and named in ``missing``; with no term at all the
energy is ``None``, never a guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .network import Network
from .spec import ENERGY_CONSTANTS, TargetSpec

UNITS = {"synop_pj": "pJ", "neuron_update_pj": "pJ", "spike_pj": "pJ", "static_mw": "mW", "time_step_us": "us"}


@dataclass(frozen=True)
class Activity:
    """What one inference does, averaged over the samples of a run (chip-independent except messages)."""

    samples: int
    steps: int                        # time steps per inference
    synops: float                     # synaptic operations per inference
    neuron_updates: float             # neurons x steps
    spikes: float                     # spikes of all populations per inference
    input_spikes: float               # input spikes per inference
    messages: float | None = None     # (spike, destination core) messages per inference; None: no placement

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Term:
    """One count times one constant."""

    name: str                 # what is counted
    count: float | None       # per inference (None: not counted, e.g. no placement or no time step)
    key: str                  # energy.<key> of the spec
    constant: float | None    # the constant's value (None: not published for this chip)
    unit: str
    source: str | None
    unverified: bool
    energy_uj: float | None   # count x constant, in microjoules (None when the constant is absent)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EnergyReport:
    """Energy and latency per inference on one target, with the model written out."""

    target: str
    activity: Activity
    terms: list[Term]                          # dynamic terms, then the static term
    latency_us: float | None                   # steps x time_step_us
    dynamic_uj: float | None
    static_uj: float | None
    energy_uj: float | None                    # dynamic + static; None when no constant applies
    missing: list[str] = field(default_factory=list)  # energy.<key> the chip does not publish
    note: str = ""

    def to_dict(self) -> dict:
        return {"target": self.target, "energy_per_inference_uj": self.energy_uj,
                "dynamic_uj": self.dynamic_uj, "static_uj": self.static_uj,
                "latency_per_inference_us": self.latency_us, "activity": self.activity.to_dict(),
                "terms": [t.to_dict() for t in self.terms], "missing": list(self.missing), "note": self.note,
                "model": MODEL}

    def table(self) -> str:
        """Human-readable: totals, then each term as count x constant = energy, with its source."""
        lines = [f"energy    {_uj(self.energy_uj)} per inference on {self.target}"
                 + ("" if self.energy_uj is None else f" (dynamic {_uj(self.dynamic_uj)}, static {_uj(self.static_uj)})"),
                 f"latency   {'-' if self.latency_us is None else f'{self.latency_us:,.1f} us'} per inference "
                 f"({self.activity.steps} steps)"]
        for t in self.terms:
            const = "not published" if t.constant is None else f"{t.constant:g} {t.unit}{'*' if t.unverified else ''}"
            count = "-" if t.count is None else f"{t.count:,.1f}"
            lines.append(f"  {t.name:<28} {count:>14} x {const:<16} = {_uj(t.energy_uj):>12}")
        sources = [(t.key, t.source) for t in self.terms if t.source]
        if sources:
            lines.append("  sources:")
            lines += [f"    {k}: {s}" for k, s in sources]
        if any(t.unverified for t in self.terms):
            lines.append("  * unverified: no primary source confirms the value (see the target spec)")
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


MODEL = ("E = synops x synop_pj + neuron_updates x neuron_update_pj + spike_messages x spike_pj "
         "+ static_mw x latency; latency = steps x time_step_us (per inference; absent constants contribute nothing)")


def _uj(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g} uJ"


# -- counting ----------------------------------------------------------------------------------------

def destination_cores(network: Network, report) -> dict[str, np.ndarray]:
    """Per source (an input or a population): for each of its neurons, the number of distinct cores
    that hold the targets of its non-zero synapses, under ``report``'s placement (a verify FitReport)."""
    from .fixedpoint import connection_matrix

    pairs: dict[str, list[sp.coo_array]] = {}
    n_src: dict[str, int] = {}
    n_cores = max((p.first_core + p.cores for p in report.populations if p.first_core is not None), default=1)
    for sl in network.synapse_layers():
        mat = sp.csr_array(connection_matrix(network, sl.conn))
        mat.eliminate_zeros()
        coo = mat.tocoo()
        n_src[sl.pre.name] = mat.shape[1]
        if coo.nnz == 0:
            continue
        core = report.core_of(sl.post.name)[coo.row]             # core of each synapse's target
        ones = np.ones(coo.nnz, dtype=np.int64)
        pairs.setdefault(sl.pre.name, []).append(
            sp.coo_array((ones, (coo.col, core)), shape=(mat.shape[1], int(n_cores))))
    out = {}
    for name, n in n_src.items():
        mats = pairs.get(name)
        if not mats:
            out[name] = np.zeros(n, dtype=np.int64)
            continue
        m = sp.csr_array(sum(x.tocsr() for x in mats))
        m.eliminate_zeros()
        out[name] = np.diff(m.indptr).astype(np.int64)            # distinct destination cores per source neuron
    return out


def activity(network: Network, run, report=None) -> Activity:
    """Per-inference counts of a :class:`spikefit.runner.RunResult` of ``network``; ``report`` (a verify
    FitReport) adds the spike messages between cores."""
    b, T = run.samples, run.steps
    neurons = sum(p.size for p in network.populations())
    messages = None
    if report is not None:
        total = 0
        inp = network.inputs[0].name
        for name, per_neuron in destination_cores(network, report).items():
            if name == inp:
                spikes = run.input_counts
            else:
                spikes = np.asarray(run.outputs[name]).reshape(T * b, -1).astype(bool).sum(0)
            total += int(np.asarray(spikes, dtype=np.int64) @ per_neuron)
        messages = total / b
    return Activity(samples=b, steps=T, synops=run.synops_total / b, neuron_updates=float(neurons * T),
                    spikes=sum(run.spikes.values()) / b, input_spikes=run.input_spikes / b, messages=messages)


# -- the model ---------------------------------------------------------------------------------------

def estimate(act: Activity, target: TargetSpec) -> EnergyReport:
    """Energy and latency per inference of activity ``act`` on ``target`` (its ``[energy]`` constants)."""
    e = target.energy
    counts = [("synaptic operations", act.synops, "synop_pj"),
              ("neuron updates", act.neuron_updates, "neuron_update_pj"),
              ("spike messages", act.messages, "spike_pj")]
    terms, missing = [], []
    for name, count, key in counts:
        value = getattr(e, key)
        if value is None:
            missing.append(f"energy.{key}")
        usable = value is not None and count is not None
        terms.append(Term(name, None if count is None else float(count), key, value, UNITS[key],
                          e.source(key), target.is_unverified(f"energy.{key}"),
                          count * value * 1e-6 if usable else None))
    latency = None if e.time_step_us is None else act.steps * e.time_step_us
    if e.time_step_us is None:
        missing.append("energy.time_step_us")
    if e.static_mw is None:
        missing.append("energy.static_mw")
    static = e.static_mw * latency * 1e-3 if (e.static_mw is not None and latency is not None) else None
    terms.append(Term("static power x latency (us)", latency, "static_mw",
                      e.static_mw, UNITS["static_mw"], e.source("static_mw"), target.is_unverified("energy.static_mw"),
                      static))
    if e.time_step_us is not None:
        terms.append(Term("time steps", float(act.steps), "time_step_us", e.time_step_us, UNITS["time_step_us"],
                          e.source("time_step_us"), target.is_unverified("energy.time_step_us"), None))
    dyn = [t.energy_uj for t in terms[:3] if t.energy_uj is not None]
    dynamic = sum(dyn) if dyn else None
    total = None if dynamic is None and static is None else (dynamic or 0.0) + (static or 0.0)
    return EnergyReport(target.name, act, terms, latency, dynamic, static, total, missing, e.note)


def estimate_run(network: Network, run, target: TargetSpec | str, report=None) -> EnergyReport:
    """:func:`estimate` of a run of ``network`` on ``target`` (a spec or a name); placement from
    ``report`` or from :func:`spikefit.verify.verify`."""
    if isinstance(target, str):
        from .plugins import get_target

        target = get_target(target)
    if report is None:
        from .fitcheck import verify

        report = verify(network, target)
    return estimate(activity(network, run, report), target)


def fit_energy(network: Network, target: TargetSpec, report, dataset: str, samples: int | None = None) -> dict:
    """The energy section of a fit's report: ``network`` run on the emulator over the test split of
    ``dataset`` (the first ``samples``, encoded as the network's metadata says), placed as ``report``."""
    from .errors import SpikefitError
    from .runner import run

    try:
        res = run(network, "emulator", dataset=dataset, samples=samples)
    except SpikefitError as e:  # e.g. a user's data set that is not registered by name, or current inputs
        return {"target": target.name, "energy_per_inference_uj": None, "error": str(e)}
    return estimate(activity(network, res, report), target).to_dict()


def markdown(e: dict | None) -> list[str]:
    """Markdown lines of an energy section (:meth:`EnergyReport.to_dict` or :func:`fit_energy`), term by term."""
    if not e:
        return []
    if "error" in e:
        return ["## Energy", "", f"Not estimated: {e['error']}", ""]
    fmt = lambda v, unit: "-" if v is None else f"{v:.4g} {unit}"  # noqa: E731
    act = e["activity"]
    lines = ["## Energy", "", f"Per inference on `{e['target']}` (test split, {act['samples']} samples, "
             f"{act['steps']} steps): energy **{fmt(e['energy_per_inference_uj'], 'uJ')}**, latency "
             f"**{fmt(e['latency_per_inference_us'], 'us')}**; {act['synops']:,.1f} synaptic operations and "
             f"{act['spikes']:,.1f} spikes.", "", "| term | count | constant | energy | source |", "|---|---:|---:|---:|---|"]
    for t in e["terms"]:
        const = "not published" if t["constant"] is None else f"{t['constant']:g} {t['unit']}" + (" (unverified)" if t["unverified"] else "")
        count = "-" if t["count"] is None else f"{t['count']:,.1f}"
        lines.append(f"| {t['name']} | {count} | {const} | {fmt(t['energy_uj'], 'uJ')} | {t['source'] or '-'} |")
    return lines + ["", f"Model: {e['model']}." + (f" Note: {e['note']}." if e["note"] else ""), ""]


def has_constants(target: TargetSpec) -> bool:
    """True when the target publishes at least one per-operation energy constant."""
    return any(getattr(target.energy, k) is not None for k in ENERGY_CONSTANTS if k.endswith("_pj"))


__all__ = ["Activity", "Term", "EnergyReport", "activity", "estimate", "estimate_run", "destination_cores", "fit_energy", "markdown",
           "has_constants", "MODEL"]
