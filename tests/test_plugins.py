"""The plugin manager: hooks, entry points, environment variables, and how broken plugins are reported."""
from __future__ import annotations

import importlib.metadata
import os
import sys
import types
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from spikefit import PluginError, TargetSpec, UnknownTargetError, hookimpl, plugins
from spikefit.network import Dense, Input, Network, Neurons

TESTS = Path(__file__).resolve().parent
SPEC = 'name = "{name}"\nvendor = "test"\n[limits]\nfan_in = 8\n'


class TargetPlugin:
    """Registers the given specs."""

    def __init__(self, *specs: TargetSpec):
        self.specs = specs

    @hookimpl
    def register_targets(self, register):
        for spec in self.specs:
            register(spec)


def spec(name: str) -> TargetSpec:
    return TargetSpec(name=name, vendor="test")


def tiny_network() -> Network:
    w = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    return Network.sequential(Input("in", (2,)), Dense("fc", w), Neurons("out", (3,), vth=0.5))


def fake_entry_points(monkeypatch, **modules: types.ModuleType | str) -> None:
    """Add entry points named after the keywords: a module object, or a module path that fails to import."""
    real = plugins._entry_points()
    fakes = []
    for ep_name, module in modules.items():
        if isinstance(module, types.ModuleType):
            monkeypatch.setitem(sys.modules, module.__name__, module)
            module = module.__name__
        fakes.append(importlib.metadata.EntryPoint(ep_name, module, plugins.ENTRY_POINT_GROUP))
    monkeypatch.setattr(plugins, "_entry_points", lambda: real + fakes)


def module_with(name: str, **functions) -> types.ModuleType:
    mod = types.ModuleType(name)
    for key, fn in functions.items():
        setattr(mod, key, fn)
    return mod


# -- one test per hook (test_every_hook_has_a_test checks this) ----------------------------------

def test_hook_register_targets(register_plugin):
    name = "hook_targets"
    register_plugin(TargetPlugin(spec("bramble")), name)
    got = plugins.get_target("bramble")
    assert got.plugin == name and got.vendor == "test"
    assert plugins.owner_of("target", "bramble") == name
    assert "bramble" in [s.name for s in plugins.list_targets()]


def test_hook_register_exporters(register_plugin, tmp_path):
    class TextExporter:
        name = "node-list"

        def export(self, network, path, target):
            Path(path).write_text("\n".join(network.topological_order()) + f"\n# {target.name if target else '-'}\n")

    class Plugin:
        @hookimpl
        def register_exporters(self, register):
            register(TextExporter())

    name = "hook_exporters"
    register_plugin(Plugin(), name)
    exporter = plugins.get_exporter("node-list")
    exporter.export(tiny_network(), tmp_path / "net.txt", plugins.get_target("loihi2"))
    assert (tmp_path / "net.txt").read_text() == "in\nfc\nout\n# loihi2\n"
    assert plugins.owner_of("exporter", "node-list") == name
    with pytest.raises(PluginError, match=r"unknown exporter 'node-lst'; did you mean 'node-list'\? Known exporters: .*node-list"):
        plugins.get_exporter("node-lst")


def test_hook_register_backends(register_plugin):
    class ThresholdBackend:
        """One Dense layer, no memory: spikes where the weighted input exceeds vth."""

        name = "threshold"

        def run(self, network, inputs):
            fc, out = network.nodes["fc"], network.nodes["out"]
            return {"out": (inputs @ fc.weight.T > out.vth).astype(np.int8)}  # (t, b, n)

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(ThresholdBackend())

    name = "hook_backends"
    register_plugin(Plugin(), name)
    inputs = np.array([[[1, 0], [0, 1]], [[1, 1], [0, 0]]], dtype=np.float64)  # (t=2, b=2, n=2)
    spikes = plugins.get_backend("threshold").run(tiny_network(), inputs)
    assert spikes["out"].shape == (2, 2, 3)
    assert spikes["out"][0].tolist() == [[1, 0, 1], [0, 1, 1]]
    assert spikes["out"][1].tolist() == [[1, 1, 1], [0, 0, 0]]


