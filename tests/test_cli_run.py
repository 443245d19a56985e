"""`spikefit run` and `spikefit bench backends` through CliRunner and once as a real process."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np

from spikefit import hookimpl
from clitools import SPIKEFIT, assert_one_line_error, invoke
from spikefit.emulator import EmulatorBackend
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import write_nir






def one_hot_files(tmp_path, n: int = 4, steps: int = 5, held: bool = False):
    net = Network.sequential(Input("in", (n,)), Dense("fc", 2.0 * np.eye(n)), Neurons("pop", (n,), vth=1.0),
                             Output("out", (n,)))
    model = write_nir(net, tmp_path / "model.nir")
    x = np.eye(n, dtype=np.float32) if held else np.broadcast_to(np.eye(n, dtype=np.float32), (steps, n, n))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(n))
    return model, tmp_path / "x.npy", tmp_path / "y.npy"


def test_run_inputs_json(tmp_path):
    model, x, y = one_hot_files(tmp_path)
    result = invoke("run", model, "--inputs", x, "--labels", y, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] == 1.0 and report["correct"] == 4 and report["backend"] == "emulator"
    assert report["spikes"] == {"pop": 20} and report["synops"] == {"fc": 20} and report["steps"] == 5


def test_run_table_with_held_inputs(tmp_path):
    model, x, y = one_hot_files(tmp_path, held=True)
    result = invoke("run", model, "--inputs", x, "--labels", y, "--steps", 3)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "backend   emulator: 4 samples x 3 steps" in out
    assert "accuracy  1.0000 (4/4, readout 'pop')" in out
    assert re.search(r"^pop\s+12\s+3\.0$", out, re.M) and re.search(r"^fc\s+12\s+3\.0$", out, re.M)


def test_run_dataset(tmp_path):
    rng = np.random.default_rng(0)
    net = Network.sequential(Input("in", (64,)), Dense("fc", rng.normal(0, 0.3, (10, 64))), Neurons("pop", (10,)),
                             Output("out", (10,)))
    model = write_nir(net, tmp_path / "digits.nir")
    result = invoke("run", model, "--dataset", "digits", "--samples", 30, "--steps", 8, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["samples"], report["steps"]) == (30, 8) and 0.0 <= report["accuracy"] <= 1.0


def test_run_input_size_mismatch_exits_2(tmp_path):
    net = Network.sequential(Input("in", (80,)), Dense("fc", np.ones((10, 80))), Neurons("pop", (10,)),
                             Output("out", (10,)))
    model = write_nir(net, tmp_path / "m80.nir")
    assert_one_line_error(invoke("run", model, "--dataset", "digits"),
                          r"^Error: model input size 80 does not match dataset 'digits' \(64 features\); ")
    model4, x, _ = one_hot_files(tmp_path)
    np.save(tmp_path / "x3.npy", np.zeros((2, 2, 3), np.float32))
    assert_one_line_error(invoke("run", model4, "--inputs", tmp_path / "x3.npy"),
                          r"model input size 4 does not match the inputs \(3 channels\)")


def test_run_usage_errors_exit_2(tmp_path):
    model, x, y = one_hot_files(tmp_path)
    assert_one_line_error(invoke("run", model), r"nothing to run: pass --dataset NAME, --data FILE or --inputs X\.npy")
    assert_one_line_error(invoke("run", model, "--inputs", x, "--dataset", "digits"),
                          "pass one of --dataset, --data, --inputs, not --dataset and --inputs")
    (tmp_path / "bad.npy").write_text("not numpy")
    assert_one_line_error(invoke("run", model, "--inputs", tmp_path / "bad.npy"), r"inputs file '.*bad\.npy' is not a \.npy")
    assert_one_line_error(invoke("run", model, "--inputs", x, "--backend", "nope"), r"unknown backend 'nope'")
    assert_one_line_error(invoke("run", model, "--inputs", x, "--compare", "emulator,nope"), r"unknown backend 'nope'")


class FloatReference:
    """The emulator's float mode under a name of this test's own."""

    @hookimpl
    def register_backends(self, register):
        backend = EmulatorBackend("float")
        backend.name = "float-ref"
        register(backend)


def test_run_compare(tmp_path, register_plugin):
    register_plugin(FloatReference(), "float-ref-plugin")
    model, x, y = one_hot_files(tmp_path)
    result = invoke("run", model, "--inputs", x, "--labels", y, "--compare", "emulator,float-ref", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["agreement"] == {"float-ref": 1.0} and report["reference"] == "emulator"
    text = invoke("run", model, "--inputs", x, "--labels", y, "--compare", "emulator,float-ref").stdout
    assert re.search(r"^float-ref\s+1\.0000\s+20\s+20\s+[\d,.]+\s+1\.0000$", text, re.M)


def test_bench_backends_without_another_backend_exits_2(plugin_env):
    plugin_env(SPIKEFIT_LOAD_PLUGINS="")
    assert_one_line_error(invoke("bench", "backends", "--samples", 2),
                          r"^Error: no registered backend besides the emulator runs generic LIF neurons \(no target\) on these "
                          r"inputs, so there is nothing to compare the emulator with; install a plugin that provides one")


def test_run_as_a_real_process(tmp_path):
    model, x, y = one_hot_files(tmp_path)
    proc = subprocess.run([str(SPIKEFIT), "run", str(model), "--inputs", str(x), "--labels", str(y), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] == 1.0


def test_run_currents_picks_the_float_emulator(tmp_path):
    """Graded inputs (currents) run on emulator-float unless a backend is named; a backend that takes
    only spikes says in one line which one takes currents."""
    model, _, y = one_hot_files(tmp_path, held=True)
    np.save(tmp_path / "cur.npy", 0.6 * np.eye(4, dtype=np.float32))   # (b, n) held for --steps steps
    r = invoke("run", model, "--inputs", tmp_path / "cur.npy", "--labels", y, "--steps", "3", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["backend"] == "emulator-float" and res["accuracy"] == 1.0   # 2 x 0.6 = 1.2 > vth every step
    assert_one_line_error(invoke("run", model, "--inputs", tmp_path / "cur.npy", "--backend", "emulator"),
                          r"^Error: the inputs are currents \(values in \[0, 0\.6\]\) and backend 'emulator' takes 0/1 "
                          r"spikes; run currents on 'emulator-float', or fit with --encoding rate")
    r = invoke("run", model, "--inputs", tmp_path / "cur.npy", "--compare", "emulator-float,emulator")
    assert r.exit_code == 2 and "backend 'emulator' takes 0/1 spikes" in r.stderr
