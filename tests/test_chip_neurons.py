"""The chips' own neurons in the emulator (spikefit.chipneurons), bit for bit against each vendor's
simulator on small networks: XyloSim (spikefit-xylo), sinabs's discretized forward pass (spikefit-speck)
and akida's Model.forward (spikefit-akida); and --target choosing them in `spikefit run --compare`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import spikefit
from spikefit.chipneurons import run_akida, run_chip, run_speck, run_truenorth, run_xylo
from spikefit.emulator import EmulatorBackend
from spikefit.errors import BackendError, SpecError
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import write_nir
from spikefit.spec import NeuronSpec
from spikefit_akida.backend import AkidaBackend
from spikefit_akida.corpus import net as akida_net
from spikefit_speck.backend import SpeckSimBackend
from spikefit_speck.corpus import Chain
from spikefit_xylo.backend import XyloSimBackend
from spikefit_xylo.corpus import layered

from clitools import assert_one_line_error, invoke


def _spikes(seed: int, shape, p: float = 0.3, counts: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((rng.random(shape) < p) * rng.integers(1, counts + 1, shape)).astype(np.float64)


def _same(vendor: dict, ours: dict) -> None:
    assert set(vendor) == set(ours)
    for name in vendor:
        assert np.array_equal(np.asarray(vendor[name]).astype(np.int64), ours[name].astype(np.int64)), name


# -- Xylo: XyloSim ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,hidden,recurrent", [(0, (32,), ()), (1, (24, 16), (0,)), (2, (20,), (0,))])
def test_xylo_lif_equals_xylosim_spike_for_spike(seed, hidden, recurrent):
    net = layered(16, hidden, 8, seed=seed, recurrent=recurrent)
    x = _spikes(seed, (40, 5, 16), counts=3)        # up to 3 input events per channel and step
    ours = run_xylo(net, x)
    _same(XyloSimBackend().run(net, x), ours)
    assert max(int(o.max()) for o in ours.values()) > 1       # hidden neurons spiked several times a step
    assert int(ours["o"].max()) == 1                          # output neurons at most once


def test_xylo_lif_reads_dashes_and_thresholds_and_delays_hidden_layers():
    from spikefit.chipneurons import xylo_plan

    net = Network.sequential(Input("in", (1,)), Dense("fc", np.array([[7.0]])),
                             Neurons("h", (1,), du=0.5, dv=1 / 16, vth=10.0), Dense("fo", np.array([[30.0]])),
                             Neurons("o", (1,), dv=0.0, vth=20.0), Output("out", (1,)))
    plan = xylo_plan(net)
    assert [(p["dash_syn"], p["dash_mem"], p["threshold"]) for p in plan["pops"]] == [(1, 4, 11), (1, 15, 21)]
    assert [c[2] for p in plan["pops"] for c in p["conns"]] == [False, True]   # hidden -> output: next step
    x = np.zeros((12, 1, 1))
    x[:4] = 3
    ours = run_xylo(net, x)
    _same(XyloSimBackend().run(net, x), ours)
    first_h, first_o = (int(np.argmax(ours[k].reshape(-1) > 0)) for k in ("h", "o"))
    assert ours["h"].max() > 1 and first_o > first_h


# -- Speck: sinabs ------------------------------------------------------------------------------------

SPECK_NETS = {
    "dense": lambda: Chain("dense", (16,)).dense(20, vth=150).dense(10, vth=100).build(),
    "conv-sumpool-dense": lambda: Chain("conv", (1, 8, 8)).conv(4, 3, padding=1, vth=120).pool(2).dense(10, vth=100).build(),
    "conv-bias-avgpool-conv": lambda: (Chain("avg", (2, 8, 8)).conv(4, 3, padding=1, bias=True, vth=120)
                                       .pool(2, kind="avg").conv(4, 3, vth=80).dense(10, vth=100).build()),
}


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("name", sorted(SPECK_NETS))
def test_speck_if_equals_sinabs(name, reset):
    net = SPECK_NETS[name]()
    x = _spikes(3, (10, 3, net.inputs[0].size), p=0.4)
    ours = run_speck(net, x, reset)
    _same(SpeckSimBackend(reset).run(net, x), ours)
    assert max(int(o.max()) for o in ours.values()) > 1       # floor(v / threshold) spikes in one step


def test_speck_if_refuses_weights_that_sinabs_rounds_to_nothing():
    rng = np.random.default_rng(5)
    net = Network.sequential(Input("in", (12,)), Dense("fc1", rng.normal(0, 0.01, (5, 12))),
                             Neurons("p1", (5,), vth=0.004), Output("out", (5,)))
    with pytest.raises(BackendError, match=r"population 'p1': its threshold discretizes to 0 .*quantize the weights"):
        run_speck(net, np.zeros((2, 1, 12)))


# -- Akida: Model.forward -------------------------------------------------------------------------------

AKIDA_NETS = {
    "fc-fc": lambda: akida_net((64,), ("fc", 32, (-7, 7)), ("fc", 10, (-7, 7)), seed=1),
    "input-conv-8bit-fc": lambda: akida_net((1, 8, 8), ("conv", 8, 3, (-100, 100), 1, None), ("flatten",),
                                            ("fc", 10, (-7, 7)), seed=2),
    "conv-stride-2-same": lambda: akida_net((2, 8, 8), ("conv", 4, 3, (-7, 7), 1, None), ("conv", 4, 3, (-7, 7), 2, None),
                                            ("flatten",), ("fc", 10, (-7, 7)), seed=3),
}


@pytest.mark.parametrize("name", sorted(AKIDA_NETS))
def test_akida_act_equals_akida_forward(name):
    net = AKIDA_NETS[name]()
    for p in net.populations():
        p.vth = 5.0
    x = _spikes(4, (6, 4, net.inputs[0].size))
    _same(AkidaBackend().run(net, x), run_akida(net, x))


# -- TrueNorth (no vendor simulator): the linear leak itself ------------------------------------------

def test_truenorth_lif_leaks_linearly_toward_zero():
    net = Network.sequential(Input("in", (1,)), Dense("fc", np.array([[0.6]])),
                             Neurons("p", (1,), du=1.0, dv=0.1, vth=1.0), Output("out", (1,)))
    x = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0], dtype=float).reshape(10, 1, 1)
    # v: 0.6-0.1=0.5, 0.5+0.6-0.1=1.0 (not > 1), 0.9, 0.8, 1.4-0.1=1.3 -> spike
    s = run_truenorth(net, x)["p"].reshape(-1)
    assert s.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]


# -- selection by the target -----------------------------------------------------------------------------

def test_targets_select_their_chip_neuron():
    assert spikefit.get_target("xylo-audio2").neuron.chip_model == "xylo-lif"
    assert spikefit.get_target("speck2f").neuron.chip_model == "speck-if"
    assert spikefit.get_target("akida").neuron.chip_model == "akida-act"
    assert spikefit.get_target("loihi2").neuron.chip_model is None          # Lava's LIF
    xylo = NeuronSpec(models=("xylo-lif",))
    assert xylo.runs("cuba-lif") and xylo.runs("if") and xylo.runs("xylo-lif") and not xylo.runs("speck-if")
    assert NeuronSpec(models=("speck-if",)).runs("if") and not NeuronSpec(models=("speck-if",)).runs("lif")
    with pytest.raises(SpecError, match=r"neuron.models"):
        NeuronSpec(models=("loihi-lif",))
    with pytest.raises(BackendError, match=r"unknown chip neuron model 'nope'"):
        run_chip("nope", layered(), np.zeros((1, 1, 16)))
    with pytest.raises(BackendError, match=r"unknown chip neuron model 'nope'"):
        EmulatorBackend(neuron="nope")


def test_run_compare_with_a_target_runs_the_chips_neuron(tmp_path):
    net = layered(16, (24, 16), 8, seed=1, recurrent=(0,))
    model = write_nir(net, tmp_path / "xylo.nir")
    np.save(tmp_path / "x.npy", _spikes(1, (30, 6, 16), p=0.5))
    r = invoke("run", model, "--inputs", tmp_path / "x.npy", "--compare", "emulator,xylosim", "--target",
               "xylo-audio2", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["agreement"] == {"xylosim": 1.0}
    # without --target the emulator runs Lava's LIF, which is not Xylo's neuron
    r = invoke("run", model, "--inputs", tmp_path / "x.npy", "--compare", "emulator,xylosim", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["agreement"]["xylosim"] < 1.0


def test_run_with_a_target_refuses_what_its_neuron_cannot_run(tmp_path):
    model = write_nir(SPECK_NETS["conv-sumpool-dense"](), tmp_path / "conv.nir")
    np.save(tmp_path / "x.npy", _spikes(0, (4, 2, 1, 8, 8)))
    assert_one_line_error(invoke("run", model, "--inputs", tmp_path / "x.npy", "--backend", "emulator", "--target",
                                 "xylo-audio2"), r"layer 'conv1' \(conv2d\): Xylo runs dense weights only")


# -- end to end: a conv fitted to digits-image, emulator against the vendor -----------------------------

@pytest.mark.parametrize("target,vendor", [("akida", "akida"), ("speck2f", "speck-sim")])
def test_a_conv_fitted_to_digits_image_runs_identically_on_emulator_and_vendor(tmp_path, target, vendor):
    from spikefit.nn import SNN, LIF, Conv, Flatten, Linear
    from spikefit.runner import compare
    from spikefit.trainer import FitConfig

    torch.manual_seed(0)
    model = SNN([Conv("conv1", (1, 8, 8), 4, 3, padding=1), LIF("p1", (4, 8, 8)), Flatten("flat", (4, 8, 8)),
                 Linear("fc2", 256, 10), LIF("p2", (10,))], (1, 8, 8))
    r = spikefit.fit(model, "digits-image", target, FitConfig.preset("demo", threads=2), out=tmp_path, force=True,
                     progress=False)
    assert r.report.ok and r.accuracy["fitted"] > 0.8
    assert {p.model for p in r.model.populations()} == {spikefit.get_target(target).neuron.chip_model}
    if target == "akida":    # the InputConvolutional on 8 bits, the rest 4-bit symmetric
        ints = {s.name: s.quant.export(s.weight)[0] for s in r.model.synapses()}
        assert ints["conv1"].max() > 7 and -7 <= ints["fc2"].min() and ints["fc2"].max() <= 7
    spec = spikefit.get_target(target)
    cmp = compare(r.network, [EmulatorBackend.for_target(spec), vendor], dataset="digits-image", samples=120)
    assert cmp.agreement == {vendor: 1.0}
    assert cmp.results["emulator"].accuracy == cmp.results[vendor].accuracy
