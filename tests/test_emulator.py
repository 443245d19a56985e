"""The emulator: Lava's bit-accurate arithmetic on hand-computed cases and against a line-by-line
numpy transcription of Lava's models, float mode against the reference semantics, timing rules."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spikefit import plugins
from spikefit.emulator import (EmulatorBackend, LifParams, _fixed_conn, decay, fixed_plan, lif_fixed_step, run_fixed,
                               run_float, shift, wrap)
from spikefit.errors import BackendError
from spikefit.fixedpoint import FixedLayer, FixedNetwork, lava_weights, to_fixed
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output


def t64(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def params(du=4095, dv=0, vth=100, bias=(0,), safe=False) -> LifParams:
    return LifParams(du, dv, vth, torch.tensor(bias, dtype=torch.int64), safe)


# -- hand-computed cases ---------------------------------------------------------------------------
def test_decay_rounds_toward_zero_for_negative_values():
    # du = 1000: u is multiplied by 4096 - (1000 + 1) = 3095, then shifted by 12 in sign-magnitude.
    # -1000 * 3095 = -3,095,000; 3,095,000 >> 12 = 755 (755.6), so -755 (a floor shift gives -756).
    assert decay(t64(-1000, 1000), 3095).tolist() == [-755, 755]
    u, v, s = lif_fixed_step(t64(-1000), t64(0), t64(0), params(du=1000))
    assert u.tolist() == [-755]


def test_u_wraps_at_2_pow_23_like_lava():
    # du = 0 keeps 4095/4096: 8,388,000 * 4095 >> 12 = 8,385,952; + (100 << 6) = 8,392,352 > 2**23,
    # so Lava subtracts 2**24: -8,384,864. The mirror case adds 2**24.
    for safe in (False, True):
        u, _, _ = lif_fixed_step(t64(8_388_000, -8_388_000), t64(0, 0), t64(100 << 6, -100 << 6),
                                 params(du=0, vth=10, bias=(0, 0), safe=safe))
        assert u.tolist() == [-8_384_864, 8_384_864]


def test_u_equal_to_2_pow_23_is_kept_and_minus_2_pow_23_becomes_plus():
    # Lava wraps where u > 2**23 and where u <= -2**23 (models.py:161-170).
    for safe in (False, True):
        u, _, _ = lif_fixed_step(t64(0, 0), t64(0, 0), t64(2 ** 23, -(2 ** 23)), params(bias=(0, 0), safe=safe))
        assert u.tolist() == [2 ** 23, 2 ** 23]


def test_v_saturates_at_24_bits():
    # v is clipped to [-(2**23 - 1), 2**23 - 1]; the positive side spikes anyway, the negative one stays.
    _, v, s = lif_fixed_step(t64(0), t64(-(2 ** 23) + 10), t64(-(2 ** 22)), params(vth=10))
    assert v.tolist() == [-(2 ** 23) + 1] and not s.any()


def test_threshold_is_shifted_by_6_and_compared_strictly():
    # vth = 100: spike where v > 6400. a_in = 100 gives u = v = 6400 (no spike); 101 gives 6464.
    u, v, s = lif_fixed_step(t64(0, 0), t64(0, 0), t64(100 << 6, 101 << 6), params(vth=100, bias=(0, 0)))
    assert s.tolist() == [False, True]
    assert v.tolist() == [6400, 0]  # the spiking neuron resets to 0


def test_bias_exponent_scales_the_mantissa():
    # bias_mant 3, bias_exp 2: 3 << 2 = 12 raw units are added to v every step (dv = 0: no leak).
    layer = FixedLayer(name="p", conn="c", kind="dense", weight=np.zeros((1, 1), dtype=np.int64), weight_exp=0,
                       num_weight_bits=8, du=4095, dv=0, vth=0, bias_mant=np.array([3]), bias_exp=2, depth=1,
                       source="in", recurrent=False, conv=None, scale=1.0)
    net = FixedNetwork([layer], "in", 1, "p", {"in": (1,), "p": (1,)})
    p = fixed_plan(net)[1][0].params
    assert p.bias.tolist() == [12]
    u, v, s = lif_fixed_step(t64(0), t64(0), t64(0), p)
    assert v.tolist() == [0] and s.tolist() == [True]  # 12 > vth 0 << 6: spike, reset
    p.vth_eff = 20
    _, v, _ = lif_fixed_step(u, t64(0), t64(0), p)
    _, v, s = lif_fixed_step(u, v, t64(0), p)
    assert v.tolist() == [0] and s.tolist() == [True]  # 12, then 24 > 20
    assert run_fixed(net, np.zeros((3, 1, 1)))["p"][:, 0, 0].tolist() == [True, True, True]


def _dense_layer(weight, weight_exp, sign_mode="mixed") -> FixedLayer:
    weight = np.atleast_2d(np.asarray(weight, dtype=np.int64))
    return FixedLayer(name="p", conn="c", kind="dense", weight=weight, weight_exp=weight_exp, num_weight_bits=8,
                      du=4095, dv=0, vth=1, bias_mant=np.zeros(weight.shape[0], dtype=np.int64), bias_exp=0,
                      depth=1, source="in", recurrent=False, conv=None, scale=1.0, sign_mode=sign_mode)


def test_weight_exponent_shifts_the_accumulated_sum():
    s = torch.ones(1, 2, dtype=torch.float32)
    conn, _ = _fixed_conn(_dense_layer([[6, -2]], 2), torch.float32)
    assert conn.apply(s).tolist() == [[16]]            # (6 - 2) << 2
    conn, _ = _fixed_conn(_dense_layer([[2, -8]], -2), torch.float32)
    assert conn.apply(s).tolist() == [[-2]]            # -6 >> 2 = -2 (arithmetic shift: toward -inf)
    assert shift(t64(-6), -2).tolist() == [-2] and shift(t64(6), -2).tolist() == [1]


def test_lava_weight_preprocessing():
    # clip_weights(w, mode, 8) then truncate_weights(w, mode, 8): mixed drops the LSB (weightutils.py).
    assert lava_weights([3, -3, 255, -256, 300], "mixed").tolist() == [2, -4, 254, -256, 254]
    assert lava_weights([3, 300, -5], "excitatory").tolist() == [3, 255, 0]
    assert lava_weights([-3, -300, 5], "inhibitory").tolist() == [-3, -255, 0]
    assert lava_weights([7, -7], "mixed", num_weight_bits=6).tolist() == [0, -8]
    csr = lava_weights(sp.csr_array(np.array([[3, 0, -3]])), "mixed")
    assert csr.toarray().tolist() == [[2, 0, -4]]


def test_wrap_is_twos_complement():
    assert wrap(t64(2 ** 31, -(2 ** 31) - 1, 5), 32).tolist() == [-(2 ** 31), 2 ** 31 - 1, 5]
    assert wrap(t64(2 ** 23, -(2 ** 23) - 1), 24).tolist() == [-(2 ** 23), 2 ** 23 - 1]


# -- line-by-line transcription of Lava's numpy code ------------------------------------------------
def lava_lif(u, v, a, du, dv, vth, bias_mant, bias_exp):
    """PyLifModelBitAcc.run_spk (lava/proc/lif/models.py:110-122, 138-192, 268-278) with its dtypes."""
    u, v = u.astype(np.int32), v.astype(np.int32)
    a_in = np.zeros(u.shape, np.int16) + a.astype(np.int32)  # PyInPortVectorDense.recv: int16 zeros + int32
    bias_mant = np.asarray(bias_mant, np.int16).copy().astype(np.int32)
    bias_exp = np.asarray(bias_exp, np.int16)
    effective_bias = np.where(bias_exp >= 0, np.left_shift(bias_mant, bias_exp), np.right_shift(bias_mant, -bias_exp))
    decayed_curr = np.int64(u) * (4096 - (du + 1))
    decayed_curr = np.sign(decayed_curr) * np.right_shift(np.abs(decayed_curr), 12)
    decayed_curr = np.int32(decayed_curr)
    activation_in = np.left_shift(a_in, 6)
    with np.errstate(over="ignore"):
        decayed_curr += activation_in
    wrapped_curr = np.where(decayed_curr > 2 ** 23, decayed_curr - 2 * 2 ** 23, decayed_curr)
    wrapped_curr = np.where(wrapped_curr <= -(2 ** 23), decayed_curr + 2 * 2 ** 23, wrapped_curr)
    u[:] = wrapped_curr
    decayed_volt = np.int64(v) * (4096 - dv)
    decayed_volt = np.sign(decayed_volt) * np.right_shift(np.abs(decayed_volt), 12)
    decayed_volt = np.int32(decayed_volt)
    with np.errstate(over="ignore"):
        updated_volt = decayed_volt + u + effective_bias
    v[:] = np.clip(updated_volt, -np.int32(2 ** 23) + 1, np.int32(2 ** 23) - 1)
    s = v > np.left_shift(vth, 6)
    v[s] = 0
    return u, v, s


@pytest.mark.parametrize("amplitude", [2 ** 10, 2 ** 17, 2 ** 28])
def test_lif_step_equals_lava_transcription(amplitude):
    rng = np.random.default_rng(amplitude)
    n = 2000
    du, dv, vth = int(rng.integers(0, 4096)), int(rng.integers(0, 4096)), int(rng.integers(0, 2 ** 17))
    bias_mant, bias_exp = rng.integers(-4096, 4096, n), int(rng.integers(0, 8))
    p = LifParams(du, dv, vth, torch.from_numpy(bias_mant << bias_exp), safe=amplitude << 6 <= 2 ** 23)
    lu = rng.integers(-(2 ** 23) + 1, 2 ** 23, n)
    lv = rng.integers(-(2 ** 23) + 1, 2 ** 23, n)
    u, v = torch.from_numpy(lu.copy()), torch.from_numpy(lv.copy())
    for _ in range(20):
        a = rng.integers(-amplitude, amplitude + 1, n)
        lu, lv, ls = lava_lif(lu, lv, a, du, dv, vth, bias_mant, bias_exp)
        u, v, s = lif_fixed_step(u, v, wrap(torch.from_numpy(a) << 6, 32), p)
        assert np.array_equal(u.numpy(), lu) and np.array_equal(v.numpy(), lv) and np.array_equal(s.numpy(), ls)


def lava_dense(weights, s_in, weight_exp, num_weight_bits, sign):
    """PyDenseModelBitAcc.run_spk (lava/proc/dense/models.py:77-107), weightutils transcribed, plus
    the int32 channel the result travels in."""
    w = weights.copy().astype(np.int32)
    mixed, inhib = int(sign == "mixed"), int(sign == "inhibitory")
    if inhib:
        w = -w
    w = np.clip(w, (-2 ** 8) * mixed, 2 ** 8 - 1)
    if inhib:
        w = -w
    w = w.copy().astype(np.int32)
    if inhib:
        w = -w
    k = 8 - num_weight_bits + mixed
    w = (w >> k) << k
    if inhib:
        w = -w
    a_accum = w[:, s_in.astype(bool)].sum(axis=1)
    a_buff = np.left_shift(a_accum, weight_exp) if weight_exp > 0 else np.right_shift(a_accum, -weight_exp)
    channel = np.zeros(a_buff.shape, np.int32)
    channel[:] = a_buff
    return channel


@pytest.mark.parametrize("sign,exp,bits", [("mixed", 0, 8), ("mixed", 3, 6), ("excitatory", -2, 8),
                                           ("inhibitory", 5, 7), ("mixed", 7, 8)])
def test_dense_equals_lava_transcription(sign, exp, bits):
    rng = np.random.default_rng(exp + bits)
    lo, hi = {"mixed": (-300, 300), "excitatory": (0, 300), "inhibitory": (-300, 0)}[sign]
    w = rng.integers(lo, hi + 1, (40, 3000))  # out-of-range values too: Lava clips them
    conn, _ = _fixed_conn(FixedLayer(name="p", conn="c", kind="dense", weight=w, weight_exp=exp, num_weight_bits=bits,
                                     du=0, dv=0, vth=0, bias_mant=np.zeros(40, dtype=np.int64), bias_exp=0, depth=1,
                                     source="in", recurrent=False, conv=None, scale=1.0, sign_mode=sign), torch.float32)
    for _ in range(5):
        s = (rng.random(3000) < 0.5).astype(np.float32)
        got = conn.apply(torch.from_numpy(s)[None])[0].numpy()
        assert np.array_equal(got, lava_dense(w, s, exp, bits, sign))


# -- networks --------------------------------------------------------------------------------------
def mlp(seed=0, n_in=20, hidden=16, out=5, recurrent=False) -> Network:
    rng = np.random.default_rng(seed)
    nodes = {"in": Input("in", (n_in,)), "fc1": Dense("fc1", rng.normal(0, 0.6, (hidden, n_in))),
             "h": Neurons("h", (hidden,), du=0.8, dv=0.1, vth=1.0, bias=rng.normal(0, 0.05, hidden)),
             "fc2": Dense("fc2", rng.normal(0, 0.6, (out, hidden))), "out": Neurons("out", (out,), dv=0.05, vth=0.8),
             "o": Output("o", (out,))}
    edges = [("in", "fc1"), ("fc1", "h"), ("h", "fc2"), ("fc2", "out"), ("out", "o")]
    if recurrent:
        nodes["rec"] = Dense("rec", rng.normal(0, 0.4, (hidden, hidden)))
        edges += [("h", "rec"), ("rec", "h")]
    return Network(nodes, edges)


def spikes(seed, t, b, n, p=0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, b, n)) < p).astype(np.float32)


def reference(network: Network, x: np.ndarray) -> dict[str, np.ndarray]:
    """spikefit.network's equations, written out with numpy for chains and recurrent edges."""
    T, B, _ = x.shape
    layers = network.synapse_layers()
    pops = list(dict.fromkeys(sl.post.name for sl in layers))
    out = {p: np.zeros((T, B, network.nodes[p].size), bool) for p in pops}
    state = {p: (np.zeros((B, network.nodes[p].size)), np.zeros((B, network.nodes[p].size))) for p in pops}
    for t in range(T):
        for p in pops:
            n = network.nodes[p]
            a = np.zeros((B, n.size))
            for sl in layers:
                if sl.post.name != p:
                    continue
                if sl.pre.name == "in":
                    src = x[t]
                elif sl.recurrent:
                    src = out[sl.pre.name][t - 1] if t else np.zeros_like(out[sl.pre.name][0])
                else:
                    src = out[sl.pre.name][t]
                a = a + src @ sl.conn.dense_weight().T + (0 if sl.conn.bias is None else sl.conn.bias)
            u, v = state[p]
            u = u * (1 - n.du) + a
            v = v * (1 - n.dv) + u + n.bias
            s = v > n.vth
            v = np.where(s, 0.0, v)
            state[p] = (u, v)
            out[p][t] = s
    return out


