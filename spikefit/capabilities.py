"""What a backend or exporter declares it runs: the inputs it takes and the neuron models it runs.

A backend registered through ``register_backends`` declares, as attributes:

* ``inputs``: ``"spikes"`` (0/1 per channel and step), ``"counts"`` (whole numbers of input events per
  channel and step, at most ``max_events``) or ``"currents"`` (any finite real value);
* ``max_events``: with ``"counts"``, the most events one channel takes in one step (None: no limit);
* ``neurons``: the neuron models it runs (names of :data:`spikefit.spec.NEURON_MODELS`).

An exporter may declare ``neurons`` too. A backend that declares nothing takes currents and runs any
neuron (the contract before declarations existed); the registry refuses a malformed declaration.

A network's neuron model is its target's chip neuron (``[neuron] models``): the target given, else
the one its metadata names (``spikefit fit`` records it). A network without either runs spikefit's
generic LIF, which a chip's own backend reads as the chip's neuron; a network trained for a chip's
neuron is refused by a backend or exporter that does not declare that neuron. The core names no
backend here: :func:`pair` and :func:`counterparts` choose among the registered ones by declaration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BackendError, ExportError, PluginError, SpikefitError
from .spec import GENERIC_MODELS, NEURON_MODELS

INPUT_KINDS = ("spikes", "counts", "currents")   # each takes everything the kinds before it take
REFERENCE = "emulator"                            # the core's fixed-point emulator: the reference of comparisons


@dataclass(frozen=True)
class Capability:
    """What one backend (or exporter) declares."""

    inputs: str = "currents"                 # "spikes" | "counts" | "currents"
    max_events: int | None = None            # "counts": events per channel and step it takes (None: any)
    neurons: tuple[str, ...] | None = None   # neuron models it runs; None: undeclared (any)

    def __post_init__(self):
        if self.inputs not in INPUT_KINDS:
            raise PluginError(f"declares inputs {self.inputs!r}; use one of {', '.join(INPUT_KINDS)}")
        if self.max_events is not None:
            if isinstance(self.max_events, bool) or not isinstance(self.max_events, (int, np.integer)) \
                    or self.max_events < 1:
                raise PluginError(f"declares max_events {self.max_events!r}; use a whole number of at least 1 or None")
            if self.inputs != "counts":
                raise PluginError(f"declares max_events {self.max_events} with inputs {self.inputs!r}; "
                                  "max_events goes with inputs 'counts'")
        if self.neurons is not None:
            neurons = (self.neurons,) if isinstance(self.neurons, str) else self.neurons
            if not isinstance(neurons, (list, tuple)) or not neurons:
                raise PluginError(f"declares neurons {self.neurons!r}; use a non-empty list of {', '.join(NEURON_MODELS)}")
            bad = [m for m in neurons if m not in NEURON_MODELS]
            if bad:
                raise PluginError(f"declares neuron model {bad[0]!r}; use names of {', '.join(NEURON_MODELS)}")
            object.__setattr__(self, "neurons", tuple(neurons))

    def runs(self, model: str | None) -> bool:
        """Runs neuron ``model`` (None: spikefit's generic LIF, any generic model declared)."""
        if self.neurons is None:
            return True
        if model is None:
            return any(m in GENERIC_MODELS for m in self.neurons)
        return model in self.neurons

    def describe(self) -> str:
        if self.inputs == "spikes":
            return "0/1 spikes"
        if self.inputs == "counts":
            top = "" if self.max_events is None else f" (0..{self.max_events})"
            return f"input event counts{top}"
        return "currents"


def capability(backend) -> Capability:
    """The declaration of ``backend`` (an object; its attributes ``inputs``, ``max_events``, ``neurons``)."""
    return Capability(getattr(backend, "inputs", "currents"), getattr(backend, "max_events", None),
                      getattr(backend, "neurons", None))


def declared(obj) -> str:
    """Check a registered object's declaration (the registry calls this): '' or why it is malformed."""
    try:
        capability(obj)
    except PluginError as e:
        return str(e)
    return ""


def label(backend) -> str:
    """``'emulator'``, or ``'emulator' (xylo-lif)`` for one running a chip's neuron."""
    neuron = getattr(backend, "neuron", None)
    return f"{backend.name!r}" + (f" ({neuron})" if neuron else "")


# -- inputs ------------------------------------------------------------------------------------------

def input_kind(x: np.ndarray) -> str:
    """The narrowest kind that holds ``x``: spikes (0/1), counts (whole numbers >= 0) or currents."""
    x = np.asarray(x)
    if not x.size or np.isin(x, (0, 1)).all():
        return "spikes"
    if x.min() >= 0 and np.array_equal(x, np.rint(x)):
        return "counts"
    return "currents"


def _takers(kind: str) -> list[str]:
    from .plugins import registry

    out = []
    for name, be in registry("backend").items():
        try:
            if capability(be).inputs == kind:
                out.append(name)
        except PluginError:
            continue
    return out


def check_inputs(backend, x: np.ndarray) -> None:
    """Inputs beyond what ``backend`` declares: one line naming the value, the limit and the fix."""
    cap = capability(backend)
    if cap.inputs == "currents":
        return
    kind = input_kind(x)
    lo, hi = float(np.min(x)), float(np.max(x))
    if kind == "currents":
        takers = " or ".join(repr(n) for n in _takers("currents")) or "a backend that takes currents"
        raise BackendError(f"the inputs are currents (values in [{lo:g}, {hi:g}]) and backend {label(backend)} takes "
                           f"{cap.describe()}; run currents on {takers}, or fit with --encoding rate so that the "
                           "model takes spikes")
    if kind == "counts" and cap.inputs == "spikes":
        takers = ", ".join(repr(n) for n in _takers("counts"))
        hint = f"run them on a backend that takes counts ({takers})" if takers else "bin them to 0/1 spikes"
        raise BackendError(f"the inputs hold {hi:g} events in one channel and step and backend {label(backend)} "
                           f"takes 0/1 spikes; pass 0/1 spikes, or {hint}")
    if kind == "counts" and cap.max_events is not None and hi > cap.max_events:
        raise BackendError(f"input event count {hi:g} exceeds the limit of backend {label(backend)}: at most "
                           f"{cap.max_events} events per channel and step; split the events over more steps or "
                           f"clip them to {cap.max_events}")


# -- neurons -----------------------------------------------------------------------------------------

def network_neuron(network, spec=None) -> tuple[str | None, object, str]:
    """The chip neuron ``network`` runs (None: spikefit's generic LIF), the target (TargetSpec) that
    says so, and where that comes from: ``spec``'s ``[neuron] models``, else those of the target its
    metadata names."""
    if isinstance(spec, str):
        from .plugins import get_target

        spec = get_target(spec)
    if spec is not None:
        return spec.neuron.chip_model, spec, f"target {spec.name!r}"
    name = network.metadata.get("target") if isinstance(network.metadata, dict) else None
    if not isinstance(name, str):
        return None, None, "no target"
    from .plugins import get_target

    try:
        target = get_target(name)
    except SpikefitError:
        return None, None, f"unregistered target {name!r}"
    return target.neuron.chip_model, target, f"its metadata names target {name!r}"


def runners(model: str) -> list[str]:
    """Registered backends that declare neuron ``model``."""
    from .plugins import registry

    return [n for n, be in registry("backend").items()
            if not declared(be) and capability(be).neurons is not None and model in capability(be).neurons]


def check_neuron(obj, network, spec=None, error=BackendError, what: str = "backend") -> None:
    """A network trained for a chip's neuron on a backend (or exporter) that does not run it: one line."""
    cap = capability(obj)
    model, target, origin = network_neuron(network, spec)
    if model is None or cap.runs(model):
        return
    if what == "backend":
        others = [repr(n) for n in runners(model) if n != getattr(obj, "name", None)]
        fix = f"run it on {' or '.join([*others, f'the emulator with --target {target.name}'])}"
    else:
        fix = f"export it in a format that runs {model}, or fit it to a target whose neuron this {what} runs"
    raise error(f"{what} {label(obj)} runs {', '.join(cap.neurons)} neurons, and this network's are {model} "
                f"({origin}); {fix}")


# -- choosing backends -------------------------------------------------------------------------------

def counterparts(model: str | None, exclude=()) -> list[str]:
    """Registered backends other than the core's own that declare neuron ``model`` (None: generic LIF)."""
    from .plugins import owner_of, registry

    out = []
    for name, be in registry("backend").items():
        if name in exclude or owner_of("backend", name) == "spikefit.builtin" or declared(be):
            continue
        cap = capability(be)
        if cap.neurons is not None and cap.runs(model):
            out.append(name)
    return out


def pair(network, spec=None) -> list[str]:
    """The default comparison: the emulator and the first registered backend that runs the network's
    neuron (``spec``'s chip neuron, else the one its metadata names, else the generic LIF)."""
    model, _, origin = network_neuron(network, spec)
    others = counterparts(model)
    if not others:
        raise BackendError(f"no registered backend besides the emulator runs {model or 'generic LIF'} neurons "
                           f"({origin}); install a plugin that provides one (`spikefit plugins` lists the loaded "
                           "ones), or name the backends: --compare emulator,OTHER")
    return [REFERENCE, others[0]]


__all__ = ["INPUT_KINDS", "Capability", "capability", "check_inputs", "check_neuron", "input_kind",
           "network_neuron", "counterparts", "pair", "label"]
