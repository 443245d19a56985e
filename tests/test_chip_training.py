"""Training the chip's neuron: spikefit.nn's chip models (gradients, timing, checkpoints), the target's
choice of model, Akida's per-layer CAT grid and the chip-shaped embedded datasets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import spikefit
from spikefit import cat as C
from spikefit.datasets import load_dataset
from spikefit.errors import ModelError
from spikefit.nn import LIF, SNN, Conv, Flatten, Linear, set_neuron_model
from spikefit.trainer import FitConfig, cat_spec, default_model


def _model(model: str | None, seed: int = 0) -> SNN:
    m = SNN.mlp(16, [12], 4, gain=6.0, seed=seed)
    return set_neuron_model(m, model)


@pytest.mark.parametrize("chip", ["xylo-lif", "speck-if", "akida-act", "truenorth-lif"])
def test_every_chip_neuron_trains_with_surrogate_gradients(chip):
    torch.manual_seed(0)
    m = _model(chip)
    x = (torch.rand(12, 3, 16) < 0.5).float()
    y = m(x)
    assert y.shape == (12, 3, 4) and y.sum() > 0
    y.sum().backward()
    grads = [s.weight.grad for s in m.synapses()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_multi_spike_neurons_spike_several_times_a_step_and_xylo_delays_later_layers():
    m = _model("speck-if")
    x = torch.ones(6, 1, 16)
    with torch.no_grad():
        for s in m.synapses():
            s.weight.fill_(1.0)
        assert m.populations()[0](m.synapses()[0](x)).max() > 1          # floor(v / vth) spikes
        set_neuron_model(m, "xylo-lif")
        hidden, out = m.populations()
        assert (hidden.delay, out.delay, hidden.max_spikes, out.max_spikes) == (0, 1, 31, 1)
        s = m(x)
        assert s.max() == 1 and s[0].sum() == 0                           # the output spikes once, a step late
        set_neuron_model(m, "akida-act")
        a = m.populations()[0](torch.full((3, 1, 12), 0.4))                 # stateless: no integration over steps
        assert a.sum() == 0


def test_the_chip_neuron_survives_a_checkpoint():
    m = _model("xylo-lif")
    again = SNN.from_arch(m.arch())
    assert [(p.model, p.delay, p.max_spikes, p.reset) for p in again.populations()] == \
        [("xylo-lif", 0, 31, "subtract"), ("xylo-lif", 1, 1, "subtract")]
    assert SNN.from_arch(_model(None).arch()).populations()[0].model == "lif"
    with pytest.raises(ModelError, match=r"neuron model 'loihi' of population 'p' is not one of lif, xylo-lif"):
        LIF("p", (2,), model="loihi")


@pytest.mark.parametrize("target,model", [("xylo-audio2", "xylo-lif"), ("speck2f", "speck-if"),
                                          ("akida", "akida-act"), ("loihi2", "lif")])
def test_fit_trains_the_neuron_its_target_runs(target, model):
    ds = load_dataset("digits16" if target == "xylo-audio2" else "digits")
    m = default_model(ds, FitConfig(), spikefit.get_target(target))
    assert {p.model for p in m.populations()} == {model}


def test_akida_grid_is_4_bit_symmetric_with_8_bits_in_an_input_convolution():
    akida = spikefit.get_target("akida")
    mlp = _model("akida-act")
    spec = cat_spec(akida, FitConfig(), mlp)
    assert spec.layer_bits == (("fc1", 4, True), ("fc2", 4, True))
    C.attach_cat(mlp, spec)
    for s in mlp.synapses():
        ints, _ = s.quant.export(s.weight)
        assert ints.min() >= -7 and ints.max() <= 7
    conv = SNN([Conv("conv1", (1, 8, 8), 4, 3, padding=1), LIF("p1", (4, 8, 8)), Flatten("flat", (4, 8, 8)),
                Linear("fc2", 256, 10), LIF("p2", (10,))], (1, 8, 8))
    assert cat_spec(akida, FitConfig(), conv).layer_bits == (("conv1", 8, False), ("fc2", 4, True))
    assert cat_spec(spikefit.get_target("loihi2"), FitConfig(), conv).layer_bits == ()
    assert cat_spec(akida, FitConfig(max_weight_bits=2), conv).layer_bits == (("conv1", 2, False), ("fc2", 2, True))


def test_chip_shaped_digits():
    d16, img, digits = load_dataset("digits16"), load_dataset("digits-image"), load_dataset("digits")
    assert d16.input_shape == (16,) and d16.n_classes == 8 and d16.y_test.max() == 7
    x = digits.x_test[digits.y_test < 8]
    assert np.allclose(d16.x_test[0], x[0].reshape(4, 2, 4, 2).mean(axis=(1, 3)).reshape(-1))
    assert img.input_shape == (1, 8, 8) and np.array_equal(img.x_test.reshape(-1, 64), digits.x_test)
    from spikefit.plugins import get_dataset

    assert get_dataset("digits16").load().name == "digits16"          # registered through register_datasets
    assert get_dataset("digits-image").load().input_shape == (1, 8, 8)
