"""``spikefit bench compression``: grid plan, target checks, and a tiny real run through the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spikefit.bench.compression import Cell, check_targets, plan, summarize
from spikefit.cli import cli
from clitools import assert_one_line_error

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# One quantizer, one pruner, the float reference: tiny data, one epoch per stage, 1 pruning round.
TINY = ["bench", "compression", "--dataset", "digits", "--seeds", "1", "--methods", "float,cat,fsc,magnitude",
        "--M", "4", "--sparsity", "0,0.5", "--no-neuron-row", "--preset", "demo", "--epochs", "1",
        "--train-limit", "96", "--test-limit", "60", "--timing-steps", "3", "--quiet"]


def test_plan_shares_float_and_dense_cells():
    cells = plan(["float", "cat", "uniform", "ternary", "fsc", "magnitude"], [3, 4], [0.0, 0.5], range(2))
    per_seed = [c for c in cells if c.seed == 0]
    assert Cell("float", None, 0.0, "layer", 0) in per_seed
    assert Cell("uniform", 3, 0.0, "layer", 0) not in per_seed        # 3 values: not a whole number of bits
    assert Cell("fsc", 4, 0.0, "layer", 0) not in per_seed            # the dense point is the cat cell
    assert Cell("magnitude", 4, 0.5, "layer", 0) in per_seed
    assert cells[0] == Cell("cat", 4, 0.0, "neuron", 0)               # heaviest first
    # float, cat x2, uniform x1, ternary, fsc 0.5, magnitude 0.5, cat per neuron
    assert len(per_seed) == 8 and len(cells) == 16


def test_plan_adds_baselines_and_the_equal_synapse_reference():
    cells = plan(["cat", "lsq", "dkm", "kmeans-qat", "gmp", "snip", "rewire", "fsc-point", "dense"], [3, 4],
                 [0.0, 0.5, 0.9], range(1), neuron_row=False)
    assert Cell("lsq", 3, 0.0, "layer", 0) not in cells                 # LSQ's levels are ±1..±M/2
    assert Cell("lsq", 4, 0.0, "layer", 0) in cells and Cell("dkm", 3, 0.0, "layer", 0) in cells
    assert Cell("dense", 4, 0.9, "layer", 0) in cells and Cell("dense", 4, 0.0, "layer", 0) not in cells
    assert Cell("gmp", 4, 0.0, "layer", 0) not in cells                 # the dense point is the cat cell
    # cat x2, lsq x1, dkm x2, kmeans-qat x2, 4 pruners x 2 levels, dense x 2
    assert len(cells) == 2 + 1 + 2 + 2 + 8 + 2


def test_best_baseline_and_capacity_targets():
    def res(method, M, acc, sparsity=0.0):
        return {"method": method, "M": M, "sparsity": sparsity, "scope": "layer", "seed": 0, "accuracy": acc,
                "float_accuracy": 0.9, "step_time": 1.0, "float_step_time": 1.0, "measured_sparsity": sparsity,
                "max_distinct": M, "seconds": 1.0, "synapses": 100}

    summary = summarize([res("cat", 4, 0.80), res("lsq", 4, 0.785), res("dkm", 4, 0.75), res("fsc", 4, 0.60, 0.9),
                         res("gmp", 4, 0.59, 0.9), res("snip", 4, 0.50, 0.9), res("dense", 4, 0.62, 0.9)])
    got = {t["target"]: t for t in check_targets(summary, None, sparsities=[0.9])}
    assert got["CAT M=4 per layer >= best quantization baseline (lsq) + 1 pp"]["margin"] == pytest.approx(0.5)
    assert got["FSC at 90 % sparsity >= best pruning baseline (gmp) + 2 pp"]["margin"] == pytest.approx(-1.0)
    assert got["FSC at 90 % sparsity >= dense network of equal synapses"]["margin"] == pytest.approx(-2.0)


def test_check_targets_margins():
    def res(method, M, acc, sparsity=0.0, scope="layer"):
        return {"method": method, "M": M, "sparsity": sparsity, "scope": scope, "seed": 0, "accuracy": acc,
                "float_accuracy": 0.9, "step_time": 1.0, "float_step_time": 1.0, "measured_sparsity": sparsity,
                "max_distinct": M, "seconds": 1.0}

    summary = summarize([res("float", None, 0.90), res("cat", 4, 0.895), res("kmeans", 4, 0.80),
                         res("uniform", 4, 0.89), res("fsc", 4, 0.86, 0.9), res("magnitude", 4, 0.87, 0.9)])
    got = {t["target"]: t for t in check_targets(summary, {"ratio": 1.4}, sparsities=[0.9])}
    assert got["CAT M=4 per layer >= float - 1.0 pp"]["met"]
    assert got["CAT M=4 per layer >= float - 1.0 pp"]["margin"] == pytest.approx(0.5)
    assert got["CAT M=4 per layer >= uniform 2-bit QAT + 1 pp"]["margin"] == pytest.approx(-0.5)
    assert not got["FSC >= magnitude pruning at 90 % sparsity"]["met"]
    assert got["FSC at 90 % sparsity >= dense CAT - 3 pp"]["margin"] == pytest.approx(-0.5)
    assert got["CAT step <= 1.3 x float step"]["margin"] == pytest.approx(-0.1)
    assert "CAT M=4 per neuron >= float - 2.0 pp" not in got  # its cell did not run


def test_cli_tiny_run_tables_plots_and_jobs(tmp_path):
    runner = CliRunner()
    r1 = runner.invoke(cli, TINY + ["--json", "--jobs", "1", "--out", str(tmp_path / "one")])
    assert r1.exit_code == 0, r1.output
    rep = json.loads(r1.output)
    assert [(r["method"], r["M"], r["sparsity"]) for r in rep["results"]] == [
        ("float", None, 0.0), ("cat", 4, 0.0), ("fsc", 4, 0.5), ("magnitude", 4, 0.5)]
    for r in rep["results"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["step_time"] > 0
    assert rep["results"][2]["measured_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rep["results"][1]["max_distinct"] <= 4
    assert rep["speed"]["ratio"] > 0 and rep["speed"]["steps"] == 3
    names = {t["target"] for t in rep["targets"]}
    assert {"CAT M=4 per layer >= float - 1.0 pp", "FSC >= magnitude pruning at 50 % sparsity",
            "CAT step <= 1.3 x float step"} <= names
    out = tmp_path / "one"
    assert sorted(p.name for p in out.iterdir()) == sorted(rep["files"]) == sorted([
        "compression_digits.md", "compression_digits.json", "digits_accuracy_vs_M.png",
        "digits_accuracy_vs_sparsity.png", "digits_accuracy_vs_energy.png", "digits_synapses_magnitude.png"])
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    md = (out / "compression_digits.md").read_text()
    # Energy per inference per chip: the cell's emulator counts times each chip's published constants.
    assert rep["energy_targets"] == ["loihi", "spinnaker2", "truenorth"]
    for row in rep["summary"]:
        act = next(r["activity"] for r in rep["results"] if r["method"] == row["method"] and r["M"] == row["M"]
                   and r["sparsity"] == row["sparsity"])
        assert row["synops_mean"] == act["synops"] > 0 and act["samples"] == 60
        assert row["energy_uj"]["truenorth"] == pytest.approx(act["synops"] * 26e-6)  # all-in 26 pJ per event
        assert row["energy_uj"]["loihi"] == pytest.approx(
            (23.6 * act["synops"] + 52.0 * act["neuron_updates"] + 1.7 * act["messages"]["loihi"]) * 1e-6)
    dense, pruned = (next(r for r in rep["summary"] if r["method"] == m) for m in ("cat", "fsc"))
    assert pruned["synops_mean"] < dense["synops_mean"]  # 50 % fewer synapses, fewer operations
    assert "### Energy per inference (uJ" in md and "| loihi | spinnaker2 | truenorth |" in md
    assert "| method | M=4 |" in md and "| pruning | 0 % | 50 % |" in md and "### Targets" in md
    again = runner.invoke(cli, ["bench", "compression", "--from-json", str(out / "compression_digits.json"),
                                "--out", str(tmp_path / "again")])
    assert again.exit_code == 0 and (tmp_path / "again" / "compression_digits.md").read_text() == md

    # Two worker processes give the same accuracies as one process (the installed command, for real).
    exe = Path(sys.executable).with_name("spikefit")
    r2 = subprocess.run([str(exe), *TINY, "--json", "--jobs", "2", "--timing-steps", "0"], capture_output=True,
                        text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr
    two = json.loads(r2.stdout)
    keys = ("method", "M", "sparsity", "seed", "accuracy", "float_accuracy", "measured_sparsity", "max_distinct")
    assert [{k: r[k] for k in keys} for r in two["results"]] == [{k: r[k] for k in keys} for r in rep["results"]]
    assert two["speed"] is None and "CAT step <= 1.3 x float step" not in {t["target"] for t in two["targets"]}


def test_cli_text_table():
    r = CliRunner().invoke(cli, TINY + ["--timing-steps", "2", "--allocation", "layer"])
    assert r.exit_code == 0, r.output
    assert "--allocation layer " in r.output and "pruning allocation layer." in r.output
    assert "| float (no quantization) | " in r.output and "| fsc | " in r.output and "| magnitude | " in r.output
    assert "Training speed: CAT (M=4) step" in r.output and "### Every group" in r.output


def test_cache_reuses_finished_cells(tmp_path):
    cache = tmp_path / "cells.jsonl"
    args = TINY + ["--methods", "float", "--timing-steps", "0", "--json", "--cache", str(cache)]
    first = json.loads(CliRunner().invoke(cli, args).output)
    cache.write_text(cache.read_text() + '{"key": "cut sho')  # a run killed mid-write
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    second = json.loads(again.output)
    assert second["results"][0]["seconds"] == first["results"][0]["seconds"]  # read back, not re-run


def test_bad_options_are_one_line_errors(tmp_path):
    bad = tmp_path / "other.json"
    bad.write_text('{"targets": []}')
    r = CliRunner().invoke(cli, ["bench", "compression", "--from-json", str(bad)])
    assert r.exit_code == 2 and "is not a report of 'spikefit bench compression'" in r.output
    r = CliRunner().invoke(cli, ["bench", "compression", "--methods", "cat,bogus"])
    assert r.exit_code == 2 and "unknown method 'bogus'" in r.output
    r = CliRunner().invoke(cli, ["bench", "compression", "--sparsity", "0,1.5"])
    assert r.exit_code == 2 and "every sparsity must lie in [0, 1)" in r.output


def test_device_option_passes_through_and_refuses_unknown_devices():
    runner = CliRunner()
    r = runner.invoke(cli, TINY[:-1] + ["--methods", "float", "--device", "tpu9", "--timing-steps", "0"])
    assert r.exit_code == 2 and "--device 'tpu9' is not a device" in r.output
    r = runner.invoke(cli, TINY + ["--methods", "float", "--device", "cpu", "--timing-steps", "0", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["config"]["device"] == "cpu" and "--device" not in rep["command"]


def test_hidden_widths_change_the_network_and_name_the_files(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, TINY + ["--methods", "float,dense", "--M", "4", "--timing-steps", "0", "--hidden", "24",
                                   "--energy-targets", "none", "--json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["config"]["hidden"] == [24] and rep["command"].endswith("--hidden 24")
    assert {tuple(c["hidden"]) for c in rep["results"] if c["method"] == "float"} == {(24,)}
    dense = next(c for c in rep["results"] if c["method"] == "dense")
    assert dense["hidden"][0] < 24                  # as many synapses as 24 wide at 50 % sparsity
    assert (tmp_path / "compression_digits-h24.json").exists() and (tmp_path / "digits-h24_accuracy_vs_M.png").exists()
    bad = runner.invoke(cli, TINY + ["--hidden", "0,x"])
    assert bad.exit_code == 2 and "'0,x' is not a comma-separated list of positive layer widths, e.g. 1024" in bad.output


def test_a_users_data_file_runs_the_grid_under_its_own_name(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.random((3, 20))
    y = rng.integers(0, 3, 600)
    x = np.clip(centers[y] + 0.1 * rng.standard_normal((600, 20)), 0, 1).astype(np.float32)
    path = tmp_path / "sensors.npz"
    np.savez(path, x_train=x[:520], y_train=y[:520], x_test=x[520:], y_test=y[520:])
    args = ["bench", "compression", "--data", str(path), "--seeds", "1", "--methods", "float,cat,fsc", "--M", "4",
            "--sparsity", "0,0.5", "--no-neuron-row", "--preset", "demo", "--epochs", "1", "--timing-steps", "2",
            "--train-limit", "160", "--energy-targets", "none", "--quiet", "--json", "--out", str(tmp_path / "out")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["dataset"] == "sensors" and {c["dataset"] for c in rep["results"]} == {"sensors"}
    assert rep["command"].startswith(f"spikefit bench compression --data {path} --seeds 1")
    assert rep["data_file"]["layout"] == "static" and len(rep["data_file"]["sha256"]) == 16
    assert [(c["method"], c["hidden"]) for c in rep["results"]] == [("float", [128]), ("cat", [128]), ("fsc", [128])]
    assert rep["results"][2]["measured_sparsity"] == pytest.approx(0.5, abs=0.01) and rep["speed"]["ratio"] > 0
    assert (tmp_path / "out" / "compression_sensors.json").exists()


def test_data_file_options_are_one_line_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["bench", "compression", "--data", str(tmp_path / "none.npz")])
    assert_one_line_error(r, r"data file '.*none\.npz' does not exist; pass an \.npz or HDF5 file")
    (tmp_path / "d.npz").write_bytes(b"")
    r = runner.invoke(cli, ["bench", "compression", "--dataset", "mnist1d", "--data", str(tmp_path / "d.npz")])
    assert_one_line_error(r, r"pass --dataset mnist1d or --data .*d\.npz, not both")
    r = runner.invoke(cli, ["bench", "compression", "--layout", "sequence"])
    assert_one_line_error(r, r"--layout sequence goes with --data FILE")


def test_a_data_file_too_small_for_the_timing_loop_reports_no_speed(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    x = np.clip(y[:, None] * 0.6 + 0.2 * rng.random((120, 8)), 0, 1).astype(np.float32)
    np.savez(tmp_path / "tiny.npz", x_train=x[:90], y_train=y[:90], x_test=x[90:], y_test=y[90:])
    r = CliRunner().invoke(cli, ["bench", "compression", "--data", str(tmp_path / "tiny.npz"), "--seeds",
                                                 "1", "--methods", "float,cat", "--M", "4", "--sparsity", "0",
                                                 "--no-neuron-row", "--preset", "demo", "--epochs", "1",
                                                 "--timing-steps", "2", "--energy-targets", "none", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["speed"] is None
    assert "no step-time figure: the timing loop cycles over 8 batches of 64 training samples and this dataset " \
           "has 90" in r.stderr
