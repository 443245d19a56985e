"""`spikefit verify` on NIR files written with nir.write, and `spikefit bench verify`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
from click.testing import CliRunner

from spikefit.cli import cli

SPIKEFIT = Path(sys.executable).parent / "spikefit"


def write_model(path: Path, n_values: int, tau: float = 0.01) -> Path:
    """in (8) -> fc1 -> lif1 (6) -> out; neuron 3 of lif1 has ``n_values`` distinct non-zero weights."""
    w = np.zeros((6, 8))
    w[3, :n_values] = np.arange(1, n_values + 1)
    w[0, :4] = [1, 1, 2, 2]
    nodes = {
        "input": nir.Input(np.array([8])),
        "fc1": nir.Affine(w, np.zeros(6)),
        "lif1": nir.LIF(tau=np.full(6, tau), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6)),
        "output": nir.Output(np.array([6])),
    }
    nir.write(path, nir.NIRGraph(nodes, [("input", "fc1"), ("fc1", "lif1"), ("lif1", "output")]))
    return path


def rows_of(output: str) -> dict[str, str]:
    """Constraint name -> its table line."""
    return {line.split("  ")[0].strip(): line for line in output.splitlines() if "  " in line}


def test_five_distinct_weights_in_one_neuron_do_not_fit_truenorth(tmp_path):
    result = CliRunner().invoke(cli, ["verify", "--target", "truenorth", str(write_model(tmp_path / "m.nir", 5))])
    assert result.exit_code == 1, result.output
    line = rows_of(result.output)["unique_weights (per neuron)"]
    assert line.split()[3:7] == ["5", "4", "FAIL", "layer"] and line.endswith("layer lif1 neuron 3")
    verdict = result.output.rstrip().splitlines()[-1]
    assert verdict.startswith("DOES NOT FIT truenorth: 1 of ") and verdict.endswith("exceeded (unique_weights (per neuron))")


def test_four_distinct_weights_fit_the_unique_weights_row(tmp_path):
    result = CliRunner().invoke(cli, ["verify", "--target", "truenorth", str(write_model(tmp_path / "m.nir", 4))])
    line = rows_of(result.output)["unique_weights (per neuron)"]
    assert line.split()[3:6] == ["4", "4", "ok"]
    assert result.exit_code == 0, result.output
    verdict = result.output.rstrip().splitlines()[-1]
    assert verdict.startswith("FITS truenorth: all ") and verdict.endswith("constraints met on 1 core")


def test_json_report(tmp_path):
    result = CliRunner().invoke(cli, ["verify", "-t", "truenorth", "--json", str(write_model(tmp_path / "m.nir", 5))])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["target"] == "truenorth"
    row = next(r for r in report["rows"] if r["name"] == "unique_weights (per neuron)")
    assert (row["usage"], row["limit"], row["ok"], row["worst"]) == (5, 4, False, "layer lif1 neuron 3")
    assert report["populations"][0]["name"] == "lif1" and report["cores"]["cores"] == 1


def test_target_from_a_toml_file(tmp_path, tmp_toml):
    spec = tmp_toml("""
        name = "tiny"
        [limits]
        neurons_per_core = 4
        fan_in = 4
    """)
    result = CliRunner().invoke(cli, ["verify", "--target", str(spec), str(write_model(tmp_path / "m.nir", 5))])
    assert result.exit_code == 1
    rows = rows_of(result.output)
    assert rows["fan_in"].split()[1:4] == ["5", "4", "FAIL"]
    assert "cores: 2 used" in result.output


def test_dt_option_reaches_the_reader(tmp_path):
    """LIF weights are read with gain dt/tau, so the weight grid follows --dt."""
    model = str(write_model(tmp_path / "m.nir", 3))      # tau = 10 ms, integer weights
    scale = lambda *dt: json.loads(CliRunner().invoke(cli, ["verify", "-t", "truenorth", "--json", *dt, model]
                                                      ).output)["layers"][0]["scale"]
    assert scale() == pytest.approx(0.1)                 # default step 1 ms
    assert scale("--dt", "2e-3") == pytest.approx(0.2)


@pytest.mark.parametrize("args,message", [
    (["--target", "truenorht"], "unknown target 'truenorht'; did you mean 'truenorth'?"),
    (["--target", "truenorth", "--dt", "-1"], "Invalid value for '--dt': '-1' is not in the range 0 < dt <= 3600"),
])
def test_bad_target_or_dt_exits_2(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["verify", *args, str(write_model(tmp_path / "m.nir", 4))])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and message in result.output


def test_missing_or_corrupt_model_exits_2(tmp_path):
    missing = CliRunner().invoke(cli, ["verify", "--target", "truenorth", str(tmp_path / "none.nir")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"not a NIR file at all")
    corrupt = CliRunner().invoke(cli, ["verify", "--target", "truenorth", str(junk)])
    assert corrupt.exit_code == 2 and "is not an HDF5 NIR file" in corrupt.output


def test_real_subprocess_exit_codes(tmp_path):
    model = write_model(tmp_path / "m.nir", 5)
    result = subprocess.run([str(SPIKEFIT), "verify", "--target", "truenorth", str(model)], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "layer lif1 neuron 3" in result.stdout and result.stderr == ""
    result = subprocess.run([str(SPIKEFIT), "verify", "--target", "nochip", str(model)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("Error: unknown target 'nochip'")


def test_bench_verify_reports_every_size(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "verify", "--sizes", "2000,4000", "--fan-in", "10", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [r["neurons"] for r in out["results"]] == [2000, 4000]
    assert [r["synapses"] for r in out["results"]] == [20000, 40000]
    assert all(r["fits"] and r["verify_s"] > 0 for r in out["results"])
    text = CliRunner().invoke(cli, ["bench", "verify", "--sizes", "2000", "--fan-in", "10"])
    assert text.exit_code == 0 and "ns/synapse" in text.output
    bad = CliRunner().invoke(cli, ["bench", "verify", "--sizes", "100", "--fan-in", "10"])
    assert bad.exit_code == 2 and "fan-in 10 needs at least 20" in bad.output
