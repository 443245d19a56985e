"""Exporter ``xylo`` (Rockpool's specification as .npz) and backend ``xylosim`` (XyloSim): round trip,
the chip's limits on spikes, refusals with the rule and layer named."""
from __future__ import annotations

import json

import numpy as np
import pytest

import spikefit
from spikefit.errors import BackendError, ExportError
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.plugins import get_backend, get_exporter
from spikefit_xylo.backend import XyloSimBackend
from spikefit_xylo.corpus import layered
from spikefit_xylo.exporter import XyloExporter
from spikefit_xylo.specification import load_specification, specification

from clitools import SPIKEFIT, assert_one_line_error, invoke


def small() -> Network:
    net = layered(hidden=(24, 16), seed=3, recurrent=(0,))
    for p in net.populations():
        p.vth = 20.0
    return net


def spikes(seed=0, t=20, b=3, n=16, p=0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, b, n)) < p).astype(np.float32)


def test_the_plugin_registers_the_exporter_and_the_backend():
    assert isinstance(get_exporter("xylo"), XyloExporter)
    assert isinstance(get_backend("xylosim"), XyloSimBackend)


def test_export_writes_rockpools_specification_and_xylosim_runs_it_as_the_backend_does(tmp_path):
    from spikefit_xylo.vendor_import import load

    net = small()
    path = XyloExporter().export(net, tmp_path / "net.xylo", None)
    assert path == tmp_path / "net.xylo"                     # the name as given, no ".npz" added
    spec = load_specification(path)
    assert spec.versions == {"rockpool": "3.1.0", "xylosim": "0.1.3"}
    assert spec.populations["h1"] == {"layer": "hidden", "ids": list(range(24, 40))}
    assert spec.populations["o"] == {"layer": "output", "ids": list(range(8))}
    assert np.array_equal(spec.arrays["weights_in"][:, :24], net.nodes["fc0"].weight.T)
    x = spikes()
    sim = load().XyloSim.from_specification(**spec.kwargs())
    got = XyloSimBackend().run(net, x)
    for b in range(x.shape[1]):
        sim.reset_state()
        out, _, rec = sim.evolve(x[:, b].astype(int), record=True)
        assert np.array_equal(got["o"][:, b], np.asarray(out))
        assert np.array_equal(got["h0"][:, b], np.asarray(rec["Spikes"])[:, :24])
    assert got["o"].max() == 1 and got["h0"].max() > 1      # outputs spike once a step, hidden neurons more
    assert got["o"].sum() > 0


def test_no_input_and_no_bias_means_no_spikes():
    out = XyloSimBackend().run(small(), np.zeros((10, 2, 16)))
    assert {k: v.shape for k, v in out.items()} == {"h0": (10, 2, 24), "h1": (10, 2, 16), "o": (10, 2, 8)}
    assert not any(v.any() for v in out.values())


def test_what_xylo_cannot_run_is_refused_with_the_rule_and_layer_named():
    net = layered(seed=23, out_recurrent=True)
    with pytest.raises(ExportError, match=r"xylo-audio2 cannot run this network: rule xylo.output_not_recurrent "
                                          r"uses 1 of 0 at layer o: output population 'o' feeds itself"):
        XyloExporter().export(net, "unused.xylo", None)
    with pytest.raises(BackendError, match="rule xylo.output_not_recurrent"):
        XyloSimBackend().run(net, spikes())
    with pytest.raises(ExportError, match="the xylo format is Xylo Audio 2's; target 'loihi2' is another chip"):
        specification(small(), spikefit.get_target("loihi2"))
    with pytest.raises(BackendError, match=r"input events per step must lie in 0..15"):
        XyloSimBackend().run(small(), spikes() * 16)
    with pytest.raises(BackendError, match="the network has 16 inputs, the spikes 8 channels"):
        XyloSimBackend().run(small(), spikes(n=8))


def test_a_file_that_is_not_an_export_is_refused(tmp_path):
    bad = tmp_path / "bad.xylo"
    bad.write_bytes(b"not an archive")
    with pytest.raises(ExportError, match="is not a spikefit xylo export"):
        load_specification(bad)


def test_cli_export_and_run(tmp_path):
    import subprocess

    model, out, x = tmp_path / "net.nir", tmp_path / "net.xylo", tmp_path / "x.npy"
    spikefit.write_nir(small(), model)
    np.save(x, spikes(b=4))
    result = invoke("export", model, "--format", "xylo", "--target", "xylo-audio2", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["format"] == "xylo" and load_specification(out).n_inputs == 16
    proc = subprocess.run([str(SPIKEFIT), "run", str(model), "--backend", "xylosim", "--inputs", str(x), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == "xylosim" and report["samples"] == 4


def test_cli_export_refusal_is_one_line(tmp_path):
    model = tmp_path / "rec.nir"
    net = layered(seed=23, out_recurrent=True)
    spikefit.write_nir(net, model)
    result = invoke("export", model, "--format", "xylo", "--out", tmp_path / "rec.xylo")
    assert_one_line_error(result, r"rule xylo.output_not_recurrent uses 1 of 0 at layer o")
    assert not (tmp_path / "rec.xylo").exists()


def test_hidden_counts_follow_xylos_neuron():
    # One input channel drives one hidden neuron with 100 << 0 per event; threshold 21 (vth 20): a big
    # current makes the hidden neuron spike several times in one step, which spikefit's neuron never does.
    net = Network.sequential(Input("in", (1,)), Dense("fc0", np.array([[100.0]])),
                             Neurons("h0", (1,), du=0.5, dv=0.5, vth=20.0), Dense("fc1", np.array([[1.0]])),
                             Neurons("o", (1,), vth=1000.0), Output("out", (1,)))
    x = np.zeros((6, 1, 1))
    x[0] = 1
    out = XyloSimBackend().run(net, x)
    assert out["h0"][:, 0, 0].max() >= 2 and out["o"].sum() == 0
