"""The bad-input campaign, family by family: every input that once ran code, hung, grew without
bound, printed a traceback or was silently accepted now gets one line and exit 2 (or 1 for "does
not fit"), and ``--json`` prints a JSON object whatever happens (docs/cli.md)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from clitools import assert_one_line_error, invoke
from spikefit import bounds
from spikefit import checkpoint as ckpt
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import network_to_nir, write_nir
from spikefit.outputs import output_lock


def a(*values):
    return np.array(values, dtype=np.float64)


def small_model(path: Path, n_in: int = 64, n_out: int = 10) -> Path:
    rng = np.random.default_rng(0)
    net = Network.sequential(Input("in", (n_in,)), Dense("fc", rng.normal(0, 0.3, (n_out, n_in))),
                             Neurons("pop", (n_out,), dv=0.1), Output("out", (n_out,)), dt=1e-3)
    return write_nir(net, path)


def nir_file(path: Path, **overrides) -> Path:
    """Input(2) -> Linear -> LIF(3) -> Output(3), with any node or field replaced."""
    lif = dict(tau=a(1e-2, 1e-2, 1e-2), r=a(1, 1, 1), v_leak=a(0, 0, 0), v_threshold=a(1, 1, 1))
    lif.update({k: v for k, v in overrides.items() if k in lif})
    nodes = dict(inp=nir.Input(a(2)), fc=nir.Linear(weight=overrides.get("weight", np.ones((3, 2)))),
                 lif=nir.LIF(**lif), out=nir.Output(overrides.get("out", a(3))))
    for drop in overrides.get("drop", ()):
        nodes.pop(drop)
    names = list(nodes)
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), type_check=False))
    return path


def tampered(path: Path, key: str, value) -> Path:
    net = Network.sequential(Input("in", (2,)), Dense("fc", np.ones((3, 2))), Neurons("p", (3,), dv=0.1),
                             Output("o", (3,)))
    graph = network_to_nir(net)
    graph.metadata["spikefit"][key] = value
    nir.write(path, graph)
    return path


# -- 1. nothing read executes code ------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_everywhere(tmp_path):
    marker = tmp_path / "ran"
    out = tmp_path / "fit"
    out.mkdir()
    evil = out / "checkpoint.pt"
    torch.save({"version": 2, "payload": _RunsCode(marker)}, evil)
    for args in (["verify", evil, "--target", "loihi2"], ["run", evil, "--dataset", "digits"],
                 ["export", evil, "-o", tmp_path / "x.nir"],
                 ["fit", "--target", "loihi2", "--dataset", "digits", "--out", out, "--resume"]):
        assert_one_line_error(invoke(*args), r"is corrupt \(holds objects other than tensors and plain data")
    assert not marker.exists(), "the pickle's command ran"


def test_checkpoint_checksum_catches_an_edited_value(tmp_path):
    path = tmp_path / "ck.pt"
    ckpt.save({"version": 2, "w": torch.ones(3), "state": {"stage": 1}}, path)
    assert ckpt.read(path)["state"] == {"stage": 1}
    sealed = torch.load(path, weights_only=True)
    sealed["state"]["stage"] = -5  # edited after writing, checksum kept
    torch.save(sealed, path)
    with pytest.raises(ckpt.CheckpointFormatError, match="fails its checksum"):
        ckpt.read(path)


def _resealed_fit_checkpoint(tmp_path, edit) -> Path:
    """A real fit's checkpoint, edited by ``edit(payload)`` and sealed again (a valid checksum)."""
    from test_trainer import TINY, tiny_target
    from spikefit.trainer import FitConfig, fit

    out = tmp_path / "fit"
    fit(None, "digits", tiny_target(), FitConfig(**{**TINY, "deploy": False}), out=out, progress=False)
    payload = ckpt.read(out / "checkpoint.pt")
    edit(payload)
    ckpt.save(payload, out / "checkpoint.pt")
    return out


@pytest.mark.parametrize("edit, message", [
    (lambda ck: ck["state"].update(stage=-5), r"state stage -5 is not a count"),
    (lambda ck: ck.update(state=[1, 2]), r"state is not a dict"),
    (lambda ck: ck["arch"]["stages"][0].update(n_out=10 ** 9), r"n_out 1000000000, outside 0\.\.67108864"),
    (lambda ck: ck["config"].update(finetune_epochs=10 ** 9), r"config finetune_epochs 1000000000 is not a count up "
                                                              r"to 100000"),
])
def test_structurally_broken_checkpoints_are_one_line(tmp_path, edit, message):
    out = _resealed_fit_checkpoint(tmp_path, edit)
    assert_one_line_error(invoke("verify", out / "checkpoint.pt", "--target", "loihi2"), message)
    t0 = time.monotonic()
    r = invoke("fit", "--target-file", _tiny_toml(tmp_path), "--dataset", "digits", "--out", out, "--resume")
    assert_one_line_error(r, message)
    assert time.monotonic() - t0 < 20, "refused before any training"


