"""`spikefit export`: any registered format, --target, --dt, --force, and no partial output ever."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nir
import numpy as np

from spikefit import hookimpl
from clitools import SPIKEFIT, assert_one_line_error, invoke
from spikefit.errors import ExportError
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import read_nir, write_nir
from test_nir_io import assert_same_network






def small_net() -> Network:
    rng = np.random.default_rng(0)
    return Network.sequential(Input("in", (4,)), Dense("fc", rng.normal(size=(3, 4))),
                              Neurons("out_pop", (3,), du=0.5, dv=0.25, vth=0.75), Output("out", (3,)), dt=1e-3)


def model_file(tmp_path) -> Path:
    return write_nir(small_net(), tmp_path / "model.nir")


def test_export_nir_to_nir(tmp_path):
    result = invoke("export", "--format", "nir", model_file(tmp_path), "--out", tmp_path / "copy.nir")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {tmp_path / 'copy.nir'} (nir: 1 populations, 3 neurons, dt=0.001 s)"
    assert_same_network(small_net(), read_nir(tmp_path / "copy.nir"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.nir", "model.nir"]  # no temporary left over


def test_target_is_recorded_and_json_reports(tmp_path, tmp_toml):
    free = tmp_toml('name = "free"\n[limits]\nneurons = 100\n')  # a target this float model fits
    result = invoke("export", model_file(tmp_path), "-o", tmp_path / "t.nir", "--target", free, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == {"ok": True, "path": str(tmp_path / "t.nir"), "format": "nir", "target": "free", "fits": True,
                      "dt": 1e-3, "populations": 1, "neurons": 3, "exit_code": 0}
    assert nir.read(tmp_path / "t.nir", type_check=False).metadata["spikefit"]["target"] == "free"


def test_export_for_a_target_the_model_does_not_fit_says_so_and_exits_1(tmp_path):
    result = invoke("export", model_file(tmp_path), "-o", tmp_path / "t.nir", "--target", "loihi2", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["fits"] is False and report["exit_code"] == 1
    assert (tmp_path / "t.nir").exists(), "the export is written all the same"
    assert result.stderr.startswith("Does not fit: the model does not fit target 'loihi2': weight_bits uses ")


def test_dt_option_reads_the_equations_with_that_step(tmp_path):
    result = invoke("export", model_file(tmp_path), "-o", tmp_path / "slow.nir", "--dt", "2e-3")
    assert result.exit_code == 0, result.output
    pop = read_nir(tmp_path / "slow.nir").nodes["out_pop"]
    assert (pop.du, pop.dv) == (1.0, 0.5)  # twice the step: twice the fraction lost per step


def test_existing_output_needs_force(tmp_path):
    model = model_file(tmp_path)
    out = tmp_path / "taken.nir"
    out.write_text("precious")
    assert_one_line_error(invoke("export", model, "--out", out), rf"^Error: output '{re.escape(str(out))}' already exists; "
                                                                 r"pass --force to overwrite it$")
    assert out.read_text() == "precious"
    assert invoke("export", model, "--out", out, "--force").exit_code == 0
    assert_same_network(small_net(), read_nir(out))


def test_bad_inputs_are_one_line_errors(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "nope.nir", "--out", tmp_path / "o.nir"),
                          r"^Error: model file '.*nope.nir' does not exist$")
    (tmp_path / "notes.nir").write_text("hello")
    assert_one_line_error(invoke("export", tmp_path / "notes.nir", "--out", tmp_path / "o.nir"),
                          r"^Error: model file '.*notes.nir' is not an HDF5 NIR file \(no HDF5 signature\)")
    assert_one_line_error(invoke("export", model_file(tmp_path), "--format", "nri", "--out", tmp_path / "o.nir"),
                          r"unknown exporter 'nri'.*nir")
    assert_one_line_error(invoke("export", model_file(tmp_path), "--target", "no-such-chip", "--out", tmp_path / "o.nir"),
                          r"unknown target 'no-such-chip'")
    assert not (tmp_path / "o.nir").exists()


def test_checkpoint_exports_and_verifies_like_its_nir(tmp_path):
    from test_trainer import TINY, tiny_target

    from spikefit.nir_io import read_nir
    from spikefit.trainer import FitConfig, fit

    target = tiny_target()
    fit(None, "digits", target, FitConfig(**TINY), out=tmp_path / "fit", progress=False)
    result = invoke("export", tmp_path / "fit" / "checkpoint.pt", "--out", tmp_path / "ck.nir")
    assert result.exit_code == 0, result.output
    ours, theirs = read_nir(tmp_path / "ck.nir"), read_nir(tmp_path / "fit" / "model.nir")
    assert ours.metadata["steps"] == theirs.metadata["steps"]
    for name, node in theirs.nodes.items():
        if hasattr(node, "weight"):
            w = node.weight.toarray() if hasattr(node.weight, "toarray") else node.weight
            v = ours.nodes[name].weight
            assert np.array_equal(w, v.toarray() if hasattr(v, "toarray") else v), name


def test_corrupt_checkpoint_is_one_line(tmp_path):
    (tmp_path / "run.pt").write_bytes(b"\x80")
    assert_one_line_error(invoke("export", tmp_path / "run.pt", "--out", tmp_path / "o.nir"),
                          r"^Error: checkpoint '.*run.pt' is corrupt \(.*\); use the model.nir of its fit or fit again$")
    assert not (tmp_path / "o.nir").exists()


class HalfWriter:
    """A plugin exporter that writes half a file and then fails, as a crash mid-export would."""

    name = "half"

    def export(self, network, path, target=None):
        Path(path).write_bytes(b"HDF5 but only the first half")
        raise ExportError("the chip's compiler rejected layer 'fc'")


class Plugin:
    @hookimpl
    def register_exporters(self, register):
        register(HalfWriter())


def test_failing_exporter_leaves_no_partial_file(tmp_path, register_plugin):
    register_plugin(Plugin(), "half_writer_plugin")
    model = model_file(tmp_path)
    assert_one_line_error(invoke("export", model, "--format", "half", "--out", tmp_path / "x.bin"),
                          r"^Error: the chip's compiler rejected layer 'fc'$")
    (tmp_path / "keep.bin").write_bytes(b"old export")
    assert_one_line_error(invoke("export", model, "--format", "half", "--out", tmp_path / "keep.bin", "--force"),
                          r"compiler rejected")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin", "model.nir"]
    assert (tmp_path / "keep.bin").read_bytes() == b"old export"


def test_installed_command_exports(tmp_path):
    done = subprocess.run([str(SPIKEFIT), "export", str(model_file(tmp_path)), "--out", str(tmp_path / "sub" / "c.nir")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same_network(small_net(), read_nir(tmp_path / "sub" / "c.nir"))
    again = subprocess.run([str(SPIKEFIT), "export", str(model_file(tmp_path)), "--out", str(tmp_path / "sub" / "c.nir")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.strip().endswith("already exists; pass --force to overwrite it")
