"""The built-in chip catalog (targets/*.toml): loads, is sourced, and declares what each chip has."""
from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path

import pytest

from spikefit import builtin, load_target, plugins

CATALOG = Path(__file__).resolve().parents[1] / "targets"
REQUIRED = ["loihi2", "loihi", "truenorth", "akida", "xylo-audio2", "speck2f", "spinnaker2", "dynapse2"]
FILES = sorted(CATALOG.glob("*.toml"))
ASSIGN = re.compile(r"^\s*(\w+)\s*=\s*(.+)$")


@pytest.fixture(scope="module")
def catalog():
    return {p.stem: load_target(p) for p in FILES}


def test_required_chips_are_registered_by_the_builtin_plugin():
    for name in REQUIRED:
        spec = plugins.get_target(name)
        assert spec.plugin == "spikefit.builtin"
        assert plugins.owner_of("target", name) == "spikefit.builtin"


def test_catalog_ships_as_package_data():
    shipped = sorted(p.name for p in builtin.catalog_files())
    assert shipped == [p.name for p in FILES]
    assert {f"{n}.toml" for n in REQUIRED} <= set(shipped)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_spec_is_valid_and_named_after_its_file(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unknown or misspelled key
        spec = load_target(path)
    assert spec.name == path.stem
    assert spec.vendor and spec.description and spec.sources


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_number_carries_its_source(path):
    """Each numeric value has a comment on its line or in the comment block right above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = ASSIGN.match(line)
        if not m or not re.match(r"-?\d", m.group(2)):
            continue
        block = []
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#"):
            block.append(lines[j])
            j -= 1
        assert "#" in line or block, f"{path.name}:{i + 1}: {line.strip()!r} has no source comment"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_unverified_values_are_flagged_in_comments(path):
    """Every key listed in `unverified` says so in its comment, and no comment calls a listed-as-verified key unverified."""
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    section, comments = "", {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip("[] ")
            continue
        m = ASSIGN.match(line)
        if m and section:
            above = []
            j = i - 1
            while j >= 0 and lines[j].lstrip().startswith("#"):
                above.append(lines[j])
                j -= 1
            comments[f"{section}.{m.group(1)}"] = line + " ".join(above)
    for key in data.get("unverified", []):
        assert "unverified" in comments[key], f"{path.name}: {key} is listed in unverified but its comment does not say so"
    for key, comment in comments.items():
        if "unverified" in comment.split("#", 1)[-1] and key not in data.get("unverified", []):
            raise AssertionError(f"{path.name}: the comment of {key} says unverified but `unverified` does not list it")


def test_truenorth(catalog):
    tn = catalog["truenorth"]
    lim = tn.limits
    assert (lim.unique_weights, lim.unique_weights_scope) == (4, "neuron")
    assert (lim.fan_in, lim.neurons_per_core, lim.axons_per_core, lim.cores) == (256, 256, 256, 4096)
    assert (lim.fan_out, lim.fan_out_unit) == (1, "cores")
    assert lim.weight_bits == 9 and tn.is_unverified("limits.weight_bits")
    assert lim.synapses_per_core == 256 * 256 and lim.synapses == lim.cores * lim.synapses_per_core
    # the crossbar numbers come from IBM's own paper; one destination and four weights only from simulators
    assert not any(tn.is_unverified(f"limits.{k}") for k in ("fan_in", "axons_per_core", "synapses_per_core", "synapses"))
    assert tn.is_unverified("limits.fan_out") and tn.is_unverified("limits.unique_weights")
    assert tn.neuron.models == ("truenorth-lif",) and tn.neuron.chip_model == "truenorth-lif"  # the linear leak
    assert tn.neuron.runs("lif") and tn.neuron.runs("if") and not tn.neuron.runs("cuba-lif")
    assert tn.core.shared == ()


def test_loihi2(catalog):
    l2 = catalog["loihi2"]
    assert l2.limits.weight_bits == 8 and l2.limits.cores == 120
    assert l2.limits.unique_weights is None
    assert l2.neuron.models == ("cuba-lif",) and l2.neuron.runs("if")
    assert (l2.neuron.state_bits, l2.neuron.decay_bits, l2.neuron.threshold_bits) == (24, 12, 17)
    assert "conv2d" in l2.layers.kinds and "sumpool2d" not in l2.layers.kinds


def test_loihi(catalog):
    l1 = catalog["loihi"]
    assert (l1.limits.neurons_per_core, l1.limits.axons_per_core, l1.limits.cores) == (1024, 4096, 128)
    assert l1.core.shared == ("du", "dv", "vth") and l1.core.max_parameter_sets == 8
    assert l1.limits.neurons == l1.limits.cores * l1.limits.neurons_per_core
    # 16384 64-bit words per core; the densest 8-bit group is 62 weights behind a 10-bit header in 8 words
    assert l1.limits.synapses_per_core == 16384 // 8 * 62 == 126976
    assert l1.limits.weight_bits == 8 and l1.neuron.state_bits == 24


def test_chips_that_share_parameters_per_core(catalog):
    speck = catalog["speck2f"]
    assert speck.core.shared == ("vth",) and speck.core.max_parameter_sets == 1 and not speck.core.share_layers
    assert speck.limits.fan_out_cores == 2 and speck.neuron.models == ("speck-if",) and speck.neuron.runs("if")
    assert (speck.layers.max_kernel, speck.layers.max_channels) == (16, 1024)
    dyn = catalog["dynapse2"]
    assert dyn.core.max_parameter_sets == 1 and dyn.limits.fan_in == 64
    assert (dyn.limits.unique_weights, dyn.limits.unique_weights_scope) == (30, "core")
    assert (dyn.limits.cores, dyn.limits.neurons_per_core, dyn.limits.axons_per_core) == (4, 256, 2048)


def test_io_limited_and_non_lif_chips(catalog):
    xylo = catalog["xylo-audio2"]
    assert (xylo.limits.inputs, xylo.limits.outputs, xylo.limits.cores) == (16, 8, 1)
    # Xylo's fan-out 64 counts recurrent synapses only: rule xylo.recurrent_fan_out, not limits.fan_out
    assert xylo.limits.fan_out is None and xylo.rule_tables["xylo"]["max_recurrent_fan_out"] == 64
    assert xylo.neuron.reset == "subtract" and "conv2d" not in xylo.layers.kinds
    akida = catalog["akida"]
    assert akida.vendor == "BrainChip" and akida.limits.cores is None and akida.limits.weight_bits == 8
    assert akida.neuron.models == ("akida-act",) and "recurrent" not in akida.layers.kinds
    s2 = catalog["spinnaker2"]
    assert s2.limits.weight_bits == 5 and s2.is_unverified("limits.weight_bits")
    assert s2.neuron.models == ("cuba-lif",) and s2.is_unverified("neuron.models")


def test_no_catalog_chip_claims_a_codebook_it_lacks(catalog):
    """Only TrueNorth and DYNAP-SE2 have weight-value tables; the rest store each weight."""
    with_m = sorted(n for n, s in catalog.items() if s.limits.unique_weights is not None)
    assert with_m == ["dynapse2", "truenorth"]
