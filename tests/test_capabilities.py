"""Backends declare the inputs they take and the neurons they run (spikefit.capabilities); the runner,
`run --compare`, `bench backends` and the exporters go by the declarations, never by a backend's name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spikefit import hookimpl, plugins
from spikefit.capabilities import Capability, capability, check_inputs, pair
from spikefit.chipneurons import run_truenorth
from spikefit.emulator import EmulatorBackend
from spikefit.errors import BackendError, ExportError, PluginError
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import write_nir
from spikefit.runner import compare, run
from spikefit_lava.exporter import LavaExporter
from spikefit_xylo.corpus import layered

from clitools import assert_one_line_error, invoke


def _counts(seed: int, shape, top: int, p: float = 0.3) -> np.ndarray:
    """Input events per channel and step: 1..top where an event arrives (probability p)."""
    rng = np.random.default_rng(seed)
    return ((rng.random(shape) < p) * rng.integers(1, top + 1, shape)).astype(np.float32)


def _lif(metadata=None) -> Network:
    rng = np.random.default_rng(3)
    return Network.sequential(Input("in", (6,)), Dense("fc", rng.normal(0.0, 0.8, (4, 6))),
                              Neurons("h", (4,), du=1.0, dv=0.25, vth=1.0), Output("out", (4,)),
                              metadata=metadata or {})


def test_every_registered_backend_declares_inputs_and_neurons():
    caps = {n: capability(b) for n, b in plugins.registry("backend").items()}
    assert caps["emulator"] == Capability("spikes", None, ("cuba-lif", "lif", "if"))
    assert caps["emulator-float"].inputs == "currents"
    assert caps["lava"] == Capability("spikes", None, ("cuba-lif", "lif", "if"))
    assert caps["xylosim"] == Capability("counts", 15, ("xylo-lif",))
    assert caps["speck-sim"] == Capability("counts", None, ("speck-if",))
    assert caps["akida"] == Capability("spikes", None, ("akida-act",))
    xylo = capability(EmulatorBackend.for_target(plugins.get_target("xylo-audio2")))
    assert xylo == Capability("counts", 15, ("xylo-lif",))                 # the chip's limit, not the name
    assert capability(EmulatorBackend.for_target(plugins.get_target("truenorth"))).inputs == "currents"  # float64


class BadDeclaration:
    @hookimpl
    def register_backends(self, register):
        class Backend:
            name, inputs = "odd", "voltages"

            def run(self, network, inputs):
                return {}

        register(Backend())


def test_a_malformed_declaration_is_named_and_skipped(register_plugin):
    register_plugin(BadDeclaration(), "bad-declaration")
    assert "odd" not in plugins.registry("backend")
    assert any(e == "plugin 'bad-declaration' registered backend 'odd', which declares inputs 'voltages'; use one of "
                    "spikes, counts, currents; its backends were skipped" for e in plugins.load_errors)
    with pytest.raises(PluginError, match=r"^declares max_events 15 with inputs 'spikes'; max_events goes with"):
        Capability("spikes", 15)


def test_compare_emulator_and_xylosim_on_many_input_events_per_step(tmp_path):
    """Up to 15 input events per channel and step (Xylo's limit): the emulator running xylo-lif and XyloSim
    agree spike for spike on every population, through the command line."""
    net = layered(16, (24,), 8, seed=4, recurrent=(0,))
    model = write_nir(net, tmp_path / "x.nir")
    x = _counts(5, (30, 6, 16), 15)
    np.save(tmp_path / "x.npy", x)
    r = invoke("run", "--compare", "emulator,xylosim", model, "--target", "xylo-audio2", "--inputs",
               tmp_path / "x.npy", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["agreement"] == {"xylosim": 1.0}
    res = compare(net, ["emulator", "xylosim"], inputs=x, target="xylo-audio2")
    emu, sim = res.results["emulator"].outputs, res.results["xylosim"].outputs
    for pop in ("h0", "o"):
        assert np.array_equal(emu[pop], sim[pop]), pop
    assert int(x.max()) == 15 and (x > 1).mean() > 0.2                    # most events arrive several at once
    assert int(emu["h0"].max()) > 1 and int(emu["o"].sum()) > 0           # hidden neurons spike several times a step


def test_counts_beyond_the_declared_limit_exit_2(tmp_path):
    net = layered(16, (24,), 8, seed=4)
    model = write_nir(net, tmp_path / "x.nir")
    x = _counts(6, (5, 2, 16), 3)
    x[2, 1, 7] = 16
    np.save(tmp_path / "x16.npy", x)
    limit = (r"^Error: input event count 16 exceeds the limit of backend {}: at most 15 events per channel and step; "
             r"split the events over more steps or clip them to 15$")
    for args, who in ((["--compare", "emulator,xylosim"], r"'emulator' \(xylo-lif\)"),
                      (["--backend", "xylosim"], "'xylosim'"), (["--backend", "emulator"], r"'emulator' \(xylo-lif\)")):
        assert_one_line_error(invoke("run", *args, model, "--target", "xylo-audio2", "--inputs", tmp_path / "x16.npy"),
                              limit.format(who))
    with pytest.raises(BackendError, match=r"^input event count 16 exceeds Xylo's limit of 15 events per channel"):
        EmulatorBackend.for_target(plugins.get_target("xylo-audio2")).run(net, x)   # no silent clipping


def test_spike_backends_refuse_counts_and_name_those_that_take_them(tmp_path):
    model = write_nir(_lif(), tmp_path / "m.nir")
    np.save(tmp_path / "c.npy", np.full((3, 2, 6), 2.0, dtype=np.float32))
    assert_one_line_error(invoke("run", model, "--backend", "emulator", "--inputs", tmp_path / "c.npy"),
                          r"^Error: the inputs hold 2 events in one channel and step and backend 'emulator' takes 0/1 "
                          r"spikes; pass 0/1 spikes, or run them on a backend that takes counts \('xylosim', "
                          r"'speck-sim'\)$")
    r = invoke("run", model, "--inputs", tmp_path / "c.npy", "--json")   # no backend named: the float emulator
    assert r.exit_code == 0 and json.loads(r.stdout)["backend"] == "emulator-float"
    with pytest.raises(BackendError, match=r"^the inputs are currents \(values in \[-1, 0\.5\]\) and backend 'xylosim' "
                                           r"takes input event counts \(0\.\.15\); run currents on 'emulator-float'"):
        check_inputs(plugins.get_backend("xylosim"), np.array([[[-1.0, 0.5]]]))


def test_the_default_pair_comes_from_the_declared_neurons():
    assert pair(_lif()) == ["emulator", "lava"]                          # spikefit's LIF
    assert pair(_lif(), plugins.get_target("xylo-audio2")) == ["emulator", "xylosim"]
    assert pair(_lif({"target": "speck2f"})) == ["emulator", "speck-sim"]  # the model's own target
    with pytest.raises(BackendError, match=r"^no registered backend besides the emulator runs truenorth-lif neurons "
                                           r"\(target 'truenorth'\); install a plugin"):
        pair(_lif(), plugins.get_target("truenorth"))


def test_compare_auto_and_without_backends(tmp_path):
    net = layered(16, (24,), 8, seed=4)
    x = _counts(7, (12, 3, 16), 4)
    res = compare(net, inputs=x, target="xylo-audio2")
    assert list(res.results) == ["emulator", "xylosim"] and res.agreement == {"xylosim": 1.0}
    np.save(tmp_path / "x.npy", x)
    r = invoke("run", "--compare", "auto", write_nir(net, tmp_path / "x.nir"), "--target", "xylo-audio2",
               "--inputs", tmp_path / "x.npy", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["agreement"] == {"xylosim": 1.0}


def test_a_truenorth_network_runs_its_linear_leak_and_lava_refuses_it(tmp_path):
    net = _lif({"target": "truenorth"})
    x = (np.random.default_rng(0).random((10, 3, 6)) < 0.4).astype(np.float32)
    res = run(net, inputs=x)                                              # the emulator reads the model's target
    assert np.array_equal(res.outputs["h"], run_truenorth(net, x)["h"])
    assert not np.array_equal(res.outputs["h"], run(_lif(), inputs=x).outputs["h"])  # not Lava's multiplicative leak
    model = write_nir(net, tmp_path / "tn.nir")
    why = (r"Lava cannot run this network's truenorth-lif neurons \({}\): its leak is linear \(v <- v - sign\(v\) "
           r"min\(\|v\|, leak\) every step\), and Lava's LIF only leaks multiplicatively")
    with pytest.raises(ExportError, match="^" + why.format("its metadata names target 'truenorth'")):
        LavaExporter().export(net, tmp_path / "py", None)
    assert_one_line_error(invoke("export", "--format", "lava", model, "--out", tmp_path / "lava"),
                          r"^Error: exporter 'lava' runs cuba-lif, lif, if neurons, and this network's are truenorth-lif "
                          r"\(its metadata names target 'truenorth'\); export it in a format that runs truenorth-lif")
    with pytest.raises(ExportError, match="^" + why.format("target 'truenorth'")):
        LavaExporter().export(_lif(), tmp_path / "py", plugins.get_target("truenorth"))
    assert not (tmp_path / "lava").exists() and not (tmp_path / "py").exists()
    assert_one_line_error(invoke("run", "--compare", "emulator,lava", model, "--dataset", "digits"),
                          r"^Error: backend 'lava' runs cuba-lif, lif, if neurons, and this network's are truenorth-lif "
                          r"\(its metadata names target 'truenorth'\); run it on the emulator with --target truenorth$")


class SecondEmulator:
    @hookimpl
    def register_backends(self, register):
        backend = EmulatorBackend()
        backend.name = "second"
        register(backend)


def test_bench_backends_compares_every_registered_backend_that_runs_the_neuron(plugin_env, register_plugin):
    plugin_env(SPIKEFIT_LOAD_PLUGINS="")
    register_plugin(SecondEmulator(), "second-emulator")
    r = invoke("bench", "backends", "--samples", 4, "--steps", 4, "--repeat", 1, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["compared"] == ["second"] and report["second"]["identical_outputs"] == 1.0
    assert report["neuron_model"] == "lif" and report["second"]["ratio"] > 0


def test_speck_sim_takes_event_counts_as_declared():
    """speck-sim declares counts without a limit: sinabs and the emulator's speck-if agree on several
    events per pixel and step, through the runner with --target speck2f."""
    from spikefit_speck.corpus import Chain

    net = Chain("conv", (1, 8, 8)).conv(4, 3, padding=1, vth=120).pool(2).dense(10, vth=100).build()
    x = _counts(8, (8, 3, 1, 8, 8), 5, p=0.4)                            # (t, b, c, h, w)
    res = compare(net, ["emulator", "speck-sim"], inputs=x, target="speck2f")
    assert res.agreement == {"speck-sim": 1.0} and int(x.max()) == 5
    for pop in res.results["emulator"].outputs:
        assert np.array_equal(res.results["emulator"].outputs[pop], res.results["speck-sim"].outputs[pop]), pop
