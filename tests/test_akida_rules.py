"""spikefit's own AKD1000 rules (targets/akida.py): the measured formulas, the layer reading and the
report rows. No akida import: these run without the vendor package."""
import re

import numpy as np
import pytest

import spikefit
from spikefit.network import Conv2d, Dense, Input, Network, Neurons, Output, Quantization
from spikefit.targets import akida as A


@pytest.mark.parametrize("c, k, bits, per_np", [
    # points read from akida 2.19.3's layer.mapping.nps (filters per CNP at the default 504 split)
    (149, 7, 4, 8), (150, 7, 4, 0), (74, 7, 4, 16), (75, 7, 4, 8), (4, 7, 4, 336), (2, 7, 4, 384),
    (448, 5, 4, 8), (449, 5, 4, 0), (19, 3, 4, 488), (38, 3, 2, 456), (448, 7, 2, 8), (449, 7, 2, 0),
    (896, 3, 1, 40), (897, 3, 1, 0), (33, 5, 1, 432), (2, 1, 1, 504), (304, 1, 1, 384), (449, 1, 4, 0),
])
def test_filters_per_np_matches_the_mapper(c, k, bits, per_np):
    assert A.filters_per_np(c, k, bits) == per_np


@pytest.mark.parametrize("inputs, units, bits, fnp3", [
    (16, 1075, 4, True), (16, 1076, 4, False), (1000, 54, 4, True), (1000, 55, 4, False),
    (3000, 109, 1, True), (3000, 110, 1, False), (980, 162, 2, True), (980, 163, 2, False),
])
def test_fnp3_memory_matches_the_mapper(inputs, units, bits, fnp3):
    assert A.fc_on_fnp3(units, inputs, bits) is fnp3


def _conv_net(c_in, filters=8, k=3, h=8, w=8, lo=-7, hi=7, stride=1, padding=None, then_fc=True):
    rng = np.random.default_rng(0)
    wt = rng.integers(lo, hi + 1, size=(filters, c_in, k, k)).astype(float)
    conv = Conv2d("conv", wt, (c_in, h, w), stride=stride, padding=(k // 2, k // 2) if padding is None else padding)
    nodes = [Input("in", (c_in, h, w)), conv, Neurons("n1", conv.output_shape)]
    return Network.sequential(*nodes, Output("out", conv.output_shape))


def test_layer_reading_picks_the_input_convolution_for_1_or_3_channels():
    assert A.akida_layers(_conv_net(1))[0].kind == "input_conv"
    assert A.akida_layers(_conv_net(3))[0].kind == "input_conv"
    la = A.akida_layers(_conv_net(4, h=6, w=5))[0]
    assert (la.kind, la.in_shape, la.out_shape) == ("conv", (6, 5, 4), (6, 5, 8))
    assert A.processors(la) == ("CNP", 1)


def test_processors_count_space_and_filters():
    la = A.akida_layers(_conv_net(100, filters=632, k=7))[0]
    assert A.processors(la) == ("CNP", 79)                        # 8 filters of 100 channels per CNP
    la = A.akida_layers(_conv_net(4, h=78 * 32 + 1, w=257))[0]
    assert A.processors(la) == ("CNP", 79 * 2)                    # ceil(x / 32) * ceil(y / 256)


@pytest.mark.parametrize("x, y, c, k, parts", [
    # the mapper's CNP count of an 8-filter convolution (MapMode.Minimal), akida 2.19.3
    (32, 512, 4, 3, 2), (4, 300, 700, 1, 5), (32, 256, 505, 7, 18), (64, 30, 300, 5, 3), (40, 256, 100, 7, 4),
    (56, 256, 100, 7, 6), (64, 600, 100, 5, 16), (100, 256, 300, 3, 30), (33, 600, 700, 7, 86), (44, 256, 100, 5, 4),
])
def test_spatial_split_matches_the_mapper(x, y, c, k, parts):
    la = A.akida_layers(_conv_net(c, k=k, h=x, w=y))[0]
    assert A.spatial_split(la) == parts


def test_weights_become_integers_by_the_quantization_scale_or_the_grid():
    d = Dense("fc", np.array([[0.5, -1.5], [3.5, 0.0]]))
    k, s = A.integer_weights(d)
    assert s == 0.5 and k.tolist() == [[1, -3], [7, 0]]
    d.quant = Quantization(weight_bits=8, scale=0.25)
    k, s = A.integer_weights(d)
    assert s == 0.25 and k.tolist() == [[2, -6], [14, 0]]
    d.quant = Quantization(weight_bits=8, scale=0.3)
    with pytest.raises(A.NotAkida, match=r"weights of layer 'fc' are not on the Quantization scale 0.3"):
        A.integer_weights(d)
    assert A.weight_bits(0, 1, False) == 1 and A.weight_bits(-1, 1, False) == 2
    assert A.weight_bits(-7, 7, False) == 4 and A.weight_bits(-8, 7, False) is None
    assert A.weight_bits(-128, 127, True) == 8


def test_graphs_without_an_akida_form_name_the_node():
    net = _conv_net(4)
    net.nodes["rec"] = Dense("rec", np.eye(512))
    net.edges += [("n1", "rec"), ("rec", "n1")]
    with pytest.raises(A.NotAkida, match=r"edge rec -> n1 is recurrent"):
        A.akida_layers(net)
    two = Network({"a": Input("a", (4,)), "b": Input("b", (4,))}, [])
    with pytest.raises(A.NotAkida, match=r"has 2 inputs"):
        A.akida_layers(two)


def _row(net, name):
    report = spikefit.verify(net, "akida")
    return report, report.row(f"rule akida.{name}")


def test_verify_reports_each_rule_by_name():
    report = spikefit.verify(_conv_net(4), "akida")
    names = {r.name for r in report.rows}
    assert {f"rule akida.{n}" for n in ("sequential", "kernels", "sizes", "pooling", "weights", "filter_memory",
                                         "neural_processors")} <= names
    assert report.ok


@pytest.mark.parametrize("net, rule, detail", [
    (_conv_net(150, k=7), "filter_memory", r"a 7x7 filter of 150 channels at 4 bits does not fit a CNP"),
    (_conv_net(100, filters=632, k=7), "neural_processors", r"need 79 neural processors \(79 CNP, 0 FNP3, 0 FNP2\)"),
    (_conv_net(4, lo=-8), "weights", r"integer weights of layer conv span \[-8, 7\], outside \[-7, 7\]"),
    (_conv_net(4, k=5, stride=2, h=16, w=16), "kernels", r"stride \(2, 2\) of 5x5 layer conv is not supported"),
    (_conv_net(4, padding=(0, 0)), "kernels", r"padding \(0, 0\) of layer conv is not 'same'"),
    (_conv_net(3, filters=33, k=7), "sizes", r"input convolution conv \(3 channels, 7x7\) has 33 filters, more than 32"),
])
def test_failing_rules_say_why_and_how_to_fix(net, rule, detail):
    report, row = _row(net, rule)
    assert not report.ok and not row.ok
    assert re.search(detail, row.detail), row.detail


def test_catalog_numbers_are_the_vendors():
    spec = spikefit.get_target("akida")
    lim = spec.limits
    assert (lim.neurons, lim.cores, lim.synapses, lim.fan_in, lim.weight_bits) == (None, None, None, None, 8)
    assert spec.layers.max_kernel == 7 and spec.layers.max_channels == 2048
    assert A.NPS == 78 and A.FC_MAX_INPUTS == 57334
