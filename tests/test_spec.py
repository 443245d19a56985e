"""TargetSpec and load_target: schema, defaults, validation and one-line error messages."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from spikefit import SpecError, TargetSpec, load_target
from spikefit.spec import SCHEMA_KEYS, CoreSpec, Limits, NeuronSpec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "targets.md"

FULL = """\
name = "full"
vendor = "Test Vendor"
description = "every key set"
sources = ["a paper", "a repository"]
unverified = ["limits.weight_bits", "neuron.state_bits", "vendor"]

[limits]
neurons = 4096
cores = 16
neurons_per_core = 256
synapses = 1000000
synapses_per_core = 65536
axons_per_core = 512
fan_in = 256
fan_out = 2
fan_out_unit = "cores"
fan_out_cores = 4
weight_bits = 6
unique_weights = 8
unique_weights_scope = "core"
weight_scaling = "chip"
inputs = 64
outputs = 10

[neuron]
models = ["lif", "if"]
state_bits = 16
decay_bits = 12
threshold_bits = 17
bias_bits = 13
reset = "subtract"

[core]
shared = ["dv", "vth"]
parameter_sets = 4
share_layers = false

[layers]
kinds = ["dense", "conv2d", "flatten"]
max_kernel = 5
max_channels = 128

[energy]
synop_pj = 23.6
neuron_update_pj = 52
spike_pj = 1.7
static_mw = 0.5
time_step_us = 1000
sources = ["synop_pj: t2", "neuron_update_pj: t2", "spike_pj: t2", "static_mw: s", "time_step_us: d"]
note = "test figures"
"""


def test_minimal_spec_is_unconstrained(tmp_toml):
    spec = load_target(tmp_toml('name = "tiny"\n'))
    assert spec.name == "tiny"
    assert spec.limits == Limits()
    assert all(getattr(spec.limits, k) is None for k in ("neurons", "cores", "fan_in", "fan_out", "weight_bits"))
    assert spec.neuron.models == ("cuba-lif", "lif", "if")
    assert spec.core.max_parameter_sets is None
    assert spec.path.endswith("chip.toml")


def test_full_spec_loads_every_key(tmp_toml):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no key of FULL is unknown
        spec = load_target(tmp_toml(FULL))
    assert spec.limits.fan_out == 2 and spec.limits.fan_out_unit == "cores"
    assert spec.limits.unique_weights_scope == "core" and spec.limits.weight_scaling == "chip"
    assert spec.neuron.models == ("lif", "if") and spec.neuron.reset == "subtract"
    assert spec.core.shared == ("dv", "vth") and spec.core.max_parameter_sets == 4 and not spec.core.share_layers
    assert spec.layers.kinds == ("dense", "conv2d", "flatten") and spec.layers.max_kernel == 5
    assert spec.sources == ("a paper", "a repository")
    assert spec.is_unverified("limits.weight_bits") and not spec.is_unverified("limits.fan_in")
    set_keys = {line.split("=")[0].strip() for line in FULL.splitlines() if "=" in line}
    sections = {"limits", "neuron", "core", "layers", "energy"}
    assert {k.split(".")[-1] for k in SCHEMA_KEYS} == set_keys, "FULL must set every schema key"
    assert {k.split(".")[0] for k in SCHEMA_KEYS if "." in k} == sections


def test_to_dict_round_trips(tmp_toml):
    spec = load_target(tmp_toml(FULL))
    data = spec.to_dict()
    assert data["limits"]["neurons"] == 4096 and data["neuron"]["models"] == ["lif", "if"]
    back = TargetSpec.from_dict(data)
    assert (back.limits, back.neuron, back.core, back.layers, back.unverified) == \
        (spec.limits, spec.neuron, spec.core, spec.layers, spec.unverified)


def test_fan_out_zero_means_unconstrained(tmp_toml):
    spec = load_target(tmp_toml('name = "x"\n[limits]\nfan_out = 0\n'))
    assert spec.limits.fan_out is None


def test_runs_orders_models():
    assert NeuronSpec(models=("cuba-lif",)).runs("if")
    assert NeuronSpec(models=("lif",)).runs("if") and not NeuronSpec(models=("lif",)).runs("cuba-lif")
    assert not NeuronSpec(models=("if",)).runs("lif")


def test_shared_parameters_default_to_one_set():
    assert CoreSpec(shared=("vth",)).max_parameter_sets == 1
    assert CoreSpec().max_parameter_sets is None


# -- bad input: every message is one line that names the key, the value and the fix -------------

BAD = [
    # (TOML text, message pattern)
    ('name = "x"\n[limits]\nfan_in = = 3\n', r"malformed TOML: .*line 3.*fix the syntax"),
    ('vendor = "v"\n', r"missing required key 'name'; add e\.g\. name = \"mychip\""),
    ('name = "x"\n[limits]\nfan_in = "256"\n', r"limits\.fan_in must be an integer; got str '256'"),
    ('name = "x"\n[limits]\nweight_bits = 8.0\n', r"limits\.weight_bits must be an integer; got float 8\.0"),
    ('name = "x"\n[limits]\ncores = true\n', r"limits\.cores must be an integer; got bool True"),
    ('name = "x"\n[neuron]\nmodels = "lif"\n', r"neuron\.models must be a list; got str 'lif'"),
    ('name = "x"\n[core]\nshare_layers = 1\n', r"core\.share_layers must be true or false; got int 1"),
    ('name = "x"\nsources = "paper"\n', r"sources must be a list of strings; got str 'paper'"),
    ('name = 3\n', r"name must be a string; got int 3"),
    ('name = "x"\nlimits = 5\n', r"\[limits\] must be a table; got int 5"),
    ('name = "x"\n[limits]\nfan_in = 0\n', r"limits\.fan_in must be a positive integer; got 0 \(omit the key for unconstrained\)"),
    ('name = "x"\n[limits]\ncores = -4\n', r"limits\.cores must be a positive integer; got -4"),
    ('name = "x"\n[limits]\nfan_out = -1\n', r"limits\.fan_out must be 0 \(unconstrained\) or a positive integer; got -1"),
    ('name = "x"\n[core]\nshared = ["vth"]\nparameter_sets = 0\n', r"core\.parameter_sets must be a positive integer; got 0"),
    ('name = "x"\n[layers]\nmax_kernel = -3\n', r"layers\.max_kernel must be a positive integer; got -3"),
    ('name = "x"\n[limits]\nunique_weights = 4\nunique_weights_scope = "row"\n',
     r"limits\.unique_weights_scope 'row' is not one of neuron, core, layer, chip"),
    ('name = "x"\n[limits]\nunique_weights_scope = "cores"\n', r"'cores' is not one of .*\(did you mean 'core'\?\)"),
    ('name = "x"\n[limits]\nweight_scaling = "channel"\n', r"limits\.weight_scaling 'channel' is not one of layer, chip, none"),
    ('name = "x"\n[limits]\nfan_out = 2\nfan_out_unit = "axons"\n', r"limits\.fan_out_unit 'axons' is not one of synapses, cores"),
    ('name = "x"\n[limits]\nfan_out_unit = "cores"\n', r"fan_out_unit 'cores' needs limits\.fan_out; set fan_out"),
    ('name = "x"\n[neuron]\nmodels = ["adex"]\n', r"neuron\.models 'adex' is not one of cuba-lif, lif, if"),
    ('name = "x"\n[neuron]\nmodels = []\n', r"neuron\.models must be a non-empty list"),
    ('name = "x"\n[neuron]\nreset = "hold"\n', r"neuron\.reset 'hold' is not one of zero, subtract"),
    ('name = "x"\n[core]\nshared = ["tau"]\n', r"core\.shared 'tau' is not one of du, dv, vth"),
    ('name = "x"\n[layers]\nkinds = ["maxpool2d"]\n', r"layers\.kinds 'maxpool2d' is not one of .*did you mean"),
    ('name = "Loihi 2"\n', r"name 'Loihi 2' must be lower-case letters, digits.*e\.g\. 'loihi-2'"),
    ('name = "x"\n[limits]\nneurons = 100\nneurons_per_core = 256\n',
     r"limits\.neurons_per_core 256 exceeds limits\.neurons 100; lower neurons_per_core or raise neurons"),
    ('name = "x"\n[limits]\nsynapses = 10\nsynapses_per_core = 20\n', r"limits\.synapses_per_core 20 exceeds limits\.synapses 10"),
    ('name = "x"\n[limits]\nweight_bits = 2\nunique_weights = 4\n',
     r"limits\.unique_weights 4 exceeds the 3 non-zero values a 2-bit weight holds; lower it or raise weight_bits"),
    ('name = "x"\nunverified = ["limits.weight_bit"]\n[limits]\nweight_bits = 8\n',
     r"unverified names 'limits\.weight_bit', which is not a spec key \(did you mean 'limits\.weight_bits'\?\)"),
    ('name = "x"\nunverified = ["limits.fan_in"]\n', r"unverified lists 'limits\.fan_in', which this spec does not set"),
]


@pytest.mark.parametrize("text, pattern", BAD, ids=[re.sub(r"\W+", "-", p)[:40] for _, p in BAD])
def test_bad_spec_is_one_line_error(tmp_toml, text, pattern):
    path = tmp_toml(text)
    with pytest.raises(SpecError, match=pattern) as info:
        load_target(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), "the message names the file"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"target spec '.*nope\.toml' does not exist; check the path"):
        load_target(tmp_path / "nope.toml")


@pytest.mark.parametrize("text, message", [
    ('name = "x"\nvendr = "v"\n', r"unknown key 'vendr'; did you mean 'vendor'\? known: name, vendor, "),
    ('name = "x"\n[limits]\nfanin = 3\n', r"unknown key limits.fanin; did you mean limits.fan_in\? \[limits\] takes "),
    ('name = "x"\n[limits]\nneuron_per_core = 3\n', r"did you mean limits.neurons_per_core\?"),
    ('name = "x"\n[limit]\ncores = 2\n', r"unknown section 'limit'; did you mean 'limits'\?"),
])
def test_unknown_keys_and_sections_are_errors_with_suggestion(tmp_toml, text, message):
    with pytest.raises(SpecError, match=message):
        load_target(tmp_toml(text))


def test_rules_and_energy_are_known_sections(tmp_toml):
    spec = load_target(tmp_toml('name = "x"\n[rules.xylo]\nhidden = 1000\n[energy]\nsynop_pj = 2.0\n'
                                'sources = ["synop_pj: a paper"]\n'))
    assert spec.name == "x" and spec.rule_tables == {"xylo": {"hidden": 1000}} and spec.energy.synop_pj == 2.0
    with pytest.raises(SpecError, match=r"\[energy\] must be a table; got int 3"):
        load_target(tmp_toml('name = "x"\nenergy = 3\n'))
    with pytest.raises(SpecError, match=r"\[rules\] must hold tables such as \[rules.xylo\]; got int 3"):
        load_target(tmp_toml('name = "x"\nrules = 3\n'))


def test_from_dict_rejects_non_tables():
    with pytest.raises(SpecError, match=r"a target spec must be a table \(dict\); got list"):
        TargetSpec.from_dict(["name"])


def test_constructor_validates_too():
    with pytest.raises(SpecError, match=r"limits\.axons_per_core must be a positive integer; got 0"):
        Limits(axons_per_core=0)
    with pytest.raises(SpecError, match=r"unverified must be a list of strings"):
        TargetSpec(name="x", unverified=5)


def test_docs_describe_every_schema_key():
    text = DOCS.read_text(encoding="utf-8")
    missing = [k for k in SCHEMA_KEYS if f"`{k.split('.')[-1]}`" not in text]
    assert not missing, f"docs/targets.md does not describe {missing}"
