"""The ``lava`` exporter: the folder it writes, loading it as Lava processes, running them (in this
process, and as a standalone script without spikefit), errors, and the CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spikefit import plugins
from spikefit.cli import cli
from spikefit.datasets import encoded_split
from spikefit.emulator import EmulatorBackend
from spikefit.errors import ExportError, ModelError
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output
from spikefit.nir_io import write_nir
from spikefit_lava import load_processes, shim
from spikefit_lava.backend import LavaBackend
from spikefit_lava.exporter import LavaExporter

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "spikefit-lava" / "spikefit_lava"
STEPS, SAMPLES = 12, 20


def conv_mlp(seed: int = 0) -> Network:
    """1x8x8 images -> conv (2 channels) -> flatten -> dense 10: exercises Conv, the (x, y, c) layout
    and a Dense fed by an image population."""
    rng = np.random.default_rng(seed)
    c1 = Conv2d("c1", rng.normal(0.1, 0.5, (2, 1, 3, 3)), (1, 8, 8), padding=(1, 1))
    return Network.sequential(
        Input("in", (1, 8, 8)), c1, Neurons("h1", c1.output_shape, du=1.0, dv=0.1, vth=1.0, bias=0.05),
        Flatten("flat", c1.output_shape), Dense("fc", rng.normal(0.02, 0.25, (10, 128))),
        Neurons("out", (10,), du=0.5, dv=0.1, vth=1.0), Output("o", (10,)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "net.lava"
    net = conv_mlp()
    assert LavaExporter().export(net, path, None) == path
    return net, path


@pytest.fixture(scope="module")
def digits():
    x, _ = encoded_split("digits", "test", steps=STEPS, limit=SAMPLES)
    return x


def test_export_writes_a_self_contained_folder(exported):
    net, path = exported
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "build.py", "lava_shim.py", "network.json", "network.npz"]
    assert (path / "build.py").read_text() == (PLUGIN / "build.py").read_text()
    assert (path / "lava_shim.py").read_text() == (PLUGIN / "shim.py").read_text()
    doc = json.loads((path / "network.json").read_text())
    assert doc["format"] == "spikefit-lava/1" and sorted(doc["modes"]) == ["fixed_pt", "floating_pt"]
    fixed = doc["modes"]["fixed_pt"]
    assert [(p["name"], p["lava_shape"], p["depth"]) for p in fixed["populations"]] == [("h1", [8, 8, 2], 1), ("out", [10], 2)]
    assert [(c["name"], c["kind"]) for c in fixed["connections"]] == [("c1", "conv2d"), ("fc", "dense")]
    with np.load(path / "network.npz") as z:
        conv_w = z[fixed["connections"][0]["weight"]]
        fc_w = z[fixed["connections"][1]["weight"]]
        float_fc = z[doc["modes"]["floating_pt"]["connections"][1]["weight"]]
    assert conv_w.shape == (2, 3, 3, 1) and conv_w.dtype == np.int32       # (c_out, kw, kh, c_in)
    assert fc_w.dtype == np.int32 and np.abs(fc_w).max() <= 256
    # the dense layer's columns follow Lava's (x, y, c) flattening of the conv population
    perm = np.arange(128).reshape(2, 8, 8).transpose(2, 1, 0).reshape(-1)
    assert np.array_equal(float_fc, net.nodes["fc"].weight[:, perm])
    assert "depth 1" in (path / "README.md").read_text()


def test_loaded_processes_run_on_lava_and_equal_the_backend(exported, digits):
    net, path = exported
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    lnet = load_processes(path, select="fixed_pt", window=STEPS)
    assert type(lnet.populations["h1"]).__name__ == "LIFReset" and type(lnet.connections["c1"]).__name__ == "Conv"
    assert lnet.input_shape == (8, 8, 1) and lnet.depth == {"h1": 1, "out": 2}
    # a user's own source and sink: the samples back to back in Lava's (x, y, c) layout, then
    # max_depth empty steps; the output population's sample k starts at sink index k * T + depth.
    steps = SAMPLES * STEPS + lnet.max_depth
    frames = np.zeros((steps, 8, 8, 1), dtype=np.int32)
    frames[:SAMPLES * STEPS] = digits.transpose(1, 0, 2).reshape(-1, 1, 8, 8).transpose(0, 3, 2, 1)
    source = Source(data=np.moveaxis(frames, 0, -1))
    sink = Sink(shape=(10,), buffer=steps)
    lnet.connect_input(source.s_out)
    lnet.populations["out"].s_out.connect(sink.a_in)
    try:
        source.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        data = sink.data.get()
    finally:
        source.stop()
    mine = data[:, 2:2 + SAMPLES * STEPS].T.reshape(SAMPLES, STEPS, 10).transpose(1, 0, 2) != 0
    backend = LavaBackend().run(net, digits)
    assert np.array_equal(mine, backend["out"])
    assert np.array_equal(backend["out"], EmulatorBackend().run(net, digits)["out"])
    assert 0.02 < mine.mean() < 0.9


def test_exported_build_py_runs_without_spikefit(exported, digits, tmp_path):
    net, path = exported
    np.save(tmp_path / "x.npy", digits)
    # spikefit and spikefit_lava unimportable: build.py must use its own lava_shim.py
    code = ("import sys, runpy; sys.modules['spikefit'] = sys.modules['spikefit_lava'] = None; "
            f"sys.argv = ['build.py', {str(path)!r}, {str(tmp_path / 'x.npy')!r}, 'fixed_pt']; "
            f"runpy.run_path({str(path / 'build.py')!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert re.match(r"^h1: \d+ spikes, out: \d+ spikes -> ", out.stdout)
    emu = EmulatorBackend().run(net, digits)
    with np.load(path / "spikes.npz") as got:
        assert all(np.array_equal(got[k], emu[k]) for k in emu)


def test_build_reads_only_exports(tmp_path):
    with pytest.raises(ModelError, match=r"is not a spikefit Lava export \(network.json and network.npz are missing\)"):
        load_processes(tmp_path)


def test_export_refuses_what_lava_cannot_express(tmp_path):
    rng = np.random.default_rng(0)
    net = Network.sequential(Input("in", (4,)), Dense("fc", rng.normal(size=(3, 4)), bias=np.ones(3)),
                             Neurons("h", (3,), du=0.5), Output("o", (3,)))
    with pytest.raises(ExportError, match=r"^layer 'h': connection 'fc' has a bias, which Lava adds to v only, so it "
                                          r"needs du = 1 \(got du 0.5\)"):
        LavaExporter().export(net, tmp_path / "x", None)
    assert not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match=r"exists and is not a folder"):
        LavaExporter().export(conv_mlp(), tmp_path / "file", None)


def test_export_without_lava_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lava", None)
    with pytest.raises(ExportError, match=r"^Lava is not installed; install it with `make install` \(lava-nc 0.10.0 "
                                          r"with the spikefit-lava plugin: see plugins/spikefit-lava/README.md\)$"):
        LavaExporter().export(conv_mlp(), tmp_path / "x", None)
    assert shim.installed()


def test_cli_exports_and_runs_on_lava(tmp_path):
    rng = np.random.default_rng(1)
    net = Network.sequential(Input("in", (64,)), Dense("fc1", rng.normal(0.05, 0.3, (16, 64))),
                             Neurons("h", (16,), du=1.0, dv=0.1, vth=1.0), Dense("fc2", rng.normal(0.1, 0.4, (10, 16))),
                             Neurons("out", (10,), du=1.0, dv=0.1, vth=1.0), Output("o", (10,)))
    model = tmp_path / "m.nir"
    write_nir(net, model)
    plugins.load_plugins()
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(model), "--format", "lava", "--out", str(tmp_path / "m.lava"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["format"] == "lava" and (tmp_path / "m.lava" / "network.npz").is_file()
    res = runner.invoke(cli, ["run", str(model), "--dataset", "digits", "--samples", "20", "--steps", "10",
                              "--compare", "emulator,lava", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["agreement"] == {"lava": 1.0}
    assert report["results"]["lava"]["samples"] == 20 and report["results"]["lava"]["spikes"]["out"] > 0
