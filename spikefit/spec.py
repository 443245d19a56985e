"""The abstract constraint interface: :class:`TargetSpec` and :func:`load_target`.

A target spec declares a chip's limits in TOML (schema: ``docs/targets.md``). Every limit is
optional: an omitted limit means unconstrained. Specs are validated on construction; errors name
the offending key and value and say how to fix it.
"""
from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import bounds
from .errors import SpecError
from .network import SCOPES

NEURON_MODELS = ("cuba-lif", "lif", "if", "xylo-lif", "speck-if", "akida-act", "truenorth-lif")
GENERIC_MODELS = ("cuba-lif", "lif", "if")   # spikefit.network's neuron with du, dv (Lava's arithmetic)
# A chip's own neuron (spikefit.chipneurons), and the generic model whose networks it runs: the
# network's du, dv and vth are read as that chip's parameters (docs/targets.md).
CHIP_MODELS = {"xylo-lif": "cuba-lif", "speck-if": "if", "akida-act": "if", "truenorth-lif": "lif"}
LAYER_KINDS = ("dense", "sparse", "conv2d", "sumpool2d", "avgpool2d", "flatten", "recurrent")
WEIGHT_SCALING = ("layer", "chip", "none")
FAN_OUT_UNITS = ("synapses", "cores")
SHARED_PARAMS = ("du", "dv", "vth")


@dataclass(frozen=True)
class Limits:
    """Hardware budgets. ``None`` means unconstrained."""

    neurons: int | None = None           # total neurons on the chip (all populations, inputs excluded)
    cores: int | None = None             # cores available to the network
    neurons_per_core: int | None = None  # neurons one core holds
    synapses: int | None = None          # total non-zero synapses
    synapses_per_core: int | None = None # non-zero synapses targeting the neurons of one core
    axons_per_core: int | None = None    # distinct presynaptic inputs (axons) one core receives
    fan_in: int | None = None            # non-zero incoming synapses of one neuron
    fan_out: int | None = None           # outgoing non-zero synapses (or destination cores) of one neuron (0: unconstrained)
    fan_out_unit: str = "synapses"       # what fan_out counts: "synapses" | "cores" (distinct cores holding its targets)
    fan_out_cores: int | None = None     # distinct destination cores of one core's neurons
    weight_bits: int | None = None       # signed integer weight precision, sign included
    unique_weights: int | None = None    # M: distinct non-zero weight values per scope
    unique_weights_scope: str = "neuron" # "neuron" | "core" | "layer" | "chip"
    weight_scaling: str = "layer"        # integers -> weights: one real scale per "layer", per "chip", or "none"
    inputs: int | None = None            # input channels of the network
    outputs: int | None = None           # output neurons of the network

    def __post_init__(self):
        for f in fields(self):
            val = getattr(self, f.name)
            if f.type.startswith("int") and val is not None:
                _positive_int(f"limits.{f.name}", val, allow_zero=f.name == "fan_out")
        if self.fan_out == 0:
            object.__setattr__(self, "fan_out", None)
        _choice("limits.unique_weights_scope", self.unique_weights_scope, SCOPES)
        _choice("limits.weight_scaling", self.weight_scaling, WEIGHT_SCALING)
        _choice("limits.fan_out_unit", self.fan_out_unit, FAN_OUT_UNITS)
        if self.fan_out_unit != "synapses" and self.fan_out is None:
            raise SpecError(f"limits.fan_out_unit {self.fan_out_unit!r} needs limits.fan_out; set fan_out or remove fan_out_unit")


