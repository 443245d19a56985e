"""The runner: accuracy, spikes, synaptic operations, inputs, compare."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikefit.emulator import EmulatorBackend
from spikefit.errors import BackendError, DatasetError
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output
from spikefit.runner import compare, prepare_inputs, run, synaptic_operations


def one_hot_net(n: int = 4) -> Network:
    """Input channel k drives output neuron k above threshold at every step."""
    return Network.sequential(Input("in", (n,)), Dense("fc", 2.0 * np.eye(n)), Neurons("out", (n,), vth=1.0),
                              Output("o", (n,)))


def one_hot_inputs(n: int = 4, steps: int = 5) -> np.ndarray:
    x = np.zeros((steps, n, n), np.float32)
    for k in range(n):
        x[:, k, k] = 1
    return x


def test_accuracy_spikes_and_synops_on_a_tiny_network():
    res = run(one_hot_net(), "emulator", inputs=one_hot_inputs(), labels=[0, 1, 2, 3])
    assert res.accuracy == 1.0 and res.predictions.tolist() == [0, 1, 2, 3]
    assert (res.samples, res.steps, res.output) == (4, 5, "out")
    assert res.spikes == {"out": 20} and res.spikes_per_sample == {"out": 5.0}
    assert res.input_spikes == 20 and res.synops == {"fc": 20}  # one synapse per input channel
    wrong = run(one_hot_net(), "emulator", inputs=one_hot_inputs(), labels=[0, 1, 2, 0])
    assert wrong.accuracy == 0.75
    d = json.loads(json.dumps(res.to_dict()))
    assert d["correct"] == 4 and d["synops_total"] == 20 and d["samples_per_s"] > 0


def test_inputs_held_for_steps_and_first_samples():
    x = np.eye(4, dtype=np.float32)  # (b, n)
    res = run(one_hot_net(), EmulatorBackend(), inputs=x, labels=[0, 1, 2, 3], steps=6, samples=3)
    assert (res.steps, res.samples, res.spikes["out"]) == (6, 3, 18)
    x3, _ = prepare_inputs(one_hot_net(), one_hot_inputs(steps=9), steps=4)
    assert x3.shape == (4, 4, 4)


def test_input_mismatches_are_dataset_errors():
    net80 = Network.sequential(Input("in", (80,)), Dense("fc", np.ones((10, 80))), Neurons("out", (10,)))
    with pytest.raises(DatasetError, match=r"^model input size 80 does not match dataset 'digits' \(64 features\); "
                                           r"use a model trained on 'digits' or pass inputs with 80 channels$"):
        run(net80, dataset="digits")
    with pytest.raises(DatasetError, match=r"model input size 4 does not match the inputs \(3 channels\)"):
        run(one_hot_net(), inputs=np.zeros((2, 1, 3)))
    with pytest.raises(DatasetError, match="3 labels for 4 input samples"):
        run(one_hot_net(), inputs=one_hot_inputs(), labels=[0, 1, 2])
    with pytest.raises(DatasetError, match="steps 9 exceed the 5 steps of the inputs"):
        run(one_hot_net(), inputs=one_hot_inputs(), steps=9)
    with pytest.raises(DatasetError, match="no inputs: pass a dataset name"):
        run(one_hot_net())


def digits_net(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    return Network.sequential(Input("in", (64,)), Dense("fc1", rng.normal(0, 0.25, (32, 64))),
                              Neurons("h", (32,), dv=0.1), Dense("fc2", rng.normal(0, 0.4, (10, 32))),
                              Neurons("out", (10,)), Output("o", (10,)), metadata={"steps": 12})


def test_dataset_run_uses_the_model_steps_and_is_seeded():
    a = run(digits_net(), dataset="digits", samples=40, seed=3)
    b = run(digits_net(), dataset="digits", samples=40, seed=3)
    assert (a.samples, a.steps) == (40, 12)
    assert 0.0 <= a.accuracy <= 1.0 and a.spikes == b.spikes and a.synops == b.synops
    assert a.spikes["h"] > 0 and a.synops_total > 0


def test_synops_count_fan_out_of_conv_and_dense():
    rng = np.random.default_rng(1)
    conv = Conv2d("c", rng.normal(size=(2, 1, 3, 3)), (1, 5, 5), padding=(1, 1))
    net = Network.sequential(Input("in", (1, 5, 5)), conv, Neurons("h", (2, 5, 5), vth=0.5), Flatten("f", (2, 5, 5)),
                             Dense("fc", rng.normal(size=(3, 50))), Neurons("out", (3,)))
    x = (rng.random((6, 4, 25)) < 0.4).astype(np.float32)
    out = EmulatorBackend("float").run(net, x)
    ops = synaptic_operations(net, x, out)
    # fan-out of each input pixel: outputs whose window covers it, found by convolving unit impulses
    eye = torch.eye(25, dtype=torch.float64).reshape(25, 1, 5, 5)
    fanout = (F.conv2d(eye, torch.tensor(conv.weight), padding=1).reshape(25, -1) != 0).sum(1).numpy()
    assert ops["c"] == int(x.reshape(-1, 25).sum(0) @ fanout)
    assert ops["fc"] == int(out["h"].reshape(-1, 50).sum() * 3)


def test_compare_reports_agreement_and_accuracy():
    cmp = compare(one_hot_net(), [EmulatorBackend(), EmulatorBackend("float")], inputs=one_hot_inputs(),
                  labels=[0, 1, 2, 3])
    assert cmp.agreement == {"emulator-float": 1.0}
    assert all(r.accuracy == 1.0 for r in cmp.results.values())
    d = json.loads(json.dumps(cmp.to_dict()))
    assert d["reference"] == "emulator" and set(d["results"]) == {"emulator", "emulator-float"}
    with pytest.raises(BackendError, match=r"backends \['emulator', 'emulator'\] name one backend twice"):
        compare(one_hot_net(), ["emulator", "emulator"], inputs=one_hot_inputs())


def test_compare_counts_samples_that_differ():
    # 0.999 rounds to the same integer weight as 1.0 (255 of 255 steps), so in fixed point it crosses
    # the threshold 0.9995 that it stays below in float; input channel 0 (weight 1.0) spikes in both.
    net = Network.sequential(Input("in", (2,)), Dense("fc", [[1.0, 0.999]]), Neurons("out", (1,), vth=0.9995),
                             Output("o", (1,)))
    x = np.zeros((3, 2, 2), np.float32)
    x[:, 0, 0] = 1
    x[:, 1, 1] = 1
    cmp = compare(net, [EmulatorBackend("float"), EmulatorBackend()], inputs=x)
    assert cmp.agreement == {"emulator": 0.5}
    fixed, flt = cmp.results["emulator"].outputs["out"], cmp.results["emulator-float"].outputs["out"]
    assert fixed[:, 1, 0].tolist() == [True, True, True] and flt[:, 1, 0].tolist() == [False, True, False]


class OutputOnly:
    """A backend that forgets the hidden population."""

    name = "output-only"

    def run(self, network, inputs):
        return {"out": EmulatorBackend().run(network, inputs)["out"]}


def test_a_backend_must_return_every_population():
    with pytest.raises(BackendError, match="backend 'output-only' returned no spikes for population 'h'"):
        run(digits_net(), OutputOnly(), dataset="digits", samples=3)
