"""The ``akida`` exporter (a Model.save file akida loads) and the ``akida`` backend (akida's software
forward pass, one stateless inference per time step)."""
import json

import numpy as np
import pytest

import akida
from clitools import assert_one_line_error, invoke
from spikefit.errors import BackendError, ExportError
from spikefit.nir_io import write_nir
from spikefit_akida.backend import AkidaBackend
from spikefit_akida.corpus import FOUR, ONE, net
from spikefit_akida.exporter import AkidaExporter


def _small(vth=2.5):
    network = net((2, 6, 5), ("conv", 4, 3, FOUR, 1, None), ("flatten",), ("fc", 3, FOUR), seed=3)
    for pop in network.populations():
        pop.vth = vth
    return network


def _step(network, x):
    """One stateless step in integers: cross-correlation / matrix product, spike where the sum > vth."""
    conv, fc = network.connections()
    xp = np.pad(x.reshape(len(x), 2, 6, 5), ((0, 0), (0, 0), (1, 1), (1, 1))).astype(float)
    s = np.zeros((len(x), 4, 6, 5))
    for i in range(6):
        for j in range(5):
            s[:, :, i, j] = np.einsum("bchw,fchw->bf", xp[:, :, i:i + 3, j:j + 3], conv.weight)
    s1 = s > 2.5
    return s1.reshape(len(x), -1), (s1.reshape(len(x), -1) @ fc.weight.T) > 2.5


def test_export_writes_a_model_akida_loads(tmp_path):
    network = _small()
    path = AkidaExporter().export(network, tmp_path / "net.fbz")
    model = akida.Model(str(path))
    assert [la.parameters.layer_type.name for la in model.layers] == ["InputData", "Convolutional", "FullyConnected"]
    x = (np.random.default_rng(1).random((9, 2, 6, 5)) < 0.5).astype(np.uint8)
    out = model.forward(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).reshape(9, 3)
    assert np.array_equal(out > 0, _step(network, x)[1])


def test_export_refuses_before_calling_akida(monkeypatch, tmp_path):
    import spikefit_akida.convert as convert

    def boom(network):
        raise AssertionError("akida must not be called for a network spikefit refuses")

    monkeypatch.setattr(convert, "to_akida", boom)
    too_wide = net((150, 8, 8), ("conv", 8, 7, FOUR, 1, None))
    with pytest.raises(ExportError, match=r"the AKD1000 cannot run this network: rule akida.filter_memory at "
                                          r"layer conv1: a 7x7 filter of 150 channels at 4 bits does not fit a CNP"):
        AkidaExporter().export(too_wide, tmp_path / "x.fbz")
    assert not (tmp_path / "x.fbz").exists()


def test_export_on_the_command_line(tmp_path):
    good = write_nir(_small(), tmp_path / "good.nir")
    result = invoke("export", str(good), "--format", "akida", "--target", "akida", "--out", str(tmp_path / "g.fbz"),
                    "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["format"] == "akida" and (tmp_path / "g.fbz").is_file()
    bad = write_nir(net((4, 16, 16), ("conv", 8, 3, ONE, 3, None)), tmp_path / "bad.nir")
    result = invoke("export", str(bad), "--format", "akida", "--out", str(tmp_path / "b.fbz"))
    assert result.exit_code == 2
    assert_one_line_error(result, r"the AKD1000 cannot run this network: rule akida.kernels at layer conv1: stride "
                                  r"\(3, 3\) of 3x3 layer conv1 is not supported")


def test_backend_runs_akidas_forward_one_stateless_step_at_a_time():
    network = _small()
    x = np.random.default_rng(2).random((4, 5, 60)) < 0.5                     # (t, b, n)
    out = AkidaBackend().run(network, x)
    hidden, last = _step(network, x.reshape(20, 2, 6, 5).astype(np.uint8))
    assert out["n1"].shape == (4, 5, 120) and out["n3"].shape == (4, 5, 3)
    assert np.array_equal(out["n1"].reshape(20, 120), hidden)
    assert np.array_equal(out["n3"].reshape(20, 3), last)
    assert last.any() and not last.all()


def test_backend_refuses_pooled_populations_and_wrong_inputs():
    pooled = net((4, 8, 8), ("conv", 8, 3, FOUR, 1, None), ("pool", "avg", None), ("flatten",), ("fc", 4, FOUR))
    with pytest.raises(BackendError, match=r"population n1 is pooled inside its Akida layer"):
        AkidaBackend().run(pooled, np.zeros((2, 1, 256)))
    with pytest.raises(BackendError, match=r"inputs have 7 channels, the network's input in has 60"):
        AkidaBackend().run(_small(), np.zeros((2, 1, 7)))