@dataclass(frozen=True)
class NeuronSpec:
    """The neuron models a chip runs and its fixed-point state, as the chip defines them."""

    models: tuple[str, ...] = GENERIC_MODELS  # "cuba-lif" runs "lif" and "if" too (du = 1, dv = 0)
    state_bits: int | None = None            # membrane / current state precision (informational)
    decay_bits: int | None = None            # decays are integers out of 2**decay_bits
    threshold_bits: int | None = None        # unsigned threshold mantissa precision
    bias_bits: int | None = None             # signed bias mantissa precision
    reset: str = "zero"                      # "zero" | "subtract" (after a spike)

    def __post_init__(self):
        models = (self.models,) if isinstance(self.models, str) else self.models
        if not isinstance(models, (list, tuple)) or not models:
            raise SpecError(f"neuron.models must be a non-empty list of {', '.join(NEURON_MODELS)}; got {self.models!r}")
        for m in models:
            _choice("neuron.models", m, NEURON_MODELS)
        object.__setattr__(self, "models", tuple(models))
        for name in ("state_bits", "decay_bits", "threshold_bits", "bias_bits"):
            if getattr(self, name) is not None:
                _positive_int(f"neuron.{name}", getattr(self, name))
        _choice("neuron.reset", self.reset, ("zero", "subtract"))

    def runs(self, model: str) -> bool:
        """A chip that runs cuba-lif also runs lif (du = 1) and if (du = 1, dv = 0); a chip's own model
        runs the generic model it stands for (CHIP_MODELS) and those below it."""
        if model in CHIP_MODELS:
            return model in self.models
        order = GENERIC_MODELS[::-1]  # if < lif < cuba-lif
        return any(order.index(model) <= order.index(CHIP_MODELS.get(m, m)) for m in self.models)

    @property
    def chip_model(self) -> str | None:
        """The chip's own neuron model (the first of ``models`` in CHIP_MODELS), None for the generic
        LIF of spikefit.network: what training and the emulator run for this target."""
        return next((m for m in self.models if m in CHIP_MODELS), None)


@dataclass(frozen=True)
class CoreSpec:
    """Parameters that neurons on one core must share and how layers may be packed onto cores."""

    shared: tuple[str, ...] = ()         # neuron parameters one core's neurons share, from du, dv, vth
    parameter_sets: int | None = None    # distinct shared-parameter sets one core may hold (None: 1 if shared)
    share_layers: bool = True            # may neurons of different layers sit on one core

    def __post_init__(self):
        shared = self.shared
        if not isinstance(shared, (list, tuple)):
            raise SpecError(f"core.shared must be a list of {', '.join(SHARED_PARAMS)}; got {shared!r}")
        for p in shared:
            _choice("core.shared", p, SHARED_PARAMS)
        object.__setattr__(self, "shared", tuple(shared))
        if self.parameter_sets is not None:
            _positive_int("core.parameter_sets", self.parameter_sets)
        if not isinstance(self.share_layers, bool):
            raise SpecError(f"core.share_layers must be true or false; got {self.share_layers!r}")

    @property
    def max_parameter_sets(self) -> int | None:
        if not self.shared:
            return None
        return self.parameter_sets or 1


@dataclass(frozen=True)
class LayerSpec:
    kinds: tuple[str, ...] = LAYER_KINDS  # connection/structure kinds the chip maps
    max_kernel: int | None = None         # largest conv kernel side
    max_channels: int | None = None       # largest number of conv channels

    def __post_init__(self):
        kinds = self.kinds
        if not isinstance(kinds, (list, tuple)) or not kinds:
            raise SpecError(f"layers.kinds must be a non-empty list of {', '.join(LAYER_KINDS)}; got {kinds!r}")
        for k in kinds:
            _choice("layers.kinds", k, LAYER_KINDS)
        object.__setattr__(self, "kinds", tuple(kinds))
        for name in ("max_kernel", "max_channels"):
            if getattr(self, name) is not None:
                _positive_int(f"layers.{name}", getattr(self, name))


ENERGY_CONSTANTS = ("synop_pj", "neuron_update_pj", "spike_pj", "static_mw", "time_step_us")


