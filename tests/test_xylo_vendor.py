"""The Rockpool vendor check of Xylo Audio 2: conversion to Rockpool's graph, the mapper and XyloSim as
the verdict, the corpus, and spikefit's agreement with the vendor on a representative subset."""
from __future__ import annotations

import numpy as np
import pytest

import spikefit
from spikefit.errors import ExportError
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Quantization
from spikefit.plugins import registry
from spikefit.vendor import spikefit_verdict, vendor_verdict
from spikefit_xylo.check import RockpoolCheck
from spikefit_xylo.convert import to_rockpool
from spikefit_xylo.corpus import corpus, layered
from clitools import invoke

TARGET = "xylo-audio2"


@pytest.fixture(scope="module")
def spec():
    return spikefit.get_target(TARGET)


@pytest.fixture(scope="module")
def cases():
    return {c.name: c for c in corpus()}


def test_the_plugin_registers_the_check_for_xylo_audio2():
    check = registry("vendor_check")[TARGET]
    assert isinstance(check, RockpoolCheck) and check.name == "rockpool" and check.target == TARGET


def test_a_chain_maps_as_input_recurrent_and_output_matrices():
    from spikefit_xylo.vendor_import import load

    rp = load()
    net = layered(hidden=(24, 16), seed=3, recurrent=(0,))
    net.nodes["fc2"].weight *= 2  # the output matrix needs shift 1 where a value passes 127
    net.nodes["fc2"].weight[0, 0] = 200
    conv = to_rockpool(net, rp)
    assert conv.shifts == {"input": 0, "recurrent": 0, "output": 1} and conv.n_inputs == 16
    spec = rp.mapper(conv.graph, weight_dtype="int", threshold_dtype="int", dash_dtype="float")
    w = {k: net.nodes[k].weight for k in ("fc0", "rec0", "fc1", "fc2")}
    assert spec["weights_in"].shape == (16, 40) and spec["weights_rec"].shape == (40, 40)
    assert np.array_equal(spec["weights_in"][:, :24], w["fc0"].T)
    assert np.array_equal(spec["weights_rec"][:24, :24], w["rec0"].T)        # h0 -> h0
    assert np.array_equal(spec["weights_rec"][:24, 24:], w["fc1"].T)         # h0 -> h1, the deeper chain
    assert np.array_equal(spec["weights_out"][24:], w["fc2"].T // 2)          # shifted right by 1
    assert not spec["weights_out"][:24].any() and not spec["weights_rec"][24:].any()
    assert list(spec["threshold"]) == [201] * 40 and list(spec["threshold_out"]) == [101] * 8
    assert np.allclose(spec["dash_mem"], 3) and np.allclose(spec["dash_syn"], 1)


def test_quantized_weights_are_shown_to_the_vendor_as_integers_of_the_populations_unit(spec):
    n = Network.sequential(Input("in", (4,)), Dense("fc0", np.full((6, 4), 0.3), quant=Quantization(8, 0.1)),
                           Neurons("h0", (6,), vth=1.0, bias=np.full(6, 0.2)),
                           Dense("fc1", np.full((2, 6), -0.5), quant=Quantization(8, 0.5)), Neurons("o", (2,), vth=2.0),
                           Output("out", (2,)))
    from spikefit_xylo.vendor_import import load

    rp = load()
    mapped = rp.mapper(to_rockpool(n, rp).graph, weight_dtype="int", threshold_dtype="int", dash_dtype="float")
    assert np.all(mapped["weights_in"] == 3) and np.all(mapped["weights_out"] == -1)
    assert list(mapped["threshold"]) == [11] * 6 and list(mapped["threshold_out"]) == [5] * 2
    assert list(mapped["bias"]) == [2] * 6
    v = RockpoolCheck().check(n, spec)
    assert v.fits is True and v.message.startswith("mapped 6 hidden + 2 output neurons, weight shifts in/rec/out 0/0/0")


def test_what_the_graph_cannot_hold_is_refused(spec):
    conv = Network.sequential(Input("in", (1, 4, 4)), Conv2d("c0", np.ones((2, 1, 3, 3)), (1, 4, 4)),
                              Neurons("h0", (2, 2, 2)), Flatten("flat", (2, 2, 2)), Dense("fc1", np.ones((2, 8))),
                              Neurons("o", (2,)), Output("out", (2,)))
    with pytest.raises(ExportError, match=r"layer 'c0' \(conv2d\): Rockpool's Xylo graph has no convolution"):
        RockpoolCheck().check(conv, spec)
    off = layered(seed=1)
    off.nodes["fc0"].weight[0, 0] = 0.5
    with pytest.raises(ExportError, match="weights of layer 'fc0' are not whole multiples of 1"):
        RockpoolCheck().check(off, spec)


def test_the_vendors_words_are_reported(spec, cases):
    v = RockpoolCheck().check(cases["xylo/one-neuron-layer"].network, spec)
    assert v.fits is False and v.message.startswith(
        "mapper: DRCError: Design rule at_least_two_neuron_layers_needed triggered an error")
    v = RockpoolCheck().check(cases["xylo/threshold-32768"].network, spec)
    assert v.message == ("XyloSim rejected the specification: TypeError: xylosim.v2.XyloLayer.__init__(): "
                         "incompatible constructor arguments")
    v = RockpoolCheck().check(cases["xylo/weights-128"].network, spec)
    assert "xylosim.v2.XyloSynapse.__init__()" in v.message
    v = RockpoolCheck().check(cases["xylo/inputs-17"].network, spec)
    assert v.fits is True and "DRCWarning: Xylo only supports up to 16 input channels" in v.message


def test_the_corpus_is_deterministic_and_covers_the_limits(cases):
    again = {c.name: c for c in corpus()}
    assert len(cases) >= 40 and list(cases) == list(again)
    for name, case in cases.items():
        assert name.startswith("xylo/")
        for node, other in zip(case.network.nodes.values(), again[name].network.nodes.values()):
            if isinstance(node, Dense):
                assert (node.csr() != other.csr()).nnz == 0
    known = {n for n, c in cases.items() if c.known_difference}
    assert known == {"xylo/inputs-17", "xylo/weights-shift-8", "xylo/weight-layer-bias",
                     "xylo/recurrent-fan-out-65", "xylo/chain-fan-out-80"}
    assert sum(c.expect is True for c in cases.values()) >= 15 and sum(c.expect is False for c in cases.values()) >= 15


SUBSET = ["xylo/hidden-1001-output-7", "xylo/hidden-999-output-9", "xylo/hidden-500+500-chain", "xylo/output-9",
          "xylo/inputs-17", "xylo/one-neuron-layer", "xylo/hidden-recurrent", "xylo/output-recurrent",
          "xylo/chain-4-hidden-recurrent-middle", "xylo/consecutive-weights-at-input", "xylo/input-to-output-neurons",
          "xylo/output-feeds-back-to-hidden", "xylo/weights-2x-int8-shift-1", "xylo/weights-3x-int8",
          "xylo/weights-shift-7", "xylo/weights-shift-8", "xylo/recurrent-matrix-one-shift", "xylo/quantized-int8",
          "xylo/quantized-9-bit-even", "xylo/threshold-32767", "xylo/threshold-32768-at-scale-0.5",
          "xylo/bias-32768", "xylo/bias-minus-32768", "xylo/weight-layer-bias", "xylo/recurrent-fan-out-65",
          "xylo/recurrent-64-plus-8-output-synapses"]


@pytest.mark.parametrize("name", SUBSET)
def test_spikefit_agrees_with_rockpool(name, spec, cases):
    case = cases[name]
    vendor = vendor_verdict(case.network, spec)
    fits, why = spikefit_verdict(case.network, spec)
    assert vendor.fits is case.expect, vendor.message
    if case.known_difference:
        assert bool(fits) != vendor.fits, why     # the note says spikefit differs: it must
    else:
        assert bool(fits) == vendor.fits, (why, vendor.message)


def test_cli_verify_with_the_vendor_check(tmp_path, cases):
    path = tmp_path / "net.nir"
    spikefit.write_nir(cases["xylo/weights-2x-int8-shift-1"].network, path)
    result = invoke("verify", path, "--target", TARGET, "--vendor-check")
    assert result.exit_code == 0, result.output
    assert "vendor check (rockpool)" in result.output and "weight shifts in/rec/out 1/0/0" in result.output
    spikefit.write_nir(cases["xylo/recurrent-fan-out-65"].network, path)
    result = invoke("verify", path, "--target", TARGET, "--vendor-check")
    assert result.exit_code == 1
    assert "rule xylo.recurrent_fan_out" in result.output and "mapped 100 hidden + 8 output neurons" in result.output


def random_network(rng) -> Network:
    """Two populations, maybe a recurrent layer, weights int8 times 1, 2, 3, 4, 6 or 128, thresholds and
    biases at and beyond int16, in units of 1 or of a Quantization (int8 integers only: a quantized layer
    beyond int8 is a documented difference)."""
    n_in, nh, n_out = int(rng.integers(1, 17)), int(rng.integers(2, 40)), int(rng.integers(1, 10))
    quantized = rng.random() < 0.3
    f_in, f_out, f_rec = (1, 1, 1) if quantized else [int(rng.choice([1, 1, 1, 1, 1, 2, 4, 128, 3, 6])) for _ in range(3)]
    k = float(rng.choice([0.5, 0.25, 0.01])) if quantized else 1.0
    q = Quantization(8, k) if quantized else None
    nodes = [Input("in", (n_in,)), Dense("fc0", rng.integers(-128, 128, (nh, n_in)) * f_in * k, quant=q),
             Neurons("h", (nh,), du=0.5, dv=0.1, vth=float(rng.choice([1.0, 1.0, 1.0, 1.0, 32766.0, 32767.0])) * k,
                     bias=float(rng.choice([0] * 9 + [32767, 32768, -32769])) * k),
             Dense("fc1", rng.integers(-128, 128, (n_out, nh)) * f_out * k, quant=q),
             Neurons("o", (n_out,), vth=float(rng.choice([5.0] * 6 + [32767.0])) * k), Output("out", (n_out,))]
    edges = [("in", "fc0"), ("fc0", "h"), ("h", "fc1"), ("fc1", "o"), ("o", "out")]
    if rng.random() < 0.4:
        w = rng.integers(-128, 128, (nh, nh)) * f_rec * (rng.random((nh, nh)) < 0.3)
        nodes.append(Dense("rec", w * k, quant=q))
        edges += [("h", "rec"), ("rec", "h")]
    return Network({n.name: n for n in nodes}, edges)


def test_spikefit_agrees_with_rockpool_on_random_networks_around_the_integer_limits(spec):
    rng = np.random.default_rng(7)
    verdicts = []
    for _ in range(40):
        net = random_network(rng)
        vendor = RockpoolCheck().check(net, spec)
        fits, why = spikefit_verdict(net, spec)
        assert bool(fits) == vendor.fits, (why, vendor.message)
        verdicts.append(vendor.fits)
    assert 8 <= sum(verdicts) <= 32   # both verdicts are well represented