def test_hook_register_datasets(register_plugin, tmp_path):
    """A plugin's dataset loads by name in the Python API and fits from the command line."""
    from spikefit.datasets import Dataset, load_dataset

    class Parity:
        name = "parity4"
        description = "4-bit parity of random bits (test)"

        def load(self, root=None, steps=None):
            rng = np.random.default_rng(0)
            x = rng.integers(0, 2, (160, 4)).astype(np.float32)
            y = x.sum(1).astype(np.int64) % 2
            return Dataset(self.name, x[:120], y[:120], x[120:], y[120:], 2)

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(Parity())

    register_plugin(Plugin(), "hook_datasets")
    ds = load_dataset("parity4")
    assert plugins.owner_of("dataset", "parity4") == "hook_datasets"
    assert ds.input_shape == (4,) and ds.n_classes == 2 and ds.layout == "static"
    assert {"digits", "mnist1d", "shd", "nmnist", "dvsgesture", "parity4"} <= set(plugins.registry("dataset"))
    toml = tmp_path / "c.toml"
    toml.write_text('name = "c"\n[limits]\nweight_bits = 8\n')
    r = CliRunner().invoke(cli_app(), ["fit", "--target-file", str(toml), "--dataset", "parity4", "--out",
                                       str(tmp_path / "o"), "--epochs", "1,0,0,0", "--steps", "4", "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert '"dataset": "parity4"' in r.stdout


def cli_app():
    from spikefit.cli import cli

    return cli


def test_hook_register_commands(register_plugin):
    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            @click.argument("target")
            def fanin(target):
                """Print a target's fan-in limit."""
                click.echo(plugins.get_target(target).limits.fan_in)

    class Raising:
        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no click today")

    register_plugin(Plugin(), "hook_commands")
    group = click.Group("spikefit")
    plugins.pm.hook.register_commands(cli=group)
    assert "fanin" in group.commands
    result = CliRunner().invoke(group, ["fanin", "truenorth"])
    assert result.exit_code == 0 and result.stdout == "256\n"

    register_plugin(Raising(), "raising_commands")  # the safe caller names it and adds the others
    safe = click.Group("spikefit")
    plugins.register_commands(safe)
    assert "fanin" in safe.commands
    assert "plugin 'raising_commands' raised while registering commands: RuntimeError: no click today" in plugins.load_errors


def test_every_hook_has_a_test():
    plugins.load_plugins()
    hooks = [h for h in dir(plugins.pm.hook) if not h.startswith("_")]
    text = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py"))
    missing = [h for h in hooks if f"def test_hook_{h}(" not in text]
    assert hooks and not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_hookimpls_match_hookspecs():
    plugins.load_plugins()
    plugins.pm.check_pending()  # raises on a hookimpl without a hookspec (a misspelled hook)


# -- entry points and environment variables ------------------------------------------------------

def test_example_plugin_is_found_through_its_entry_point(plugin_env):
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="spikefit")}
    assert eps["example_chip"].value == "spikefit_example_chip"
    assert eps["example_chip"].dist.name == "spikefit-example-chip"
    plugin_env(SPIKEFIT_LOAD_PLUGINS=None)
    module = plugins.pm.get_plugin("example_chip")
    assert module is sys.modules["spikefit_example_chip"]
    pebble = plugins.get_target("pebble")
    assert pebble.plugin == "example_chip" and pebble.path.endswith("pebble.toml")
    info = {p["name"]: p for p in plugins.plugin_info()}
    assert info["example_chip"]["distribution"] == "spikefit-example-chip"
    assert info["example_chip"]["version"] == importlib.metadata.version("spikefit-example-chip")
    assert info["example_chip"]["hooks"] == ["register_targets"]
    assert info["spikefit.builtin"]["distribution"] == "spikefit"
    assert "register_targets" in info["spikefit.builtin"]["hooks"]


def test_load_plugins_empty_loads_no_third_party_plugin(plugin_env):
    plugin_env(SPIKEFIT_LOAD_PLUGINS="")
    names = [n for n, _ in plugins.pm.list_name_plugin()]
    assert names == ["spikefit.builtin"]
    assert plugins.get_target("truenorth").plugin == "spikefit.builtin"
    with pytest.raises(UnknownTargetError, match=r"unknown target 'pebble'"):
        plugins.get_target("pebble")


def test_load_plugins_list_loads_only_those(plugin_env):
    plugin_env(SPIKEFIT_LOAD_PLUGINS="example_chip")
    assert plugins.pm.get_plugin("example_chip") is not None
    assert plugins.pm.get_plugin("lava") is None
    assert plugins.get_target("pebble").plugin == "example_chip"


def test_load_plugins_names_an_unknown_plugin(plugin_env):
    plugin_env(SPIKEFIT_LOAD_PLUGINS="example_chip, no_such_plugin")
    assert plugins.pm.get_plugin("example_chip") is not None
    assert plugins.load_errors == ["SPIKEFIT_LOAD_PLUGINS names 'no_such_plugin', which no installed plugin "
                                   "provides; installed plugins: " + ", ".join(sorted(
                                       {ep.name for ep in plugins._entry_points()}))]