def _tiny_toml(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\n[limits]\nneurons = 30\nsynapses = 1000\nfan_in = 40\nweight_bits = 8\n'
                    'unique_weights = 4\nunique_weights_scope = "neuron"\n')
    return path


# -- 3. unbounded input ---------------------------------------------------------------------------
def test_targets_check_of_a_device_or_a_huge_file_reads_nothing(tmp_path):
    assert_one_line_error(invoke("targets", "check", "/dev/zero"), r"'/dev/zero' is not a regular file")
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(bounds.SPEC_MAX_BYTES + 1)  # sparse: no disk used
    assert_one_line_error(invoke("targets", "check", big), rf"has {bounds.SPEC_MAX_BYTES + 1} bytes, more than the "
                                                           rf"{bounds.SPEC_MAX_BYTES} \(1 MiB\) a spec may have")


def test_a_huge_bit_width_is_refused_at_once(tmp_path, plugin_env):
    path = tmp_path / "specs" / "huge.toml"
    path.parent.mkdir()
    path.write_text('name = "huge"\n[limits]\nweight_bits = 1099511627776\n')
    t0 = time.monotonic()
    assert_one_line_error(invoke("targets", "check", path), r"limits.weight_bits 1099511627776 is outside 1\.\.32")
    model = small_model(tmp_path / "m.nir")
    assert_one_line_error(invoke("verify", model, "--target", path), r"is outside 1\.\.32")
    plugin_env(SPIKEFIT_TARGETS_PATH=str(path.parent))
    listed = invoke("targets")
    assert listed.exit_code == 0 and "Warning: skipped target file (SPIKEFIT_TARGETS_PATH)" in listed.stderr
    assert time.monotonic() - t0 < 10


def test_deep_nesting_is_refused_and_does_not_break_other_commands(tmp_path, plugin_env):
    path = tmp_path / "specs" / "deep.toml"
    path.parent.mkdir()
    path.write_text('name = "deep"\nv = ' + "[" * 5000 + "]" * 5000 + "\n")
    assert_one_line_error(invoke("targets", "check", path), r"tables and arrays nest 5000 deep, more than the 8")
    dotted = tmp_path / "dotted.toml"
    dotted.write_text('name = "deep"\n' + ".".join(["rules"] + ["a"] * 20) + " = 1\n")
    assert_one_line_error(invoke("targets", "check", dotted), r"nest 21 deep")
    plugin_env(SPIKEFIT_TARGETS_PATH=str(path.parent))
    r = invoke("verify", small_model(tmp_path / "m.nir"), "--target", "loihi2")
    assert r.exit_code in (0, 1) and "Traceback" not in r.output


