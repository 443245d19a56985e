"""spikefit's own rules for Xylo Audio 2 (targets/xylo_audio2.py): the integer reading and each rule,
passing and failing, through verify (no vendor SDK involved)."""
from __future__ import annotations

import numpy as np
import pytest

import spikefit
from spikefit.errors import SpecError
from spikefit.network import Dense, Input, Network, Neurons, Output, Quantization
from spikefit.spec import load_target
from spikefit.targets import xylo_audio2 as xa2

TARGET = "xylo-audio2"


def net(hidden=32, n_out=8, n_in=16, seed=0, w_in=None, w_out=None, vth=(200.0, 100.0), quant=None, bias=None):
    rng = np.random.default_rng(seed)
    w_in = rng.integers(-100, 101, (hidden, n_in)).astype(float) if w_in is None else w_in
    w_out = rng.integers(-100, 101, (n_out, hidden)).astype(float) if w_out is None else w_out
    return Network.sequential(
        Input("in", (n_in,)), Dense("fc0", w_in, quant=quant), Neurons("h0", (hidden,), du=0.5, dv=0.125, vth=vth[0], bias=bias),
        Dense("fc1", w_out, quant=quant), Neurons("o", (n_out,), du=0.5, dv=0.125, vth=vth[1]), Output("out", (n_out,)))


def with_nodes(base: Network, nodes, edges) -> Network:
    return Network({**base.nodes, **{n.name: n for n in nodes}}, base.edges + edges)


def rows(network, rule):
    return [r for r in spikefit.verify(network, TARGET).rows if r.name == f"rule xylo.{rule}"]


def test_the_catalog_registers_the_rule_set_with_the_tomls_parameters():
    spec = spikefit.get_target(TARGET)
    assert spec.rule_tables["xylo"] == {"max_hidden_neurons": 1000, "max_weight_shift": 7, "max_recurrent_fan_out": 64}
    assert spec.limits.fan_out is None and spec.limits.outputs == 8 and spec.limits.inputs == 16
    assert spec.neuron.threshold_bits == 15 and spec.neuron.bias_bits == 16
    report = spikefit.verify(net(), TARGET)
    assert report.ok, report.table()
    names = {r.name for r in report.rows if r.name.startswith("rule ")}
    assert names == {f"rule {r.name}" for r in xa2.RULES.rules}


def test_reading_units_integers_thresholds_and_biases():
    q = Quantization(8, 0.25)
    n = net(w_in=np.full((32, 16), 0.75), w_out=np.full((8, 32), -0.5), quant=q, vth=(10.0, 2.6),
            bias=np.full(32, 1.1))
    r = xa2.read(n)
    assert [p.name for p in r.hidden] == ["h0"] and [p.name for p in r.output] == ["o"]
    assert [k.matrix for k in r.links] == ["input", "output"]
    assert r.unit == {"h0": 0.25, "o": 0.25}
    assert np.all(r.ints["fc0"] == 3) and np.all(r.ints["fc1"] == -2)
    assert r.threshold(n.nodes["h0"]) == 41   # v > 40 units is v >= 41
    assert r.threshold(n.nodes["o"]) == 11    # floor(10.4) + 1
    assert np.all(r.bias(n.nodes["h0"]) == 4)  # round(4.4)


def test_a_population_takes_the_smallest_step_of_its_inputs_and_off_grid_layers_are_named():
    base = net(hidden=8)
    rec = Dense("rec", np.full((8, 8), 0.3), quant=Quantization(8, 0.1))
    r = xa2.read(with_nodes(base, [rec], [("h0", "rec"), ("rec", "h0")]))
    assert r.unit["h0"] == pytest.approx(0.1)
    assert np.all(r.ints["rec"] == 3) and np.all(r.ints["fc0"] == np.rint(base.nodes["fc0"].weight * 10))
    off = net(w_in=np.full((32, 16), 0.5))
    assert xa2.read(off).off_grid == {"fc0": 1.0}
    (row,) = rows(off, "weight_shift")
    assert not row.ok and "weights of layer fc0 are not whole multiples of 1" in row.detail


