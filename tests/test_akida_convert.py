"""The spikefit -> akida.Model converter: weight layouts, kernel flips and thresholds, checked against
Akida's own software forward pass (one step: Akida's layers are stateless, so a spikefit IF
population that starts at rest spikes exactly when Akida's 1-bit activation fires)."""
import json

import numpy as np

from clitools import invoke
from spikefit.network import Conv2d, Dense
from spikefit.nir_io import write_nir
from spikefit_akida.convert import to_akida
from spikefit_akida.corpus import FOUR, net

RNG = np.random.default_rng(0)


def _xcorr(x, w):
    """spikefit's (NIR's) Conv2d with 'same' padding: cross-correlation. x (b, c, h, w), w (f, c, k, k)."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((x.shape[0], w.shape[0]) + x.shape[2:])
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            out[:, :, i, j] = np.einsum("bchw,fchw->bf", xp[:, :, i:i + k, j:j + k], w)
    return out


def _reference(network, x):
    """One step of the network in integers: every connection, then spikes where the sum exceeds vth."""
    s = x.astype(float)
    for conn in network.connections():
        s = _xcorr(s, conn.weight) if isinstance(conn, Conv2d) else s.reshape(len(s), -1) @ conn.weight.T
        s = (s > network.populations()[0].vth).astype(float)
    return s


def _akida(network, x):
    out = to_akida(network).forward(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))   # (n, x=h, y=w, c)
    return out.reshape(len(x), -1) if out.shape[1:3] == (1, 1) else out.transpose(0, 3, 1, 2)


def _with_vth(network, vth=2.5):
    for pop in network.populations():
        pop.vth = vth
    return network


def test_convolution_and_fully_connected_layouts_match_akidas_forward():
    network = _with_vth(net((2, 6, 5), ("conv", 4, 3, FOUR, 1, None), ("flatten",), ("fc", 3, FOUR), seed=3))
    x = (RNG.random((16, 2, 6, 5)) < 0.5).astype(np.uint8)
    ref = _reference(network, x)
    assert ref.any() and not ref.all()
    assert np.array_equal(_akida(network, x), ref)


def test_the_input_convolution_is_not_flipped():
    network = _with_vth(net((1, 7, 6), ("conv", 4, 5, (-100, 100), 1, None), seed=5), vth=40.5)
    model = to_akida(network)
    assert model.layers[0].parameters.layer_type.name == "InputConvolutional"
    x = (RNG.random((8, 1, 7, 6)) < 0.5).astype(np.uint8)
    ref = _reference(network, x)
    assert ref.any() and not ref.all()
    assert np.array_equal(_akida(network, x), ref)


def test_weight_widths_and_thresholds():
    network = net((64,), ("fc", 16, (0, 1)), ("fc", 8, (-1, 1)), ("fc", 4, FOUR))
    fc = [c for c in network.connections() if isinstance(c, Dense)][0]
    fc.weight *= 0.5                                             # scale 0.5: the threshold counts integer steps
    model = to_akida(network)
    assert [la.parameters.weights_bits for la in model.layers[1:]] == [1, 2, 4]
    assert model.layers[1].get_variable("threshold").tolist() == [2] * 16     # floor(vth / 0.5)


def test_verify_vendor_check_on_the_command_line(tmp_path):
    path = write_nir(net((4, 8, 8), ("conv", 8, 3, FOUR, 1, None)), tmp_path / "conv.nir")
    result = invoke("verify", str(path), "--target", "akida", "--vendor-check", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    vendor = [r for r in rows if "akida" in r["name"] and "vendor" in r["name"]]
    assert vendor and vendor[0]["ok"] and "mapped on AKD1000" in json.dumps(vendor[0]), rows[-1]