def test_a_pipe_named_like_a_spec_does_not_block(tmp_path, plugin_env):
    folder = tmp_path / "specs"
    folder.mkdir()
    os.mkfifo(folder / "pipe.toml")  # opening it for reading would wait for a writer forever
    assert_one_line_error(invoke("targets", "check", folder / "pipe.toml"), r"is not a regular file")
    plugin_env(SPIKEFIT_TARGETS_PATH=str(folder))
    listed = invoke("targets")
    assert listed.exit_code == 0 and "pipe.toml' is not a regular file" in listed.stderr


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[limits]\nneurons = 9223372036854775807\n', r"limits.neurons 9223372036854775807 is not below 2\*\*40"),
    ('name = "x"\n[limits]\nsynapses = 1099511627776\n', r"limits.synapses 1099511627776 is not below 2\*\*40"),
    ('name = "x"\n[neuron]\nstate_bits = 33\n', r"neuron.state_bits 33 is outside 1\.\.32"),
    ('name = "x"\n[limits]\nweight_bits = 0\n', r"limits.weight_bits 0 is outside 1\.\.32"),
    ('name = "x"\n[limits]\nneuron_per_core = 3\n', r"unknown key limits.neuron_per_core; did you mean limits.neurons_per_core\?"),
    ('name = "x"\n[limit]\nneurons = 3\n', r"unknown section 'limit'; did you mean 'limits'\?"),
])
def test_spec_values_beyond_any_chip_and_misspellings_are_errors(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    assert_one_line_error(invoke("targets", "check", path), message)


# -- tracebacks and silent accepts on NIR graphs --------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (dict(v_leak=a(np.nan, 0, 0)), r"v_leak of NIR node 'lif' holds NaN or infinite values"),
    (dict(r=a(np.inf, 1, 1)), r"r of NIR node 'lif' holds NaN or infinite values"),
    (dict(r=a(0, 0, 0)), r"r of NIR node 'lif' \(LIF\) is 0; it must be positive"),
    (dict(tau=a(-1, -1, -1)), r"tau of NIR node 'lif' \(LIF\) is -1; it must be positive"),
    (dict(weight=np.ones((3, 2)) * (1 + 2j)), r"weight of NIR node 'fc' is complex"),
    (dict(weight=np.full((3, 2), np.nan)), r"weight of NIR node 'fc' holds NaN"),
    (dict(out=a(5)), r"NIR Output 'out' declares shape \(5,\) \(5 values\) but is fed 3 values"),
    (dict(drop=("out",)), r"network has no Output node"),
    (dict(drop=("fc", "lif"), out=a(2)), r"network has no neuron population"),
])
def test_bad_nir_graphs_are_refused_by_every_command(tmp_path, overrides, message):
    model = nir_file(tmp_path / "bad.nir", **overrides)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 2), np.float32))
    for args in (["verify", model, "--target", "loihi2"], ["export", model, "-o", tmp_path / "o.nir"],
                 ["run", model, "--inputs", x]):
        assert_one_line_error(invoke(*args), message)


def test_cuba_w_in_and_bias_nan(tmp_path):
    nodes = dict(inp=nir.Input(a(2)), fc=nir.Affine(weight=np.ones((3, 2)), bias=a(np.nan, 0, 0)),
                 lif=nir.CubaLIF(tau_syn=a(2e-3, 2e-3, 2e-3), tau_mem=a(1e-2, 1e-2, 1e-2), r=a(1, 1, 1),
                                 v_leak=a(0, 0, 0), v_threshold=a(1, 1, 1), w_in=a(1, 1, 1)), out=nir.Output(a(3)))
    nir.write(tmp_path / "b.nir", nir.NIRGraph(nodes=nodes, edges=[("inp", "fc"), ("fc", "lif"), ("lif", "out")],
                                               type_check=False))
    assert_one_line_error(invoke("verify", tmp_path / "b.nir", "--target", "loihi2"), r"bias of NIR node 'fc' holds NaN")
    nodes["fc"] = nir.Linear(weight=np.ones((3, 2)))
    nodes["lif"] = nir.CubaLIF(tau_syn=a(2e-3, 2e-3, 2e-3), tau_mem=a(1e-2, 1e-2, 1e-2), r=a(1, 1, 1),
                               v_leak=a(0, 0, 0), v_threshold=a(1, 1, 1), w_in=a(np.inf, 1, 1))
    nir.write(tmp_path / "w.nir", nir.NIRGraph(nodes=nodes, edges=[("inp", "fc"), ("fc", "lif"), ("lif", "out")],
                                               type_check=False))
    assert_one_line_error(invoke("run", tmp_path / "w.nir", "--dataset", "digits"), r"w_in of NIR node 'lif' holds NaN")


@pytest.mark.parametrize("key, value, message", [
    ("dt", "abc", r"metadata\['spikefit'\]\['dt'\] of the NIR graph is 'abc', not a positive number of seconds"),
    ("dt", -1.0, r"\['dt'\] of the NIR graph is -1.0, not a positive number"),
    ("node_order", "[not json", r"\['node_order'\] of the NIR graph is '\[not json', not a JSON list of node names"),
    ("network_metadata", "[1]", r"\['network_metadata'\] of the NIR graph is '\[1\]', not a JSON object"),
])
def test_tampered_spikefit_metadata_is_one_line(tmp_path, key, value, message):
    model = tampered(tmp_path / "t.nir", key, value)
    assert_one_line_error(invoke("export", model, "-o", tmp_path / "o.nir"), message)
    assert_one_line_error(invoke("verify", model, "--target", "loihi2"), message)