def test_load_plugins_is_idempotent():
    plugins.load_plugins()
    before = plugins.pm.list_name_plugin()
    plugins.load_plugins()
    assert plugins.pm.list_name_plugin() == before


def test_targets_path_adds_specs(plugin_env, tmp_toml):
    a = tmp_toml(SPEC.format(name="mine"), "a/mine.toml")
    b = tmp_toml(SPEC.format(name="yours"), "b/yours.toml")
    plugin_env(SPIKEFIT_LOAD_PLUGINS="", SPIKEFIT_TARGETS_PATH=os.pathsep.join([str(a.parent), str(b.parent)]))
    mine = plugins.get_target("mine")
    assert mine.plugin == "SPIKEFIT_TARGETS_PATH" and mine.path == str(a) and mine.limits.fan_in == 8
    assert plugins.get_target("yours").path == str(b)
    assert plugins.get_target("loihi2").plugin == "spikefit.builtin"
    assert not plugins.load_errors


def test_targets_path_reports_bad_files_and_folders(plugin_env, tmp_toml, tmp_path):
    good = tmp_toml(SPEC.format(name="fine"), "specs/fine.toml")
    tmp_toml('name = "broken"\n[limits\n', "specs/broken.toml")
    missing = tmp_path / "nowhere"
    plugin_env(SPIKEFIT_LOAD_PLUGINS="", SPIKEFIT_TARGETS_PATH=os.pathsep.join([str(good.parent), str(missing)]))
    assert plugins.get_target("fine").limits.fan_in == 8
    assert len(plugins.load_errors) == 2
    bad, gone = plugins.load_errors
    assert bad.startswith("skipped target file (SPIKEFIT_TARGETS_PATH): ") and "broken.toml: malformed TOML" in bad
    assert gone == f"SPIKEFIT_TARGETS_PATH folder {str(missing)!r} does not exist; fix or remove it"


def test_get_target_loads_a_toml_path(tmp_toml):
    path = tmp_toml(SPEC.format(name="pathchip"))
    assert plugins.get_target(path).name == "pathchip"
    assert plugins.get_target(str(path)).limits.fan_in == 8


# -- broken plugins ------------------------------------------------------------------------------

def test_unknown_target_lists_known_and_suggests_closest():
    with pytest.raises(UnknownTargetError) as info:
        plugins.get_target("truenorht")
    message = str(info.value)
    assert message.startswith("unknown target 'truenorht'; did you mean 'truenorth'? Known targets: ")
    assert all(name in message for name in ("akida", "loihi2", "speck2f", "xylo-audio2"))
    assert "\n" not in message
    with pytest.raises(UnknownTargetError, match=r"unknown target 'qqqqqqq'\. Known targets: akida, "):
        plugins.get_target("qqqqqqq")


def test_duplicate_target_from_two_plugins_names_both(register_plugin):
    first, second = "dup_first", "dup_second"
    register_plugin(TargetPlugin(spec("twin")), first)
    register_plugin(TargetPlugin(spec("twin")), second)
    message = (rf"^duplicate target name 'twin': registered by plugin '{first}' and by plugin '{second}'; rename one "
               r"of them or uninstall one plugin$")
    with pytest.raises(PluginError, match=message):
        plugins.get_target("twin")
    names = [s.name for s in plugins.list_targets()]  # every other target still works
    assert "twin" not in names and "truenorth" in names
    assert any(e.startswith("duplicate target name 'twin'") for e in plugins.load_errors)


def test_duplicate_of_a_builtin_target_fails_only_that_name(register_plugin):
    name = "shadow"
    register_plugin(TargetPlugin(spec("loihi2")), name)
    assert plugins.get_target("truenorth").name == "truenorth"
    with pytest.raises(PluginError, match=rf"'loihi2': registered by plugin 'spikefit.builtin' and by plugin '{name}'"):
        plugins.get_target("loihi2")


def test_duplicate_within_one_plugin(register_plugin):
    register_plugin(TargetPlugin(spec("echo"), spec("echo")), "echo_twice")
    with pytest.raises(PluginError, match=r"duplicate target name 'echo': plugin 'echo_twice' registered it twice"):
        plugins.get_target("echo")


def test_duplicate_between_plugin_and_targets_path(register_plugin, plugin_env, tmp_toml):
    path = tmp_toml(SPEC.format(name="clash"), "specs/clash.toml")
    plugin_env(SPIKEFIT_TARGETS_PATH=str(path.parent))
    register_plugin(TargetPlugin(spec("clash")), "clash_plugin")
    with pytest.raises(PluginError, match=rf"registered by plugin 'clash_plugin' and by '{path}' \(SPIKEFIT_TARGETS_PATH\)"):
        plugins.get_target("clash")


