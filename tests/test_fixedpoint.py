"""Conversion to Lava's bit-accurate integers: decays, weights, thresholds, biases, ranges, layout."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy import signal

from spikefit.emulator import EmulatorBackend
from spikefit.errors import ExportError
from spikefit.fixedpoint import VTH_MAX, conv_matrix, decay_du, decay_dv, pool_matrix, to_fixed
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d, Quantization
from spikefit_lava.layout import lava_conv_weight, layer_geometry, whc_permutation


def chain(weight, quant=None, conn_bias=None, **neuron) -> Network:
    weight = np.atleast_2d(np.asarray(weight, dtype=float))
    n_out, n_in = weight.shape
    return Network.sequential(Input("in", (n_in,)), Dense("fc", weight, bias=conn_bias, quant=quant),
                              Neurons("h", (n_out,), **neuron), Output("o", (n_out,)))


def test_decays_use_lavas_offsets():
    # u decays by (du + 1) / 4096 (ds_offset = 1), v by dv / 4096 (dm_offset = 0).
    assert [decay_du(x) for x in (1.0, 0.5, 0.1, 0.0)] == [4095, 2047, 409, 0]
    assert [decay_dv(x) for x in (0.0, 0.1, 0.5, 1.0)] == [0, 410, 2048, 4095]
    layer = to_fixed(chain([[0.5]], du=0.25, dv=0.75)).layers[0]
    assert (layer.du, layer.dv) == (1023, 3072)


def test_codebook_scale_is_kept_exactly():
    ints = np.array([[3, -7, 0, 127], [-128, 1, 2, 0]])
    layer = to_fixed(chain(0.01 * ints, quant=Quantization(8, 0.01), vth=0.5)).layers[0]
    # mixed sign: Lava keeps even values (its truncation drops the LSB), so q = 2 * int.
    assert layer.sign_mode == "mixed" and np.array_equal(layer.weight, 2 * ints)
    assert layer.scale == pytest.approx(0.005)  # weight units per integer step: w = scale * q
    assert layer.k == pytest.approx(2 ** layer.weight_exp / 0.005)
    assert layer.vth == int(np.floor(0.5 * layer.k + 1e-9))
    one_sign = to_fixed(chain(0.01 * np.abs(ints), quant=Quantization(9, 0.01))).layers[0]
    assert one_sign.sign_mode == "excitatory" and np.array_equal(one_sign.weight, np.abs(ints))


def test_unquantized_weights_span_the_8_bit_grid():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 12))
    layer = to_fixed(chain(w, vth=1.0)).layers[0]
    q = layer.weight
    assert q.min() >= -256 and q.max() <= 254 and np.all(q % 2 == 0)
    assert max(q.max(), -q.min()) >= 250  # the largest weight uses the full range
    assert np.abs(w - layer.scale * q).max() <= layer.scale * 1.0 + 1e-12  # half an even step
    pos = to_fixed(chain(np.abs(w))).layers[0]
    assert pos.sign_mode == "excitatory" and pos.weight.max() == 255


def test_threshold_floor_keeps_exact_ties():
    # weights 0.25 and threshold 0.5: two input spikes give v == vth, which does not spike; 0.49 does.
    for vth, fires in ((0.5, False), (0.49, True)):
        net = chain([[0.25, 0.25]], quant=Quantization(8, 0.25), vth=vth)
        layer = to_fixed(net).layers[0]
        assert layer.vth == int(np.floor(vth * layer.k + 1e-9))
        x = np.ones((1, 1, 2), np.float32)
        for mode in ("fixed", "float"):
            assert EmulatorBackend(mode).run(net, x)["h"].item() is fires


def test_bias_gets_the_smallest_exponent_that_fits():
    layer = to_fixed(chain([[1.0, -1.0], [0.5, 0.5]], vth=2.0, bias=[0.001, -0.5])).layers[0]
    raw = np.array([0.001, -0.5]) * layer.k * 64
    assert np.abs(layer.bias_mant).max() <= 4095
    assert layer.bias_exp == 0 or np.abs(np.round(raw / 2 ** (layer.bias_exp - 1))).max() > 4095
    assert np.allclose(layer.bias_mant * 2 ** layer.bias_exp, raw, atol=2 ** layer.bias_exp / 2)


def test_headroom_exponent_keeps_u_in_24_bits():
    rng = np.random.default_rng(1)
    layer = to_fixed(chain(rng.normal(0, 0.3, (16, 64)))).layers[0]
    drive = max(np.clip(layer.weight, 0, None).sum(1).max(), np.clip(-layer.weight, 0, None).sum(1).max())
    assert (drive << layer.weight_exp) << 6 < 2 ** 23        # worst case of one step fits u
    assert (drive << (layer.weight_exp + 1)) << 6 >= 2 ** 23  # and the exponent is the largest that does


def test_connection_bias_folds_into_the_neuron_bias_when_du_is_1():
    net = chain([[1.0, -1.0]], conn_bias=[0.25], bias=[0.25])
    layer = to_fixed(net).layers[0]
    assert layer.bias_mant * 2 ** layer.bias_exp == pytest.approx(0.5 * layer.k * 64, abs=1)


def test_depths_sources_recurrence_and_output():
    rng = np.random.default_rng(2)
    nodes = {"in": Input("in", (5,)), "fc1": Dense("fc1", rng.normal(size=(4, 5))), "h": Neurons("h", (4,)),
             "rec": Dense("rec", rng.normal(size=(4, 4))), "fc2": Dense("fc2", rng.normal(size=(3, 4))),
             "out": Neurons("out", (3,)), "o": Output("o", (3,))}
    net = Network(nodes, [("in", "fc1"), ("fc1", "h"), ("h", "rec"), ("rec", "h"), ("h", "fc2"), ("fc2", "out"),
                          ("out", "o")])
    fixed = to_fixed(net)
    got = [(la.name, la.conn, la.source, la.depth, la.recurrent) for la in fixed.layers]
    assert got == [("h", "fc1", "in", 1, False), ("h", "rec", "h", 1, True), ("out", "fc2", "h", 2, False)]
    assert fixed.output == "out" and fixed.populations() == ["h", "out"] and fixed.input_size == 5
    h = fixed.layers_of("h")
    assert h[0].vth == h[1].vth and h[0].k == pytest.approx(h[1].k)  # one population, one scale


def test_conversion_leaves_the_network_unchanged():
    w = sp.csr_array(np.array([[0.5, 0.0, -0.25], [0.0, 0.125, 0.0]]))
    net = chain(w.toarray())
    net.nodes["fc"].weight = w.copy()
    to_fixed(net)
    assert (net.nodes["fc"].weight != w).nnz == 0


# -- range errors (pinned messages) ------------------------------------------------------------------
def test_vth_out_of_range():
    with pytest.raises(ExportError, match=rf"^layer 'h': vth mantissa \d+ exceeds Lava's 17-bit limit {VTH_MAX}; "
                                          r"lower the threshold or the weight scale$"):
        to_fixed(chain([[0.001, -0.001]], vth=1000.0))


def test_bias_out_of_range():
    with pytest.raises(ExportError, match=r"^layer 'h': bias mantissa 12700 exceeds Lava's 13-bit limit 4095 even at "
                                          r"bias_exp 7; lower the bias or the weight scale$"):
        to_fixed(chain([[1.0, -1.0]], bias=[100.0]))


def test_weight_mantissa_out_of_range():
    with pytest.raises(ExportError, match=r"^layer 'h': weight mantissa 300 of connection 'fc' exceeds Lava's 8-bit "
                                          r"range \[-128, 127\] for mixed-sign weights; quantize with weight_bits <= 8$"):
        to_fixed(chain(0.01 * np.array([[300, -5]]), quant=Quantization(10, 0.01)))


def test_weight_exponent_out_of_range():
    net = Network({"in": Input("in", (2,)), "fc": Dense("fc", [[0.01, -0.01]]), "h": Neurons("h", (1,)),
                   "rec": Dense("rec", [[30.0]])}, [("in", "fc"), ("fc", "h"), ("h", "rec"), ("rec", "h")])
    with pytest.raises(ExportError, match=r"^layer 'h': connection 'rec' needs weight_exp 12, outside Lava's range "
                                          r"\[-7, 7\]; its weights are 2\^12 times larger"):
        to_fixed(net)


def test_connection_bias_needs_du_1():
    with pytest.raises(ExportError, match=r"^layer 'h': connection 'fc' has a bias, which Lava adds to v only, so it "
                                          r"needs du = 1 \(got du 0.5\); set du = 1 or move the bias to the population$"):
        to_fixed(chain([[1.0]], conn_bias=[0.1], du=0.5))


def test_one_input_only():
    net = Network({"a": Input("a", (1,)), "b": Input("b", (1,)), "fa": Dense("fa", [[1.0]]), "fb": Dense("fb", [[1.0]]),
                   "h": Neurons("h", (1,)), "g": Neurons("g", (1,))},
                  [("a", "fa"), ("fa", "h"), ("b", "fb"), ("fb", "g")])
    with pytest.raises(ExportError, match=r"^network has 2 inputs \(a, b\); the fixed-point form takes exactly one Input"):
        to_fixed(net)


# -- layout and structural folding --------------------------------------------------------------------
def test_whc_permutation():
    c, h, w = 2, 3, 4
    perm = whc_permutation((c, h, w))
    for x in range(w):
        for y in range(h):
            for ch in range(c):
                assert perm[(x * h + y) * c + ch] == (ch * h + y) * w + x
    assert whc_permutation((5,)).tolist() == list(range(5))


def lava_conv_scipy(input_whc, weight, stride, padding):
    """lava/proc/conv/utils.py conv_scipy (groups 1, dilation 1), transcribed: (x, y, c) layout."""
    sx, sy = stride
    px, py = padding
    kx, ky = weight.shape[1:3]
    xo = (input_whc.shape[0] + 2 * px - kx) // sx + 1
    yo = (input_whc.shape[1] + 2 * py - ky) // sy + 1
    out = np.zeros((xo, yo, weight.shape[0]))
    padded = np.pad(input_whc, ((px, px), (py, py), (0, 0)))
    for k in range(weight.shape[0]):
        for c in range(input_whc.shape[2]):
            out[:, :, k] += signal.convolve2d(padded[:, :, c], weight[k, :, :, c], mode="valid")[::sx, ::sy]
    return out


def test_lava_conv_layout_matches_spikefit_correlation():
    rng = np.random.default_rng(3)
    conv = Conv2d("c", rng.normal(0, 0.5, (3, 2, 3, 2)), (2, 7, 6), stride=(2, 1), padding=(1, 0))
    net = Network.sequential(Input("in", (2, 7, 6)), conv, Neurons("h", conv.output_shape))
    layer = to_fixed(net).layers[0]
    c = layer_geometry(layer)
    assert c["lava_input_shape"] == (6, 7, 2) and c["lava_stride"] == (1, 2) and c["lava_padding"] == (0, 1)
    s = (rng.random((2, 7, 6)) < 0.5).astype(float)
    want = F.conv2d(torch.tensor(s[None]), torch.tensor(layer.weight, dtype=torch.float64), stride=(2, 1),
                    padding=(1, 0))[0].numpy() * 2 ** layer.weight_exp
    got = lava_conv_scipy(s.reshape(-1)[whc_permutation(s.shape)].reshape(c["lava_input_shape"]),
                          lava_conv_weight(layer), c["lava_stride"], c["lava_padding"])
    assert got.shape == c["lava_output_shape"]
    flat = np.empty(got.size)
    flat[whc_permutation(c["output_shape"])] = got.reshape(-1)
    assert np.array_equal(flat, want.reshape(-1))


def test_conv_and_pool_matrices():
    rng = np.random.default_rng(4)
    conv = Conv2d("c", rng.normal(size=(3, 2, 3, 3)), (2, 5, 6), stride=(2, 1), padding=(1, 1))
    x = rng.normal(size=(2, 5, 6))
    want = F.conv2d(torch.tensor(x[None]), torch.tensor(conv.weight), stride=(2, 1), padding=(1, 1)).numpy().reshape(-1)
    assert np.allclose(conv_matrix(conv) @ x.reshape(-1), want)
    for kind in ("sum", "avg"):
        pool = Pool2d("p", kind, (2, 2), (2, 5, 6), padding=(1, 0))
        want = F.avg_pool2d(torch.tensor(x[None]), 2, padding=(1, 0), count_include_pad=True).numpy().reshape(-1)
        assert np.allclose(pool_matrix(pool) @ x.reshape(-1), want * (4 if kind == "sum" else 1))


def test_pooling_folds_into_the_connection():
    rng = np.random.default_rng(5)
    net = Network.sequential(Input("in", (1, 8, 8)), Pool2d("p", "sum", (2, 2), (1, 8, 8)), Flatten("fl", (1, 4, 4)),
                             Dense("fc", rng.normal(0, 0.4, (6, 16))), Neurons("h", (6,), vth=0.9), Output("o", (6,)))
    layer = to_fixed(net).layers[0]
    assert layer.kind == "dense" and layer.weight.shape == (6, 64) and layer.source == "in"
    conv = Network.sequential(Input("in", (1, 8, 8)), Pool2d("p", "avg", (2, 2), (1, 8, 8)),
                              Conv2d("c", rng.normal(size=(2, 1, 3, 3)), (1, 4, 4), padding=(1, 1)), Neurons("g", (2, 4, 4)))
    folded = to_fixed(conv).layers[0]
    assert folded.kind == "sparse" and folded.weight.shape == (32, 64) and folded.conv is None
    x = (rng.random((20, 10, 64)) < 0.3).astype(np.float32)
    fixed, flt = EmulatorBackend().run(net, x)["h"], EmulatorBackend("float").run(net, x)["h"]
    assert (fixed == flt).mean() > 0.97 and flt.sum() > 100