@pytest.mark.parametrize("values, expected", [
    ([127, -128, 5], 0), ([128, 2], 1), ([254, -256], 1), ([381], None), ([127 * 128, -128 * 128], 7),
    ([127 * 256], None), ([], 0),
])
def test_smallest_shift(values, expected):
    assert xa2.smallest_shift(np.array(values, dtype=np.int64)) == expected


def test_dash_is_the_nearest_power_of_two_decay():
    assert [xa2.dash(d) for d in (1.0, 0.5, 0.125, 0.1, 0.0)] == [1, 1, 3, 3, 15]


def test_hidden_and_output_budgets_are_separate():
    (row,) = rows(net(hidden=1000), "hidden_neurons")
    assert row.ok and row.usage == 1000
    over = net(hidden=1001, n_out=7)
    report = spikefit.verify(over, TARGET)
    assert report.row("neurons").ok                     # 1008 in all still fits the total
    (row,) = rows(over, "hidden_neurons")
    assert not row.ok and row.usage == 1001 and row.worst == "largest: layer h0"
    assert not spikefit.verify(net(n_out=9), TARGET).row("outputs").ok


def test_two_neuron_layers():
    one = Network.sequential(Input("in", (16,)), Dense("fc0", np.ones((8, 16))), Neurons("o", (8,)), Output("out", (8,)))
    (row,) = rows(one, "two_neuron_layers")
    assert not row.ok and "add a hidden population" in row.detail


def test_output_neurons_may_not_be_recurrent_nor_feed_weights():
    base = net()
    rec = with_nodes(base, [Dense("rec_o", np.eye(8))], [("o", "rec_o"), ("rec_o", "o")])
    (row,) = rows(rec, "output_not_recurrent")
    assert not row.ok and "output population 'o' feeds itself" in row.detail
    back = with_nodes(base, [Dense("back", np.ones((32, 8)))], [("o", "back"), ("back", "h0")])
    assert rows(back, "output_not_recurrent")[0].ok
    (row,) = rows(back, "output_is_last")
    assert not row.ok and "feeds weight layer 'back'" in row.detail
    hidden_rec = with_nodes(base, [Dense("rec", np.eye(32))], [("h0", "rec"), ("rec", "h0")])
    assert spikefit.verify(hidden_rec, TARGET).ok


def test_one_input_matrix_into_hidden_neurons():
    base = net()
    skip = with_nodes(base, [Dense("skip_in", np.ones((8, 16)))], [("in", "skip_in"), ("skip_in", "o")])
    (row,) = rows(skip, "input_layer")
    assert not row.ok and row.usage == 2 and "Xylo has one input matrix" in row.detail
    direct = Network.sequential(Input("in", (16,)), Dense("fc0", np.ones((8, 16))), Neurons("o", (8,)),
                                Output("out", (8,)))
    (row,) = rows(direct, "input_layer")
    assert not row.ok and "feeds no hidden population" in row.detail
    neurons_first = Network.sequential(Input("in", (16,)), Neurons("h0", (16,)), Dense("fc1", np.ones((8, 16))),
                                       Neurons("o", (8,)), Output("out", (8,)))
    (row,) = rows(neurons_first, "neurons_fed_by_weights")
    assert not row.ok and "population 'h0' receives something other than a weight layer" in row.detail


def test_consecutive_weights_are_refused():
    n = Network.sequential(Input("in", (16,)), Dense("fc0", np.ones((24, 16))), Dense("fc0b", np.ones((32, 24))),
                           Neurons("h0", (32,)), Dense("fc1", np.ones((8, 32))), Neurons("o", (8,)), Output("out", (8,)))
    with pytest.raises(spikefit.SpikefitError, match="connection 'fc0' must have one source and one target population"):
        spikefit.verify(n, TARGET)   # verify itself refuses a weight layer that feeds a weight layer
    view = type("V", (), {"network": n, "row": staticmethod(lambda *a: a)})()
    usage, limit, ok, worst, detail = xa2.no_consecutive_weights(view)
    assert (usage, ok, worst) == (1, False, "layer fc0b") and "reads another weight layer" in detail