def dyadic(network: Network) -> Network:
    """Weights and biases on a 1/64 grid: every sum is exact in float64, in any order."""
    net = network.copy()
    for c in net.connections():
        c.weight = np.round(c.dense_weight() * 64) / 64
    for p in net.populations():
        p.bias = np.round(p.bias * 64) / 64
    return net


@pytest.mark.parametrize("recurrent", [False, True])
def test_float_mode_is_the_reference_semantics(recurrent):
    net = dyadic(mlp(1, recurrent=recurrent))
    net.nodes["fc2"].bias = np.full(5, 0.125)
    net.nodes["out"].du = 1.0  # a connection bias
    x = spikes(2, 25, 30, 20)
    got, want = EmulatorBackend("float").run(net, x), reference(net, x)
    for p in want:
        assert np.array_equal(got[p], want[p]), p
    assert sum(int(w.sum()) for w in want.values()) > 100  # the comparison saw real activity


def test_float_mode_takes_graded_inputs_and_fixed_mode_refuses_them():
    net = mlp(3)
    x = np.random.default_rng(0).random((10, 4, 20)).astype(np.float32)
    assert EmulatorBackend("float").run(net, x)["out"].shape == (10, 4, 5)
    with pytest.raises(BackendError, match=r"takes binary spikes .* values in \[0\.\d+, 0\.\d+\]; encode with 'rate'"):
        EmulatorBackend().run(net, x)