def test_two_spec_files_with_one_name_name_both_files(plugin_env, tmp_toml):
    a = tmp_toml(SPEC.format(name="stray"), "specs/a.toml")
    b = tmp_toml(SPEC.format(name="stray"), "specs/b.toml")
    plugin_env(SPIKEFIT_TARGETS_PATH=str(a.parent))
    with pytest.raises(PluginError, match=rf"duplicate target name 'stray': registered by '{a}' \(SPIKEFIT_TARGETS_PATH\) "
                                          rf"and by '{b}' \(SPIKEFIT_TARGETS_PATH\)"):
        plugins.get_target("stray")
    assert plugins.get_target("loihi2").name == "loihi2"


def test_plugin_that_raises_while_registering_is_named(plugin_env, register_plugin):
    class Raising:
        @hookimpl
        def register_targets(self, register):
            register(spec("half"))
            raise RuntimeError("chip table\nmissing")

    plugin_env(SPIKEFIT_LOAD_PLUGINS="")  # only the built-in plugin besides the two below
    bad = "raising_plugin"
    register_plugin(Raising(), bad)
    register_plugin(TargetPlugin(spec("sturdy")), "sturdy_plugin")
    names = [s.name for s in plugins.list_targets()]
    assert "sturdy" in names and "truenorth" in names and "half" not in names
    assert plugins.load_errors == [f"plugin '{bad}' raised while registering targets: RuntimeError: chip table missing"]
    plugins.reset_registries()
    plugins.list_targets()
    assert len(plugins.load_errors) == 1, "rebuilding the registry does not repeat the error"


def test_plugin_that_registers_a_non_spec_is_named(plugin_env, register_plugin):
    class Wrong:
        @hookimpl
        def register_targets(self, register):
            register({"name": "dict-chip"})

    plugin_env(SPIKEFIT_LOAD_PLUGINS="")
    register_plugin(Wrong(), "wrong_plugin")
    assert "truenorth" in [s.name for s in plugins.list_targets()]
    assert plugins.load_errors == ["plugin 'wrong_plugin' registered {'name': 'dict-chip'} as a target, which must be "
                                   "a spikefit.TargetSpec (spikefit.load_target); its targets were skipped"]


def test_exporter_without_export_method_is_named(register_plugin):
    class Plugin:
        @hookimpl
        def register_exporters(self, register):
            register(types.SimpleNamespace(name="hollow"))

    register_plugin(Plugin(), "hollow_plugin")
    plugins.registry("exporter")
    assert any(e.startswith("plugin 'hollow_plugin' registered namespace(name='hollow') as exporter, which needs "
                            "a string 'name' and a 'export' method") for e in plugins.load_errors)


def test_entry_point_that_fails_to_import_is_named(monkeypatch, plugin_env):
    fake_entry_points(monkeypatch, ghost="spikefit_no_such_module_for_tests")
    plugin_env(SPIKEFIT_LOAD_PLUGINS="ghost,example_chip")
    assert plugins.load_errors == ["plugin 'ghost' failed to load: ModuleNotFoundError: No module named "
                                   "'spikefit_no_such_module_for_tests'"]
    assert plugins.get_target("pebble").plugin == "example_chip", "the other plugins still load"


def test_entry_point_plugin_that_raises_while_registering(monkeypatch, plugin_env):
    @hookimpl
    def register_targets(register):
        raise KeyError("missing spec")

    fake_entry_points(monkeypatch, faulty=module_with("spikefit_test_faulty", register_targets=register_targets))
    plugin_env(SPIKEFIT_LOAD_PLUGINS="faulty,example_chip")
    assert plugins.get_target("pebble").plugin == "example_chip"
    assert plugins.load_errors == ["plugin 'faulty' raised while registering targets: KeyError: 'missing spec'"]


def test_misspelled_hook_is_reported_and_not_loaded(monkeypatch, plugin_env):
    @hookimpl
    def register_target(register):
        register(spec("never"))

    fake_entry_points(monkeypatch, typo=module_with("spikefit_test_typo", register_target=register_target))
    plugin_env(SPIKEFIT_LOAD_PLUGINS="typo")
    assert plugins.load_errors == ["plugin 'typo' implements unknown hook 'register_target' (did you mean "
                                   "'register_targets'?); known hooks: register_backends, register_commands, "
                                   "register_datasets, register_exporters, register_rules, register_targets, register_vendor_checks; the plugin was not loaded"]
    assert plugins.pm.get_plugin("typo") is None
    assert "register_target" not in dir(plugins.pm.hook)
    plugins.pm.check_pending()