@dataclass(frozen=True)
class EnergySpec:
    """Published energy and time figures of the chip (model: :mod:`spikefit.energy`). ``None``: not published."""

    synop_pj: float | None = None          # energy of one synaptic operation (one spike reaching one synapse)
    neuron_update_pj: float | None = None  # energy of updating one neuron in one time step
    spike_pj: float | None = None          # energy of one spike message sent to one destination core
    static_mw: float | None = None         # static (leakage / idle) power of the chip
    time_step_us: float | None = None      # wall time of one time step (latency per step)
    sources: tuple[str, ...] = ()          # "key: source" for every constant set, e.g. "synop_pj: Davies 2018 Table 2"
    note: str = ""                         # what the figures include or why some are absent

    def __post_init__(self):
        for key in ENERGY_CONSTANTS:
            val = getattr(self, key)
            if val is None:
                continue
            if isinstance(val, bool) or not isinstance(val, (int, float)) or val != val:
                raise SpecError(f"energy.{key} must be a number; got {type(val).__name__} {val!r}")
            if val < 0 or val == float("inf"):
                raise SpecError(f"energy.{key} must be a finite number >= 0; got {val} (omit the key when no figure is published)")
            object.__setattr__(self, key, float(val))
        if not isinstance(self.sources, (list, tuple)) or not all(isinstance(s, str) for s in self.sources):
            raise SpecError(f"energy.sources must be a list of \"key: source\" strings; got {self.sources!r}")
        object.__setattr__(self, "sources", tuple(self.sources))
        if not isinstance(self.note, str):
            raise SpecError(f"energy.note must be a string; got {type(self.note).__name__} {self.note!r}")
        named = {}
        for entry in self.sources:
            key, sep, text = entry.partition(":")
            key = key.strip()
            if not sep or key not in ENERGY_CONSTANTS or not text.strip():
                near = closest(key, list(ENERGY_CONSTANTS))
                hint = f" (did you mean {near!r}?)" if near and key not in ENERGY_CONSTANTS else ""
                raise SpecError(f"energy.sources entry {entry!r} must read \"KEY: source\" with KEY one of "
                                f"{', '.join(ENERGY_CONSTANTS)}{hint}")
            named[key] = text.strip()
        for key in ENERGY_CONSTANTS:
            if getattr(self, key) is not None and key not in named:
                raise SpecError(f"energy.{key} has no source; add \"{key}: <paper, table or page>\" to energy.sources")

    def source(self, key: str) -> str | None:
        """The source given for constant ``key`` (None when the constant is not set)."""
        for entry in self.sources:
            k, _, text = entry.partition(":")
            if k.strip() == key:
                return text.strip()
        return None


@dataclass(frozen=True)
class TargetSpec:
    """A neuromorphic chip (or any deployment target) as a set of limits."""

    name: str                                  # unique, lower-case, used on the command line
    vendor: str = ""
    description: str = ""
    sources: tuple[str, ...] = ()              # where the numbers come from
    unverified: tuple[str, ...] = ()           # dotted keys whose values no primary source confirms
    limits: Limits = field(default_factory=Limits)
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    core: CoreSpec = field(default_factory=CoreSpec)
    layers: LayerSpec = field(default_factory=LayerSpec)
    energy: EnergySpec = field(default_factory=EnergySpec)
    rules: tuple = ()                          # [rules.<set>] tables: ((set, ((key, value), ...)), ...)
    path: str | None = None                    # file it was loaded from
    plugin: str | None = None                  # plugin that registered it (set by the registry)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"name must be a non-empty string; got {self.name!r}")
        if not _NAME.fullmatch(self.name):
            fixed = re.sub(r"[^a-z0-9._-]+", "-", self.name.lower()).strip("-._") or "mychip"
            raise SpecError(f"name {self.name!r} must be lower-case letters, digits, '-', '_' or '.', e.g. {fixed!r}")
        for key in ("vendor", "description"):
            if not isinstance(getattr(self, key), str):
                raise SpecError(f"{key} must be a string; got {type(getattr(self, key)).__name__} {getattr(self, key)!r}")
        for key in ("sources", "unverified"):
            val = getattr(self, key)
            if not isinstance(val, (list, tuple)) or not all(isinstance(s, str) for s in val):
                raise SpecError(f"{key} must be a list of strings; got {val!r}")
            object.__setattr__(self, key, tuple(val))
        for key in self.unverified:
            if key not in SCHEMA_KEYS and not (key.startswith("rules.") and key.count(".") == 2):
                near = closest(key, list(SCHEMA_KEYS))
                hint = f" (did you mean {near!r}?)" if near else ""
                raise SpecError(f"unverified names {key!r}, which is not a spec key{hint}; use dotted keys such as 'limits.weight_bits'")
        object.__setattr__(self, "rules", _rule_tables(self.rules))
        lim = self.limits
        if lim.neurons_per_core and lim.neurons and lim.neurons_per_core > lim.neurons:
            raise SpecError(f"limits.neurons_per_core {lim.neurons_per_core} exceeds limits.neurons {lim.neurons}; "
                            f"lower neurons_per_core or raise neurons")
        if lim.synapses_per_core and lim.synapses and lim.synapses_per_core > lim.synapses:
            raise SpecError(f"limits.synapses_per_core {lim.synapses_per_core} exceeds limits.synapses {lim.synapses}; "
                            f"lower synapses_per_core or raise synapses")
        if lim.unique_weights and lim.weight_bits and lim.unique_weights > 2 ** lim.weight_bits - 1:
            raise SpecError(f"limits.unique_weights {lim.unique_weights} exceeds the {2 ** lim.weight_bits - 1} "
                            f"non-zero values a {lim.weight_bits}-bit weight holds; lower it or raise weight_bits")

    @property
    def rule_tables(self) -> dict[str, dict[str, Any]]:
        """The ``[rules.<set>]`` tables: rule-set name -> its parameters (see :mod:`spikefit.rules`)."""
        return {name: dict(items) for name, items in self.rules}

    def is_unverified(self, key: str) -> bool:
        """True when the dotted ``key`` (e.g. ``"limits.weight_bits"``) is flagged as unverified."""
        return key in self.unverified

    def to_dict(self) -> dict:
        """Plain data (lists, dicts, None for unconstrained), JSON-ready; :meth:`from_dict` reads it back."""
        d = _plain(asdict(self))
        d["rules"] = self.rule_tables
        return d

    @classmethod
    def from_dict(cls, data: dict, *, path: str | None = None) -> "TargetSpec":
        """Build a spec from TOML-shaped data (or :meth:`to_dict` output: ``None`` means unconstrained)."""
        if not isinstance(data, dict):
            raise SpecError(f"a target spec must be a table (dict); got {type(data).__name__}")
        data = {k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) and k != "rules" else v)
                for k, v in data.items() if v is not None and k not in _RUNTIME}
        return _build(data, path or "<dict>")


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- loading -----------------------------------------------------------------------------------