def test_input_size_mismatch():
    with pytest.raises(BackendError, match="inputs have 7 channels per step but the network's input has 20"):
        EmulatorBackend().run(mlp(), np.zeros((3, 2, 7)))


@pytest.mark.parametrize("recurrent", [False, True])
def test_fixed_point_follows_the_float_semantics_closely(recurrent):
    net = mlp(4, recurrent=recurrent)
    x = spikes(5, 30, 64, 20)
    fixed, flt = EmulatorBackend().run(net, x), EmulatorBackend("float").run(net, x)
    for p in fixed:
        assert (fixed[p] == flt[p]).mean() > 0.97, p
        assert flt[p].sum() > 50


def test_feed_forward_delivers_within_the_step_and_recurrence_a_step_later():
    # in -> a -> b in one step; b excites itself through a recurrent edge (one step later).
    nodes = {"in": Input("in", (1,)), "c1": Dense("c1", [[2.0]]), "a": Neurons("a", (1,)),
             "c2": Dense("c2", [[2.0]]), "b": Neurons("b", (1,)), "rec": Dense("rec", [[2.0]])}
    net = Network(nodes, [("in", "c1"), ("c1", "a"), ("a", "c2"), ("c2", "b"), ("b", "rec"), ("rec", "b")])
    x = np.zeros((4, 1, 1), np.float32)
    x[1] = 1
    for mode in ("fixed", "float"):
        out = EmulatorBackend(mode).run(net, x)
        assert out["a"][:, 0, 0].tolist() == [False, True, False, False]
        assert out["b"][:, 0, 0].tolist() == [False, True, True, True]