def conv_pool_model(path: Path, stride) -> Path:
    nodes = dict(inp=nir.Input(a(1, 4, 4)),
                 conv=nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 1, 1)), stride=1, padding=0, dilation=1,
                                 groups=1, bias=np.zeros(2)),
                 lif=nir.IF(r=np.full((2, 4, 4), 1e3), v_threshold=np.ones((2, 4, 4)), v_reset=np.zeros((2, 4, 4))),
                 pool=nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array(stride), padding=np.array([0, 0])),
                 fl=nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1),
                 fc=nir.Linear(weight=np.ones((3, 8))), lif2=nir.IF(r=a(1e3, 1e3, 1e3), v_threshold=a(1, 1, 1), v_reset=a(0, 0, 0)),
                 out=nir.Output(a(3)))
    names = list(nodes)
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), type_check=False))
    return path


def test_pool_stride_zero_is_one_line(tmp_path):
    model = conv_pool_model(tmp_path / "p.nir", [0, 0])
    assert_one_line_error(invoke("verify", model, "--target", "loihi2"), r"stride of NIR node 'pool' \(SumPool2d\) "
                                                                         r"is \[0, 0\]; it must be at least 1")


# -- CLI numbers, paths, memory -------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--seed", "-5"], r"Invalid value for '--seed': -5 is not in the range 0<=x<=4294967295"),
    (["--steps", "1000000000"], r"Invalid value for '--steps': 1000000000 is not in the range 1<=x<=100000"),
    (["--steps", "0"], r"Invalid value for '--steps': 0 is not in the range 1<=x<=100000"),
    (["--steps", "-3"], r"Invalid value for '--steps': -3 is not in the range"),
    (["--samples", "0"], r"Invalid value for '--samples': 0 is not in the range x>=1"),
    (["--dt", "nan"], r"Invalid value for '--dt': 'nan' is not in the range 0 < dt <= 3600 seconds"),
])
def test_run_numbers_have_ranges(tmp_path, args, message):
    assert_one_line_error(invoke("run", small_model(tmp_path / "m.nir"), "--dataset", "digits", *args), message)


def test_fit_numbers_have_ranges(tmp_path):
    base = ["fit", "--target", "loihi2", "--dataset", "digits", "--out", tmp_path / "o"]
    assert_one_line_error(invoke(*base, "--seed", "-5"), r"'--seed': -5 is not in the range 0<=x<=4294967295")
    assert_one_line_error(invoke(*base, "--steps", "1000000000"), r"'--steps': 1000000000 is not in the range")


def test_empty_or_odd_inputs_and_labels_are_refused(tmp_path):
    model = small_model(tmp_path / "m.nir", n_in=4, n_out=3)

    def npy(name, arr):
        np.save(tmp_path / name, arr)
        return tmp_path / name

    x = npy("x.npy", np.ones((2, 4), np.float32))
    cases = [
        (["--inputs", npy("e.npy", np.zeros((0, 4), np.float32))], r"inputs hold no samples \(batch of 0\)"),
        (["--inputs", npy("e3.npy", np.zeros((5, 0, 4), np.float32))], r"hold no samples or no steps"),
        (["--inputs", npy("c.npy", np.ones((2, 4), complex))], r"inputs hold complex128 values"),
        (["--inputs", x, "--labels", npy("f.npy", np.array([0.5, 1.0]))], r"labels hold float64 values; pass integer"),
        (["--inputs", x, "--labels", npy("r.npy", np.array([0, 7]))], r"labels range over 0\.\.7, outside the model's "
                                                                       r"classes 0\.\.2"),
    ]
    for args, message in cases:
        assert_one_line_error(invoke("run", model, *args), message)


def test_conv_model_runs_b_c_h_w_inputs(tmp_path):
    model = conv_pool_model(tmp_path / "p.nir", [2, 2])
    np.save(tmp_path / "x.npy", np.ones((5, 1, 4, 4), np.float32))        # (b, C, H, W), held
    np.save(tmp_path / "xt.npy", np.ones((3, 5, 1, 4, 4), np.float32))    # (t, b, C, H, W)
    held = invoke("run", model, "--inputs", tmp_path / "x.npy", "--steps", "4", "--json")
    assert held.exit_code == 0, held.output
    assert (json.loads(held.stdout)["samples"], json.loads(held.stdout)["steps"]) == (5, 4)
    timed = invoke("run", model, "--inputs", tmp_path / "xt.npy", "--json")
    assert timed.exit_code == 0 and json.loads(timed.stdout)["steps"] == 3