#: Every section a spec may hold, in one place: the dataclass that validates it, or None for a
#: free-form table read by another part ([rules.NAME]: a rule set's parameters, spikefit.rules).
SECTIONS: dict[str, type | None] = {"limits": Limits, "neuron": NeuronSpec, "core": CoreSpec, "layers": LayerSpec,
                                    "energy": EnergySpec, "rules": None}
_SECTIONS: dict[str, type] = {k: v for k, v in SECTIONS.items() if v is not None}
_TOP = {"name": str, "vendor": str, "description": str, "sources": list, "unverified": list}
_RUNTIME = ("path", "plugin")  # set when loading/registering, never read from a spec
_TYPES = {"int": int, "str": str, "bool": bool, "tuple": (list, tuple), "float": (int, float)}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")

#: Every key a spec may set, dotted (``"limits.fan_in"``); ``unverified`` entries must be one of them.
SCHEMA_KEYS: tuple[str, ...] = (*_TOP, *(f"{sec}.{f.name}" for sec, cls in _SECTIONS.items() for f in fields(cls)))


def load_target(path: str | Path) -> TargetSpec:
    """Load and validate a chip spec from a TOML file.

    :raises SpecError: malformed TOML (with its line), missing or mistyped keys, bad values.
    """
    path = Path(path)
    text = _read_text(path)
    depth = bounds.nesting_depth(text)
    if depth > bounds.SPEC_MAX_DEPTH:
        raise SpecError(f"{path}: tables and arrays nest {depth} deep, more than the {bounds.SPEC_MAX_DEPTH} a spec "
                        "may; flatten the file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: malformed TOML: {e}; fix the syntax at that line") from None
    except RecursionError:
        raise SpecError(f"{path}: nests too deep to read; flatten the file") from None
    spec = _build(data, str(path))
    return spec