def test_weight_shift_per_matrix():
    ok = net(w_in=np.full((32, 16), 254.0), w_out=np.full((8, 32), 127.0 * 128))
    shifts = rows(ok, "weight_shift")
    assert [r.usage for r in shifts] == ["input: shift 1", "recurrent: shift 0", "output: shift 7"]
    assert all(r.ok for r in shifts)
    bad = net(w_out=np.full((8, 32), 381.0))
    row = rows(bad, "weight_shift")[2]
    assert not row.ok and row.usage == "output: max |w| 381" and row.worst == "layer fc1"
    assert "not int8 values times one power of two 2**0..2**7" in row.detail
    eight = net(w_out=np.full((8, 32), 127.0 * 256))
    assert not rows(eight, "weight_shift")[2].ok


def test_one_shift_is_shared_by_every_hidden_to_hidden_layer():
    two = Network.sequential(Input("in", (16,)), Dense("fc0", np.ones((16, 16))), Neurons("h0", (16,)),
                             Dense("mid", np.full((16, 16), 127.0)), Neurons("h1", (16,)),
                             Dense("fc2", np.ones((8, 16))), Neurons("o", (8,)), Output("out", (8,)))
    assert all(r.ok for r in rows(two, "weight_shift"))
    mixed = with_nodes(two, [Dense("rec", np.full((16, 16), 254.0))], [("h0", "rec"), ("rec", "h0")])
    row = rows(mixed, "weight_shift")[1]
    assert not row.ok and row.usage == "recurrent: max |w| 254"


def test_threshold_and_bias_ranges():
    assert rows(net(vth=(32766.0, 1.0)), "threshold_range")[0].ok
    (row,) = rows(net(vth=(32767.0, 1.0)), "threshold_range")
    assert not row.ok and row.usage == 32768 and row.worst == "layer h0" and "int16 thresholds" in row.detail
    assert rows(net(vth=(16383.0, 1.0), quant=Quantization(8, 0.5), w_in=np.full((32, 16), 0.5),
                    w_out=np.full((8, 32), 0.5)), "threshold_range")[0].ok
    assert rows(net(bias=np.full(32, 32767.0)), "bias_range")[0].ok
    (row,) = rows(net(bias=np.full(32, -32769.0)), "bias_range")
    assert not row.ok and row.usage == -32769 and "beyond int16" in row.detail


def test_weight_layer_bias_is_refused():
    n = net()
    n.nodes["fc0"] = Dense("fc0", n.nodes["fc0"].weight, bias=np.ones(32))
    (row,) = rows(n, "no_weight_bias")
    assert not row.ok and "weight layer 'fc0' has a bias" in row.detail


def test_recurrent_fan_out_counts_hidden_to_hidden_synapses_only():
    base = net(hidden=100, w_out=np.ones((8, 100)))
    w = np.zeros((100, 100))
    w[:64, 0] = 1
    rec = with_nodes(base, [Dense("rec", w)], [("h0", "rec"), ("rec", "h0")])
    (row,) = rows(rec, "recurrent_fan_out")
    assert row.ok and row.usage == 64             # plus 8 output synapses: not counted
    w[64, 0] = 1
    (row,) = rows(rec, "recurrent_fan_out")
    assert not row.ok and row.usage == 65 and row.worst == "layer h0 neuron 0"


def test_rules_xylo_parameters_come_from_the_spec(tmp_path):
    text = open(spikefit.get_target(TARGET).path, encoding="utf-8").read()
    small = text.replace('name = "xylo-audio2"', 'name = "xylo-small"').replace(
        "max_hidden_neurons = 1000", "max_hidden_neurons = 20")
    path = tmp_path / "xylo-small.toml"
    path.write_text(small)
    spec = load_target(path)
    (row,) = [r for r in spikefit.verify(net(), spec).rows if r.name == "rule xylo.hidden_neurons"]
    assert not row.ok and row.limit == 20
    path.write_text(small.replace("max_hidden_neurons = 20", "max_hidden = 20"))
    with pytest.raises(SpecError, match=r"rules.xylo.max_hidden is not a parameter of rule set 'xylo' "
                                        r"\(did you mean 'max_hidden_neurons'\?\)"):
        spikefit.verify(net(), load_target(path))
