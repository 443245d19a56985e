"""Lava (Loihi2SimCfg CPU simulator) against the emulator: identical spikes in fixed point at every
step of every sample; floating point within a stated tolerance. One Lava run per network and mode."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spikefit.datasets import encoded_split
from spikefit.emulator import EmulatorBackend
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d
from spikefit_lava.backend import LavaBackend

SAMPLES, STEPS = 24, 16
# floating_pt: Lava sums weights in another order than the emulator's float64 products, so a voltage
# within ~1e-15 of the threshold may spike on one and not the other; at most this fraction of
# (step, sample, neuron) entries may differ (measured: none).
FLOAT_TOLERANCE = 1e-3


def dense_net(seed: int = 0) -> Network:
    """64-32-10, current decay, leak and biases."""
    rng = np.random.default_rng(seed)
    return Network.sequential(
        Input("in", (64,)), Dense("fc1", rng.normal(0.0, 0.35, (32, 64))),
        Neurons("h1", (32,), du=0.5, dv=0.1, vth=1.0, bias=rng.normal(0, 0.05, 32)),
        Dense("fc2", rng.normal(0.02, 0.4, (10, 32))), Neurons("out", (10,), du=1.0, dv=0.05, vth=1.0), Output("o", (10,)))


def sparse_net(seed: int = 1) -> Network:
    """Pruned (scipy sparse) layers: mixed signs, then excitatory only (Lava's Sparse process)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.1, 0.5, (32, 64))
    w1[rng.random(w1.shape) < 0.7] = 0
    w2 = np.abs(rng.normal(0, 0.15, (10, 32)))
    w2[rng.random(w2.shape) < 0.5] = 0
    return Network.sequential(
        Input("in", (64,)), Dense("fc1", sp.csr_array(w1)), Neurons("h1", (32,), du=1.0, dv=0.2, vth=1.0),
        Dense("fc2", sp.csr_array(w2)), Neurons("out", (10,), du=0.25, dv=0.1, vth=3.0), Output("o", (10,)))


def conv_net(seed: int = 2) -> Network:
    """Digits as 1x8x8 images: conv (stride (1, 2), padding (1, 0)), sum pool, conv (Lava's Sparse
    once the pool is folded in, into an image population), flatten, dense."""
    rng = np.random.default_rng(seed)
    c1 = Conv2d("c1", rng.normal(0.1, 0.5, (4, 1, 3, 3)), (1, 8, 8), stride=(1, 2), padding=(1, 0))
    pool = Pool2d("pool", "sum", (2, 1), c1.output_shape)
    c2 = Conv2d("c2", rng.normal(0.0, 0.4, (3, 4, 2, 2)), pool.output_shape, padding=(1, 0))
    flat = int(np.prod(c2.output_shape))
    return Network.sequential(
        Input("in", (1, 8, 8)), c1, Neurons("h1", c1.output_shape, du=1.0, dv=0.1, vth=1.0), pool, c2,
        Neurons("h2", c2.output_shape, du=1.0, dv=0.1, vth=1.0), Flatten("flat", c2.output_shape),
        Dense("fc", rng.normal(0.1, 0.4, (10, flat))), Neurons("out", (10,), du=1.0, dv=0.1, vth=1.0), Output("o", (10,)))


def recurrent_net(seed: int = 3) -> Network:
    """Recurrence between populations of equal depth: 'h1' onto itself (with a bias, so it may spike
    before its first sample) and lateral connections between 'h1' and 'h2'."""
    rng = np.random.default_rng(seed)
    nodes = [Input("in", (64,)), Dense("fc1", rng.normal(0, 0.3, (24, 64))),
             Neurons("h1", (24,), du=1.0, dv=0.1, vth=1.0, bias=0.3), Dense("rec", rng.normal(0, 0.4, (24, 24))),
             Dense("fc_b", rng.normal(0, 0.3, (16, 64))), Neurons("h2", (16,), du=0.5, dv=0.1, vth=1.0),
             Dense("lat12", rng.normal(0, 0.4, (16, 24))), Dense("lat21", rng.normal(0, 0.4, (24, 16))),
             Dense("fc2", rng.normal(0, 0.4, (10, 24))), Neurons("out", (10,), du=1.0, dv=0.1, vth=1.0)]
    edges = [("in", "fc1"), ("fc1", "h1"), ("h1", "rec"), ("rec", "h1"), ("in", "fc_b"), ("fc_b", "h2"),
             ("h1", "lat12"), ("lat12", "h2"), ("h2", "lat21"), ("lat21", "h1"), ("h1", "fc2"), ("fc2", "out")]
    return Network({n.name: n for n in nodes}, edges)


NETWORKS = {"dense": dense_net, "sparse": sparse_net, "conv": conv_net}


@pytest.fixture(scope="module")
def digits():
    x, _ = encoded_split("digits", "test", steps=STEPS, limit=SAMPLES)
    return x  # (t, b, 64) rate-coded spikes


def first_mismatch(a: dict, b: dict) -> str:
    """'layer L, sample B, step T' of the first differing spike, for assertion messages."""
    for name in a:
        diff = np.argwhere(a[name] != b[name])
        if diff.size:
            t, s, n = diff[0]
            return f"layer {name!r}, sample {s}, step {t}, neuron {n} ({len(diff)} entries differ)"
    return "none"


def assert_active(spikes: dict) -> None:
    """Every population spikes, without saturating: the agreement is not trivial."""
    for name, s in spikes.items():
        assert 0.02 < s.mean() < 0.9, f"population {name!r} fires at rate {s.mean():.3f}"


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_fixed_point_spikes_equal_the_emulator_at_every_step(kind, digits):
    net = NETWORKS[kind]()
    x = digits.reshape(STEPS, SAMPLES, *net.inputs[0].shape) if kind == "conv" else digits
    emu = EmulatorBackend().run(net, x.reshape(STEPS, SAMPLES, -1))
    lava = LavaBackend().run(net, x)
    assert_active(emu)
    assert set(lava) == set(emu)
    for name in emu:
        assert lava[name].shape == (STEPS, SAMPLES, emu[name].shape[2]) and lava[name].dtype == bool
    assert all(np.array_equal(lava[k], emu[k]) for k in emu), first_mismatch(lava, emu)


def test_recurrent_population_equals_the_emulator(digits):
    net = recurrent_net()
    emu = EmulatorBackend().run(net, digits)
    lava = LavaBackend().run(net, digits)
    assert_active(emu)
    assert all(np.array_equal(lava[k], emu[k]) for k in emu), first_mismatch(lava, emu)


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_floating_point_agrees_with_the_float_emulator(kind, digits):
    net = NETWORKS[kind]()
    ref = EmulatorBackend(mode="float").run(net, digits)
    lava = LavaBackend().run(net, digits, select_tag="floating_pt")
    assert_active(ref)
    for name in ref:
        assert np.mean(lava[name] != ref[name]) <= FLOAT_TOLERANCE, first_mismatch(lava, ref)


def test_floating_point_takes_graded_inputs():
    x, _ = encoded_split("digits", "test", steps=8, encoding="current", limit=20)  # intensities in [0, 1]
    net = dense_net()
    ref = EmulatorBackend(mode="float").run(net, x)
    lava = LavaBackend().run(net, x, select_tag="floating_pt")
    assert_active(ref)
    for name in ref:
        assert np.mean(lava[name] != ref[name]) <= FLOAT_TOLERANCE, first_mismatch(lava, ref)
