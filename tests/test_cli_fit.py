"""``spikefit fit``: pinned one-line errors (exit 2), a real subprocess fit, resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from spikefit import network as N
from spikefit.cli import cli
from spikefit.nir_io import write_nir

TINY_TOML = """
name = "tinychip"
[limits]
neurons = 200
fan_in = 48
weight_bits = 8
unique_weights = 4
unique_weights_scope = "neuron"
"""


def run(*args, env=None):
    return CliRunner().invoke(cli, ["fit", *args], env=env)


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_unknown_dataset(tmp_path):
    r = run("--target", "truenorth", "--dataset", "cifar", "--out", str(tmp_path / "o"))
    assert _error_line(r) == ("Error: unknown dataset 'cifar'; use one of digits, digits-image, digits16, dvsgesture, "
                              "mnist1d, nmnist, shd, or pass --data FILE (.npz / HDF5 with x_train, y_train, x_test, y_test)")


def test_codebook_larger_than_the_weight_grid(tmp_toml, tmp_path):
    path = tmp_toml('name = "big"\n[limits]\nweight_bits = 8\nunique_weights = 300\n', "big.toml")
    r = run("--target-file", str(path), "--dataset", "digits", "--out", str(tmp_path / "o"))
    assert _error_line(r) == (f"Error: {path}: limits.unique_weights 300 exceeds the 255 non-zero values a 8-bit "
                              "weight holds; lower it or raise weight_bits")


def test_codebook_larger_than_the_grid_from_targets_path(tmp_toml, tmp_path, plugin_env):
    path = tmp_toml('name = "big"\n[limits]\nweight_bits = 8\nunique_weights = 300\n', "specs/big.toml")
    plugin_env(SPIKEFIT_TARGETS_PATH=str(path.parent))
    r = run("--target", "big", "--dataset", "digits", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2
    warning, error = [ln for ln in r.output.splitlines() if ln.strip()]
    assert warning == (f"Warning: skipped target file (SPIKEFIT_TARGETS_PATH): {path}: limits.unique_weights 300 "
                       "exceeds the 255 non-zero values a 8-bit weight holds; lower it or raise weight_bits")
    assert error.startswith("Error: unknown target 'big'")


def test_init_model_the_trainer_cannot_train(tmp_path):
    branch = N.Network({n.name: n for n in [
        N.Input("in", (64,)), N.Dense("a", np.full((10, 64), 0.1)), N.Neurons("p", (10,)),
        N.Dense("b", np.full((10, 64), 0.1)), N.Neurons("q", (10,)), N.Output("out", (10,))]},
        [("in", "a"), ("a", "p"), ("in", "b"), ("b", "q"), ("p", "out")])
    write_nir(branch, tmp_path / "branch.nir")
    r = run("--target", "truenorth", "--dataset", "digits", "--init", str(tmp_path / "branch.nir"),
            "--out", str(tmp_path / "o"))
    assert _error_line(r) == ("Error: node 'in' has inputs [] and outputs ['a', 'b']; the trainer supports a single "
                              "chain (no branches or merges)")


def test_existing_output_directory_needs_force(tmp_path):
    (tmp_path / "o").mkdir()
    r = run("--target", "truenorth", "--dataset", "digits", "--out", str(tmp_path / "o"))
    assert _error_line(r) == (f"Error: output directory '{tmp_path / 'o'}' exists; pass --force to overwrite it or "
                              "--resume to continue its fit")


def test_corrupt_checkpoint_on_resume(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "checkpoint.pt").write_text("garbage")
    r = run("--target", "truenorth", "--dataset", "digits", "--out", str(tmp_path / "o"), "--resume")
    line = _error_line(r)
    assert line.startswith(f"Error: checkpoint '{tmp_path / 'o' / 'checkpoint.pt'}' is corrupt (")
    assert line.endswith("); delete it or run without --resume")


def test_bad_epochs_and_target_options(tmp_path):
    r = run("--target", "truenorth", "--dataset", "digits", "--out", str(tmp_path / "o"), "--epochs", "3,x")
    assert _error_line(r) == ("Error: --epochs '3,x' must be up to four non-negative integers W[,C[,P[,F]]] "
                              "(warm-up, CAT, per pruning round, fine-tune), e.g. 20,10,3,5")
    r = run("--dataset", "digits", "--out", str(tmp_path / "o"))
    assert _error_line(r) == "Error: give exactly one of --target NAME or --target-file PATH"


def test_fit_as_a_real_command(tmp_toml, tmp_path):
    path = tmp_toml(TINY_TOML, "tiny.toml")
    out = tmp_path / "fit"
    exe = Path(sys.executable).with_name("spikefit")
    cmd = [str(exe), "fit", "--target-file", str(path), "--dataset", "digits", "--out", str(out),
           "--epochs", "2,1,1,1", "--steps", "8", "--quiet", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["target"] == "tinychip" and data["accuracy"]["deployed"] > 0.5
    assert {p.name for p in out.iterdir()} >= {"model.nir", "checkpoint.pt", "report.json", "report.md"}
    # finished fit: --resume re-reads the checkpoint and rewrites the same report
    r = run("--target-file", str(path), "--dataset", "digits", "--out", str(out), "--resume", "--quiet", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["accuracy"] == data["accuracy"]
    # human output: the report and where it was written
    r = run("--target-file", str(path), "--dataset", "digits", "--out", str(out), "--force", "--quiet",
            "--epochs", "1,0,0,0", "--steps", "4")
    assert r.exit_code == 0, r.output
    assert "# Fit of `digits` to `tinychip`" in r.output and f"Wrote {out / 'model.nir'}" in r.output


def test_ctrl_c_leaves_a_checkpoint_and_resume_finishes(tmp_toml, tmp_path):
    """A real SIGINT during training: one line, exit 130, and --resume completes the fit."""
    import signal
    import time

    path = tmp_toml(TINY_TOML, "tiny.toml")
    out = tmp_path / "fit"
    exe = str(Path(sys.executable).with_name("spikefit"))
    args = ["fit", "--target-file", str(path), "--dataset", "digits", "--out", str(out), "--epochs", "15,1,0,1",
            "--steps", "8", "--quiet"]
    # SIGINT at its default in the child: a job started in the background inherits it ignored
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # inside the epochs
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"Interrupted: checkpoint kept in {out / 'checkpoint.pt'}; continue with "
                                            "the same command plus --resume")
    assert not (out / "model.nir").exists()
    done = subprocess.run([exe, *args, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] and (out / "model.nir").is_file()


PER_CORE = """
name = "duo"
[limits]
cores = 2
neurons_per_core = {npc}
fan_in = 32
weight_bits = 6
unique_weights = 8
unique_weights_scope = "core"
[neuron]
models = ["lif"]
[core]
share_layers = {share}
"""


def test_a_per_core_codebook_chip_with_shared_cores_fits(tmp_toml, tmp_path):
    """Layers that share a core share its codebook: the fit meets unique_weights per core on the
    placement verify checks (it used to learn one codebook per layer and fail with 15 of 8)."""
    path = tmp_toml(PER_CORE.format(npc=128, share="true"), "duo.toml")
    out = tmp_path / "o"
    r = run("--target-file", str(path), "--dataset", "digits", "--out", str(out), "--epochs", "2,1,1,1",
            "--steps", "8", "--quiet", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    row = next(x for x in report["fit"]["rows"] if x["name"] == "unique_weights (per core)")
    assert row["ok"] and row["usage"] <= 8
    books = report["codebooks"]
    assert books["fc1"]["codebook"] == books["fc2"]["codebook"]           # one codebook per core, both layers
    assert report["usage"]["cores_used"] == report["fit"]["cores"]["cores"]


def test_an_impossible_chip_stops_before_training_with_exit_1(tmp_toml, tmp_path):
    path = tmp_toml(PER_CORE.format(npc=4, share="true"), "tiny.toml")   # 8 neurons; 1 hidden + 10 outputs need 3 cores
    r = run("--target-file", str(path), "--dataset", "digits", "--out", str(tmp_path / "o"), "--quiet")
    assert r.exit_code == 1, r.output
    assert ("Does not fit: target 'duo' cannot hold this network even pruned to one neuron per hidden layer and one "
            "synapse per neuron: cores needs 3 of 2 (the packing needs 3 cores, the target has 2)") in r.output
    assert not (tmp_path / "o" / "model.nir").exists()