def test_every_sample_starts_from_zero_state():
    net = mlp(6, recurrent=True)
    x = spikes(7, 12, 5, 20)
    batch = EmulatorBackend().run(net, x)
    for b in range(5):
        one = EmulatorBackend().run(net, x[:, b:b + 1])
        assert all(np.array_equal(one[p][:, 0], batch[p][:, b]) for p in one)


def conv_net(seed=0) -> Network:
    rng = np.random.default_rng(seed)
    return Network.sequential(
        Input("in", (2, 6, 7)), Conv2d("c1", rng.normal(0, 0.5, (3, 2, 3, 3)), (2, 6, 7), stride=(1, 2), padding=(1, 0)),
        Neurons("h", (3, 6, 3), dv=0.1, vth=0.8, bias=0.02), Flatten("fl", (3, 6, 3)),
        Dense("fc", rng.normal(0, 0.4, (4, 54))), Neurons("out", (4,), vth=0.7), Output("o", (4,)))


def test_conv_equals_its_dense_matrix():
    from spikefit.fixedpoint import conv_matrix

    net = conv_net(8)
    c1 = net.nodes["c1"]
    dense = Network.sequential(Input("in", (84,)), Dense("c1", conv_matrix(c1).toarray()),
                               Neurons("h", (54,), dv=0.1, vth=0.8, bias=0.02),
                               Dense("fc", net.nodes["fc"].weight), Neurons("out", (4,), vth=0.7), Output("o", (4,)))
    x = spikes(9, 15, 20, 84)
    for mode in ("fixed", "float"):
        a, b = EmulatorBackend(mode).run(net, x), EmulatorBackend(mode).run(dense, x)
        assert np.array_equal(a["h"], b["h"]) and np.array_equal(a["out"], b["out"])
        assert a["h"].sum() > 100


def test_sparse_weights_give_the_dense_result():
    net = mlp(10)
    w = net.nodes["fc1"].weight
    w[np.abs(w) < 0.4] = 0
    sparse = net.copy()
    sparse.nodes["fc1"].weight = sp.csr_array(w)
    x = spikes(11, 15, 10, 20)
    for mode in ("fixed", "float"):
        a, b = EmulatorBackend(mode).run(net, x), EmulatorBackend(mode).run(sparse, x)
        assert all(np.array_equal(a[p], b[p]) for p in a)


def test_emulator_is_registered():
    be = plugins.get_backend("emulator")
    assert isinstance(be, EmulatorBackend) and be.mode == "fixed"
    assert EmulatorBackend("float").name == "emulator-float"
    with pytest.raises(BackendError, match="unknown emulator mode 'double'; use 'fixed' or 'float'"):
        EmulatorBackend("double")


def test_run_fixed_takes_a_converted_network():
    net = mlp(12)
    x = spikes(13, 10, 8, 20)
    fixed = to_fixed(net)
    assert all(np.array_equal(a, b) for a, b in zip(run_fixed(fixed, x).values(), EmulatorBackend().run(net, x).values()))
    assert set(run_float(net, x)) == {"h", "out"}