def _read_text(path: Path) -> str:
    """The file's text, read only when it is a regular file of at most SPEC_MAX_BYTES."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SpecError(f"target spec {str(path)!r} does not exist; check the path") from None
    except OSError as e:
        raise SpecError(f"cannot read target spec {str(path)!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"target spec {str(path)!r} is not a regular file; pass a .toml file")
    if st.st_size > bounds.SPEC_MAX_BYTES:
        raise SpecError(f"target spec {str(path)!r} has {st.st_size} bytes, more than the {bounds.SPEC_MAX_BYTES} "
                        "(1 MiB) a spec may have; is it the right file?")
    try:
        with open(path, "rb") as f:
            raw = f.read(bounds.SPEC_MAX_BYTES + 1)
    except OSError as e:
        raise SpecError(f"cannot read target spec {str(path)!r}: {e.strerror}") from None
    if len(raw) > bounds.SPEC_MAX_BYTES:  # grew while we looked
        raise SpecError(f"target spec {str(path)!r} has more than {bounds.SPEC_MAX_BYTES} bytes; is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"cannot read target spec {str(path)!r}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def _build(data: dict[str, Any], where: str) -> TargetSpec:
    if "name" not in data:
        raise SpecError(f"{where}: missing required key 'name'; add e.g. name = \"mychip\" at the top")
    depth = bounds.data_depth(data)
    if depth > bounds.SPEC_MAX_DEPTH:
        raise SpecError(f"{where}: tables and arrays nest {depth} deep, more than the {bounds.SPEC_MAX_DEPTH} a spec "
                        "may; flatten it")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "rules":
            kwargs["rules"] = _rule_tables(value, where)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise SpecError(f"{where}: [{key}] must be a table; got {type(value).__name__} {value!r}")
            kwargs[key] = _section(_SECTIONS[key], key, value, where)
        elif key in _TOP:
            if not isinstance(value, _TOP[key]):
                expected = "a string" if _TOP[key] is str else "a list of strings"
                raise SpecError(f"{where}: {key} must be {expected}; got {type(value).__name__} {value!r}")
            kwargs[key] = value
        else:
            near = closest(key, [*_TOP, *SECTIONS])
            hint = f"did you mean {near!r}? " if near else ""
            what = "section" if isinstance(value, dict) else "key"
            raise SpecError(f"{where}: unknown {what} {key!r}; {hint}known: {', '.join([*_TOP, *SECTIONS])} "
                            "(docs/targets.md)")
    try:
        spec = TargetSpec(**kwargs, path=where if where != "<dict>" else None)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    for key in spec.unverified:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        present = node is not None
        if not present:
            raise SpecError(f"{where}: unverified lists {key!r}, which this spec does not set; "
                            f"set {key} or remove it from unverified")
    return spec


def _section(cls: type, section: str, table: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in table.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {section}.{close[0]}? " if close else ""
            raise SpecError(f"{where}: unknown key {section}.{key}; {hint}[{section}] takes {', '.join(known)} "
                            "(docs/targets.md)")
        expected = known[key].type.split(" |")[0].split("[")[0]
        py = _TYPES.get(expected)
        ok = py is not None and isinstance(value, py) and not (py is int and isinstance(value, bool))
        if not ok:
            raise SpecError(f"{where}: {section}.{key} must be {_describe(expected)}; "
                            f"got {type(value).__name__} {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None


def _rule_tables(value: Any, where: str = "spec") -> tuple:
    """``[rules.<set>]`` tables as a hashable tuple; each must be a table (its keys are checked by the set)."""
    if isinstance(value, tuple):
        return value
    if not isinstance(value, dict):
        raise SpecError(f"{where}: [rules] must hold tables such as [rules.xylo]; got {type(value).__name__} {value!r}")
    out = []
    for name, table in value.items():
        if not isinstance(table, dict):
            raise SpecError(f"{where}: rules.{name} must be a table ([rules.{name}]); got {type(table).__name__} {table!r}")
        items = []
        for k, v in table.items():
            if isinstance(v, (list, tuple)) and not any(isinstance(x, (dict, list, tuple)) for x in v):
                v = tuple(v)   # a list of scalars (e.g. one value per core), kept hashable
            elif isinstance(v, (dict, list, tuple)):
                raise SpecError(f"{where}: rules.{name}.{k} must be a number, string, boolean or a list of them; "
                                f"got {type(v).__name__}")
            items.append((k, v))
        out.append((name, tuple(sorted(items))))
    return tuple(sorted(out))


def _describe(t: str) -> str:
    return {"int": "an integer", "str": "a string", "bool": "true or false", "tuple": "a list", "float": "a number"}[t]


def _positive_int(key: str, value: Any, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{key} must be an integer; got {type(value).__name__} {value!r}")
    if key.endswith("_bits") and not bounds.BITS_MIN <= value <= bounds.BITS_MAX:
        raise SpecError(f"{key} {value} is outside {bounds.bits_range_text()}; a bit width is at most "
                        f"{bounds.BITS_MAX} (docs/cli.md, input bounds)")
    if value >= bounds.COUNT_MAX:
        raise SpecError(f"{key} {value} is not below 2**40 ({bounds.COUNT_MAX}), the largest count a spec may "
                        "hold; omit the key for unconstrained")
    if value < 0 or (value == 0 and not allow_zero):
        lowest = "0 (unconstrained) or a positive integer" if allow_zero else "a positive integer"
        raise SpecError(f"{key} must be {lowest}; got {value} (omit the key for unconstrained)")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        near = closest(value, list(choices)) if isinstance(value, str) else None
        hint = f" (did you mean {near!r}?)" if near else ""
        raise SpecError(f"{key} {value!r} is not one of {', '.join(choices)}{hint}")


def closest(name: str, known: list[str]) -> str | None:
    """The known name closest to ``name``, for "did you mean" hints."""
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
    return match[0] if match else None
