"""Exporter speck: snn.pt + speck.json that sinabs loads; networks Speck cannot run are refused first."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import spikefit
from spikefit.errors import ExportError
from spikefit_speck import check as speck_check
from spikefit_speck.corpus import Chain, big_neurons
from spikefit_speck.exporter import SpeckExporter, load_speck
from clitools import assert_one_line_error, invoke

LENET = Chain("export", (1, 12, 12), wmax=50).conv(4, 3, bias=True).pool(2).conv(8, 3).dense(5).build()


def test_cli_export_writes_what_sinabs_loads_with_the_core_map_and_configs(tmp_path):
    model = tmp_path / "lenet.nir"
    spikefit.write_nir(LENET, model)
    out = tmp_path / "lenet.speck"
    result = invoke("export", model, "--format", "speck", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "snn.pt", "speck.json"]
    meta = json.loads((out / "speck.json").read_text())
    assert meta["input_shape"] == [1, 12, 12] and meta["target"] == "speck2f" and meta["sinabs"] == "3.1.3"
    assert meta["layer2core"] == {"0": 0, "1": 1, "2": 2}
    assert [meta["layers"][k]["population"] for k in "012"] == ["lif1", "lif2", "lif3"]
    core0 = meta["cores"]["0"]
    # samna's convention: (f, c, x, y); the weights are the network's int8 weights, exactly
    w = np.array(core0["weights"]).transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(w, spikefit.read_nir(model).nodes["conv1"].weight)
    assert core0["biases"] == LENET.nodes["conv1"].bias.astype(int).tolist()
    # spikefit fires at v > 100 (vth), Speck at v >= threshold_high: the next integer
    assert core0["threshold_high"] == 101 and core0["threshold_low"] == -32768 and core0["return_to_zero"] is True
    assert core0["destinations"] == [{"layer": 1, "enable": True, "pooling": 2}]
    net, loaded = load_speck(out)
    builder = speck_check.dynapcnn().chip_factory.ChipFactory("speck2fmodule").get_config_builder()
    assert builder.map_layers_to_cores(net.dynapcnn_layers) == {0: 0, 1: 1, 2: 2} and loaded == meta
    assert isinstance(torch.load(out / "snn.pt", weights_only=False), torch.nn.Sequential)


def test_a_network_speck_cannot_run_is_refused_before_sinabs_runs(tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("sinabs must not be called for a network spikefit refuses")

    monkeypatch.setattr(speck_check, "map_model", never)
    model = tmp_path / "four.nir"
    spikefit.write_nir(big_neurons(Chain("four", (1, 33, 33)), 4).build(), model)
    result = invoke("export", model, "--format", "speck", "--out", tmp_path / "four.speck")
    assert_one_line_error(result, r"Speck cannot run this network: rule speck\.core_memory uses 4 of 3 at layer "
                                  r"lif4: layers lif1, lif2, lif3, lif4 fit only cores 0, 1, 2")
    assert not (tmp_path / "four.speck").exists()
    with pytest.raises(ExportError, match=r"Speck cannot run this network: rule speck\.square_kernels uses 3x5 "
                                          r"of square at layer conv1"):
        SpeckExporter().export(Chain("sq", (2, 8, 8)).conv(4, (3, 5)).build(), tmp_path / "sq")


def test_sinabs_refusals_and_other_targets_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ExportError, match=r"the speck format is for Speck chips .* target 'loihi2' is not one"):
        SpeckExporter().export(LENET, tmp_path / "x", target="loihi2")

    def refuse(model):
        raise speck_check.SinabsRefused("ValueError: No valid mapping found.")

    monkeypatch.setattr(speck_check, "map_model", refuse)
    with pytest.raises(ExportError, match=r"^sinabs refused the network: ValueError: No valid mapping found\.$"):
        SpeckExporter().export(LENET, tmp_path / "y")


def test_load_speck_names_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(ExportError, match=r"is not a Speck export \(speck.json: .*\); write one with spikefit "
                                          r"export --format speck"):
        load_speck(tmp_path)
