"""`spikefit targets`, `spikefit targets show|check` and `spikefit plugins`."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from spikefit import TargetSpec, hookimpl, plugins
from clitools import SPIKEFIT, assert_one_line_error, invoke

CATALOG = ["akida", "dynapse2", "loihi", "loihi2", "speck2f", "spinnaker2", "truenorth", "xylo-audio2"]





def test_targets_lists_the_catalog_as_a_table():
    result = invoke("targets")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "vendor", "neurons", "cores", "fan_in", "weight_bits", "M/scope", "models", "plugin"]
    rows = {line.split()[0]: line for line in lines[2:-1]}
    assert set(CATALOG) <= set(rows)
    assert "4/neuron" in rows["truenorth"] and "9*" in rows["truenorth"] and "4,096" in rows["truenorth"]
    assert "spikefit.builtin" in rows["loihi2"] and "1,000,000*" in rows["loihi2"]
    assert lines[-1].startswith("'-' = unconstrained; * = unverified value")


def test_targets_json():
    result = invoke("targets", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["exit_code"] == 0                # always an object (docs/cli.md)
    by_name = {d["name"]: d for d in data["targets"]}
    assert set(CATALOG) <= set(by_name)
    tn = by_name["truenorth"]
    assert tn["limits"]["unique_weights"] == 4 and tn["plugin"] == "spikefit.builtin"
    assert "limits.weight_bits" in tn["unverified"]
    assert TargetSpec.from_dict(tn).limits == plugins.get_target("truenorth").limits


def test_show_prints_every_field_sources_and_flags():
    result = invoke("targets", "show", "truenorth")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("truenorth (IBM)\n")
    for key in ("neurons", "fan_out_unit", "unique_weights_scope", "models", "threshold_bits", "share_layers", "kinds"):
        assert f"\n  {key} " in out
    assert "  weight_bits           9  (unverified)\n" in out
    assert "  fan_in                256\n" in out
    assert "  fan_out               1  (unverified)\n" in out
    assert "  - Akopyan et al. 2015" in out and "plugin: spikefit.builtin" in out


def test_show_json_round_trips():
    result = invoke("targets", "show", "loihi", "--json")
    data = json.loads(result.stdout)
    assert data["core"]["parameter_sets"] == 8 and data["unverified"] == [
        "core.parameter_sets", "energy.synop_pj", "energy.neuron_update_pj", "energy.spike_pj", "energy.static_mw"]
    assert data["energy"]["synop_pj"] == 23.6
    assert TargetSpec.from_dict(data).core == plugins.get_target("loihi").core
    assert TargetSpec.from_dict(data).energy == plugins.get_target("loihi").energy


def test_show_unknown_target_is_one_line_exit_2():
    result = invoke("targets", "show", "truenorht")
    assert_one_line_error(result, r"^Error: unknown target 'truenorht'; did you mean 'truenorth'\? Known targets: akida, ")


def test_check_accepts_a_valid_file(tmp_toml):
    path = tmp_toml('name = "mychip"\nunverified = ["limits.fan_in"]\n[limits]\nfan_in = 64\ncores = 2\n')
    result = invoke("targets", "check", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {path} defines target 'mychip' (2 limits set; unverified: limits.fan_in)\n"
    assert result.stderr == ""


def test_check_refuses_unknown_keys_and_warns_about_taken_names(tmp_toml):
    assert_one_line_error(invoke("targets", "check", str(tmp_toml('name = "x"\n[limits]\nfanin = 64\n'))),
                          r"unknown key limits.fanin; did you mean limits.fan_in\?")
    path = tmp_toml('name = "loihi2"\n[limits]\nfan_in = 64\n')
    result = invoke("targets", "check", str(path))
    assert result.exit_code == 0
    assert "Warning: target name 'loihi2' is already registered by spikefit.builtin; rename it" in result.stderr


def test_check_json(tmp_toml):
    path = tmp_toml('name = "jsonchip"\n[limits]\nweight_bits = 4\n')
    data = json.loads(invoke("targets", "check", str(path), "--json").stdout)
    assert data["ok"] is True and data["name"] == "jsonchip" and data["warnings"] == []
    assert data["spec"]["limits"]["weight_bits"] == 4


@pytest.mark.parametrize("text, pattern", [
    ('name = "x"\n[limits\n', r"malformed TOML: .*line 2"),
    ('vendor = "v"\n', r"missing required key 'name'"),
    ('name = "x"\n[limits]\nfan_in = "many"\n', r"limits\.fan_in must be an integer; got str 'many'"),
    ('name = "x"\n[limits]\ncores = 0\n', r"limits\.cores must be a positive integer; got 0"),
    ('name = "x"\n[limits]\nunique_weights_scope = "row"\n', r"limits\.unique_weights_scope 'row' is not one of"),
], ids=["malformed", "missing-name", "wrong-type", "zero-limit", "unknown-scope"])
def test_check_rejects_bad_files_in_one_line(tmp_toml, text, pattern):
    assert_one_line_error(invoke("targets", "check", str(tmp_toml(text))), pattern)


def test_check_missing_file():
    assert_one_line_error(invoke("targets", "check", "no/such/chip.toml"), r"'no/such/chip\.toml' does not exist")


def test_plugins_lists_loaded_plugins(plugin_env):
    plugin_env(SPIKEFIT_LOAD_PLUGINS=None)
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "distribution", "version", "hooks"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert "register_targets" in rows["spikefit.builtin"]
    assert rows["example_chip"].split()[1:] == ["spikefit-example-chip", "0.1.0", "register_targets"]
    data = json.loads(invoke("plugins", "--json").stdout)
    assert {"name": "example_chip", "hooks": ["register_targets"], "distribution": "spikefit-example-chip",
            "version": "0.1.0"} in data["plugins"]


def test_broken_plugin_is_a_warning_and_the_rest_is_listed(register_plugin):
    class Broken:
        @hookimpl
        def register_targets(self, register):
            raise ValueError("no chips today")

    name = "broken_cli_plugin"
    register_plugin(Broken(), name)
    result = invoke("targets")
    assert result.exit_code == 0
    assert f"Warning: plugin '{name}' raised while registering targets: ValueError: no chips today" in result.stderr.splitlines()
    assert "truenorth" in result.stdout
    assert f"Warning: plugin '{name}' raised while registering targets" in invoke("plugins").stderr


def test_duplicate_target_through_the_cli(register_plugin):
    class Shadow:
        @hookimpl
        def register_targets(self, register):
            register(TargetSpec(name="akida"))

    register_plugin(Shadow(), "shadow_cli")
    listed = invoke("targets")  # the listing still works and warns
    assert listed.exit_code == 0 and "truenorth" in listed.stdout and "akida" not in listed.stdout
    assert "Warning: duplicate target name 'akida'" in listed.stderr
    assert invoke("targets", "show", "truenorth").exit_code == 0
    assert_one_line_error(invoke("targets", "show", "akida"), r"duplicate target name 'akida': registered by plugin "
                                                              r"'spikefit.builtin' and by plugin 'shadow_cli'")


# -- the installed command, as a user runs it ------------------------------------------------------

def run_spikefit(*args: str, **env: str | None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("SPIKEFIT_LOAD_PLUGINS", "SPIKEFIT_TARGETS_PATH")}
    environ.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([str(SPIKEFIT), *args], capture_output=True, text=True, env=environ, timeout=120)


def test_installed_command_lists_the_example_plugin_chip():
    shown = run_spikefit("targets")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line for line in shown.stdout.splitlines()[2:-1]}
    assert rows["pebble"].split()[-1] == "example_chip"
    hidden = run_spikefit("targets", SPIKEFIT_LOAD_PLUGINS="")
    assert hidden.returncode == 0 and "pebble" not in hidden.stdout and "truenorth" in hidden.stdout


def test_installed_command_error_is_one_line(tmp_toml):
    result = run_spikefit("targets", "show", "pebbel")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Error: unknown target 'pebbel'; did you mean 'pebble'?")
    bad = run_spikefit("targets", "check", str(tmp_toml('name = "x"\n[limits]\nfan_in = -1\n')))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1