def test_output_paths_are_checked_before_training(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["fit", "--target", "loihi2", "--dataset", "digits", "--out"]
    assert_one_line_error(invoke(*base, afile / "sub"), r"--out '.*afile/sub' lies under '.*afile', which is a file")
    assert_one_line_error(invoke(*base, tmp_path / ("n" * 300)), r"has 300 bytes, more than the 255 a file name may have")
    assert_one_line_error(invoke(*base, "/proc/1/spikefit-out"), r"cannot be created: '/proc/1' is not writable")
    model = small_model(tmp_path / "m.nir")
    assert_one_line_error(invoke("export", model, "--out", afile / "x.nir"), r"lies under '.*afile', which is a file")


def test_a_second_fit_on_one_out_is_stopped_by_the_lock(tmp_path):
    out = tmp_path / "o"
    with output_lock(out):
        r = invoke("fit", "--target", "loihi2", "--dataset", "digits", "--out", out, "--epochs", "0,0,0,0")
    assert_one_line_error(r, rf"--out '.*o' is being written by another fit \(pid {os.getpid()}, lock ")
    assert not (tmp_path / ".o.lock").exists(), "the lock file goes with its holder"


def test_work_that_cannot_fit_in_memory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bounds, "available_memory", lambda: 64 * 2 ** 20)
    model = small_model(tmp_path / "m.nir")
    assert_one_line_error(invoke("run", model, "--dataset", "digits", "--steps", "100000"),
                          r"a run of 360 samples x 100000 steps needs about .* GiB of memory but 64.0 MiB is "
                          r"available; pass fewer --samples or --steps")
    assert_one_line_error(invoke("fit", "--target", "loihi2", "--dataset", "digits", "--out", tmp_path / "o",
                                 "--steps", "100000"), r"a fit of 'digits' with 100000 steps needs about")


# -- one contract: exit codes and JSON ------------------------------------------------------------
def test_usage_errors_are_one_line():
    assert_one_line_error(invoke("bogus"), r"^Error: No such command 'bogus'\. \(see 'cli --help'\)$")
    assert_one_line_error(invoke("--bogus"), r"^Error: No such option '--bogus'")
    assert_one_line_error(invoke("verify"), r"^Error: Missing argument 'MODEL'\. \(see 'cli verify --help'\)$")
    assert_one_line_error(invoke("targets", "show"), r"Missing argument 'NAME'")


@pytest.mark.parametrize("args", [
    ["verify", "missing.nir", "--target", "loihi2", "--json"],
    ["targets", "show", "nope", "--json"],
    ["run", "missing.nir", "--dataset", "digits", "--json"],
    ["fit", "--json", "--seed", "-1"],
])
def test_json_errors_are_json_objects(args):
    r = invoke(*args)
    assert r.exit_code == 2
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["exit_code"] == 2 and data["error"]
    assert r.stderr.startswith("Error: ") and len(r.stderr.splitlines()) == 1


def test_a_fit_the_target_cannot_hold_exits_1_with_json(tmp_path):
    target = tmp_path / "convonly.toml"
    target.write_text('name = "convonly"\n[limits]\nweight_bits = 8\n[layers]\nkinds = ["conv2d"]\n')
    r = invoke("fit", "--target-file", target, "--dataset", "digits", "--out", tmp_path / "o", "--epochs", "0,0,0,0",
               "--steps", "4", "--quiet", "--json")
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["exit_code"] == 1 and data["target"] == "convonly" and not data["trained"]
    assert "target 'convonly' cannot hold this network" in data["error"] and "layer_kinds" in data["error"]
    assert r.stderr.startswith("Does not fit: target 'convonly' cannot hold this network")
    assert not (tmp_path / "o" / "report.json").exists()          # stopped before training


def test_a_fit_that_trains_but_does_not_fit_exits_1_with_its_report(tmp_path, monkeypatch):
    from spikefit import fitcheck

    original = fitcheck.verify

    def strict(network, target):                    # the fitted network fails a row after training
        report = original(network, target)
        report.rows.append(fitcheck.Row("neurons", 10 ** 6, 1, False, "layer lif1", "made to fail"))
        return report

    monkeypatch.setattr(fitcheck, "verify", strict)
    r = invoke("fit", "--target", "loihi2", "--dataset", "digits", "--out", tmp_path / "o", "--epochs", "1,0,0,0",
               "--steps", "4", "--quiet", "--json")
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["exit_code"] == 1 and data["target"] == "loihi2"
    assert "the fitted network does not fit target 'loihi2': neurons uses 1000000 of 1" in data["error"]
    assert (tmp_path / "o" / "report.json").exists()
