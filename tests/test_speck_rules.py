"""spikefit's own Speck 2f rules (targets/speck2f.py): memory formulas, the layer-to-core matching
(against sinabs's own Edmonds-Karp and against brute force) and the rows verify reports."""
from __future__ import annotations

import itertools
import re
import textwrap

import numpy as np
import pytest

import spikefit
from spikefit.errors import SpecError
from spikefit.network import Conv2d, Input, Network, Neurons, Output
from spikefit.targets import speck2f as speck
from spikefit_speck.corpus import Chain, big_neurons, two_sources

SPEC = spikefit.get_target("speck2f")


def rule_row(net: Network, rule: str, spec=SPEC):
    return spikefit.verify(net, spec).row(f"rule {rule}")


def layer_memory(net: Network) -> list[dict[str, int]]:
    return [layer.memory for layer in speck.core_layers(net)]


def test_memory_formulas_give_the_vendor_figures():
    # vendors.md: 60x33x33 needs 245,760 neuron entries; 65 channels at k=3 or a Linear 8192 -> 10 do not fit
    assert layer_memory(Chain("m", (1, 33, 33)).conv(60, 1).build())[0]["neuron"] == 245_760
    assert layer_memory(Chain("m", (65, 6, 6)).conv(64, 3, padding=1).build())[0]["kernel"] == 65 * 16 * 64
    dense = layer_memory(Chain("m", (32, 16, 16)).dense(10, bias=True).build())[0]
    assert dense == {"kernel": 32 * 256 * 16, "neuron": 10, "bias": 10}
    assert layer_memory(Chain("m", (12,)).dense(3).build())[0] == {"kernel": 12 * 1 * 4, "neuron": 3, "bias": 0}


def test_a_dense_layer_reading_a_map_is_a_conv_over_that_map_with_or_without_flatten():
    from spikefit_speck.corpus import _unflattened

    for net in (_unflattened("u", (640, 5, 5), 4), Chain("f", (640, 5, 5)).dense(4).build()):
        assert speck.core_layers(net)[0].in_shape == (640, 5, 5)
        assert layer_memory(net)[0]["kernel"] == 640 * 32 * 4          # not 640 * 25 * 4 = 64,000
    assert speck.core_layers(Chain("v", (12,)).dense(3).dense(2).build())[1].in_shape == (3, 1, 1)


def test_the_toml_holds_sinabs_per_core_memories():
    params = speck.RULES.parameters(SPEC)
    assert params["kernel_memory"] == speck.KERNEL_MEMORY == (16384,) * 3 + (32768,) * 2 + (65536,) * 2 + (16384,) * 2
    assert params["neuron_memory"] == speck.NEURON_MEMORY == (65536,) * 3 + (32768,) * 2 + (16384,) * 4
    assert params["bias_memory"] == (1024,) * 9 and params["pool_sizes"] == (1, 2, 4)
    assert SPEC.limits.cores == 9 and SPEC.limits.fan_out_cores == 2 and SPEC.limits.weight_bits == 8


def sinabs_matching(options: list[list[int]], n_cores: int) -> list[int] | None:
    """sinabs 3.1.3's own mapping.py on the same options (None: "No valid mapping found")."""
    from spikefit_speck.check import dynapcnn

    mapping = dynapcnn().mapping
    graph = mapping.make_flow_graph(options, n_cores)
    try:
        return mapping.recover_mapping(mapping.edmonds(graph, 0, len(graph) - 1), len(options))
    except ValueError:
        return None


def random_options(rng: np.random.Generator, n_cores: int = 9) -> list[list[int]]:
    n = int(rng.integers(1, n_cores + 1))
    p = rng.uniform(0.1, 0.6)
    return [sorted(int(c) for c in np.flatnonzero(rng.random(n_cores) < p)) for _ in range(n)]


def test_matching_assigns_the_same_cores_as_sinabs_on_random_instances():
    rng = np.random.default_rng(7)
    full = partial = 0
    for _ in range(400):
        options = random_options(rng)
        mine = speck.match_layers(options, 9)
        theirs = sinabs_matching(options, 9)
        if theirs is None:
            assert None in mine
            partial += 1
        else:
            assert mine == theirs
            full += 1
    assert full > 100 and partial > 100     # both outcomes are exercised


def test_matching_is_maximum_and_the_competing_layers_prove_it():
    rng = np.random.default_rng(11)
    for _ in range(150):
        options = random_options(rng, n_cores=5)
        cores = speck.match_layers(options, 5)
        placed = [c for c in cores if c is not None]
        assert len(set(placed)) == len(placed)                               # one layer per core
        assert all(c is None or c in opts for c, opts in zip(cores, options))
        best = max(sum(1 for i, c in enumerate(perm) if c is not None and c in options[i])
                   for perm in itertools.permutations(list(range(5)) + [None] * len(options), len(options)))
        assert len(placed) == best
        if None in cores:
            group, wanted = speck.competing(options, cores, cores.index(None))
            assert len(wanted) < len(group)                                   # Hall's condition fails here
            assert all(set(options[i]) <= set(wanted) for i in group)


def test_core_memory_row_places_every_layer_and_names_the_competing_layers():
    ok = rule_row(big_neurons(Chain("r1", (1, 33, 33)).conv(1, 1), 3).build(), "speck.core_memory")
    assert ok.ok and (ok.usage, ok.limit) == (4, 9)
    assert ok.detail == "layer -> core: lif1->3, lif2->1, lif3->2, lif4->0"   # sinabs's own assignment
    bad = rule_row(big_neurons(Chain("r2", (1, 33, 33)), 4).build(), "speck.core_memory")
    assert not bad.ok and (bad.usage, bad.limit, bad.worst) == (4, 3, "layer lif4")
    assert bad.detail.startswith("layers lif1, lif2, lif3, lif4 fit only cores 0, 1, 2: 4 layers for 3 cores")


def test_core_memory_row_names_the_memory_a_layer_overflows():
    row = rule_row(Chain("r3", (1, 33, 33)).conv(60, 1).build(), "speck.core_memory")
    assert not row.ok and (row.usage, row.limit) == (245_760, 65_536)
    assert "needs 245,760 neuron entries (60 x 64 x 64" in row.detail
    row = rule_row(Chain("r4", (65, 6, 6)).conv(64, 3, padding=1).build(), "speck.core_memory")
    assert (row.usage, row.limit) == (66_560, 65_536) and "66,560 kernel entries (65 x 16 x 64" in row.detail
    row = rule_row(_ten_layers(), "speck.core_memory")
    assert not row.ok and (row.usage, row.limit) == (10, 9)


def _ten_layers() -> Network:
    c = Chain("ten", (2, 6, 6))
    for _ in range(10):
        c.conv(2, 1)
    return c.build()


@pytest.mark.parametrize("net, rule, message", [
    (Chain("q1", (2, 8, 8)).conv(4, (3, 5)).build(), "speck.square_kernels",
     r"layer conv1 has a 3x5 kernel; use a square kernel"),
    (Chain("q2", (8, 4, 8)).dense(10).build(), "speck.square_kernels",
     r"dense layer fc1 reads a 4x8 map, so its kernel on Speck is 4x8"),
    (Chain("q3", (2, 16, 16)).conv(4, 3).pool((2, 1)).conv(8, 3).build(), "speck.pooling",
     r"pooling pool3: its 2x1 window is not square"),
    (Chain("q4", (2, 16, 16)).conv(4, 3).pool(2, stride=1).conv(8, 3).build(), "speck.pooling",
     r"pooling pool3: its stride 1x1 differs from its size 2x2"),
    (Chain("q5", (2, 34, 34)).conv(4, 3).pool(4).pool(2).conv(8, 3).build(), "speck.pooling",
     r"pooling pool4: size 8 \(pools chained up to it: 4 x 2\) is not one of 1, 2, 4"),
    (Chain("q5b", (2, 16, 16)).pool(2).conv(4, 3).build(), "speck.pooling",
     r"pooling pool1: it pools the network input; a Speck core pools its own neurons' output"),
    (Chain("q6", (1, 17, 17)).dense(10).build(), "speck.dense_as_conv",
     r"dense layer fc1 reads a 17x17 map, a 17x17 kernel on Speck \(at most 16\)"),
    (Chain("q7", (1025,)).dense(8).build(), "speck.dense_as_conv",
     r"dense layer fc1 has 1025 input channels on Speck \(at most 1024\)"),
    (two_sources("q8"), "speck.one_weight_layer",
     r"population merged is fed by 2 weight layers \(conv_a, conv_b\); feed each population from one layer"),
])
def test_each_rule_names_the_layer_and_the_fix(net, rule, message):
    row = rule_row(net, rule)
    assert not row.ok
    assert row.worst.startswith("layer ")
    assert re.search(message, row.detail), row.detail


def test_bias_must_be_constant_within_a_channel():
    net = Network.sequential(Input("in", (1, 4, 4)), Conv2d("c", np.ones((2, 1, 3, 3)), (1, 4, 4)),
                             Neurons("n", (2, 2, 2), bias=np.array([1, 1, 1, 1, 2, 2, 2, 3.0])), Output("o", (2, 2, 2)))
    row = rule_row(net, "speck.bias_per_channel")
    assert not row.ok and "different biases within channel 1" in row.detail
    net.nodes["n"].bias = np.array([1, 1, 1, 1, 2, 2, 2, 2.0])
    assert rule_row(net, "speck.bias_per_channel").ok


def test_every_rule_passes_on_a_network_speck_runs():
    net = Chain("lenet", (1, 28, 28)).conv(6, 5).pool(2).conv(16, 5).pool(2).dense(10).build()
    report = spikefit.verify(net, SPEC)
    assert report.ok, report.failures
    names = [r.name for r in report.rows if r.name.startswith("rule speck.")]
    assert names == [f"rule {r.name}" for r in speck.RULES.rules]


def spec_with(tmp_path, table: str):
    head = open(SPEC.path, encoding="utf-8").read().split("\n[rules.speck]\n")[0] + "\n"
    path = tmp_path / "speck-variant.toml"
    path.write_text(head.replace('name = "speck2f"', 'name = "speck-variant"') + textwrap.dedent(table))
    return spikefit.load_target(path)


def test_a_variant_chip_reads_its_own_memories_from_rules_speck(tmp_path):
    spec = spec_with(tmp_path, """
        [rules.speck]
        kernel_memory = [65536, 65536]
        neuron_memory = [65536, 65536]
        bias_memory = [1024, 1024]
        """)
    three = big_neurons(Chain("v", (1, 33, 33)), 3).build()
    row = rule_row(three, "speck.core_memory", spec)
    assert not row.ok and (row.usage, row.limit) == (3, 2)


@pytest.mark.parametrize("table, message", [
    ("kernel_memory = [65536, 65536]\n", r"rules\.speck\.neuron_memory has 9 entries but kernel_memory has 2; "
                                        r"give one entry per core"),
    ("pool_sizes = [2, -4]\n", r"rules\.speck\.pool_sizes must list positive integers; got \[2, -4\]"),
    ("kernel_memory = 65536\n", r"rules\.speck\.kernel_memory must be tuple; got int 65536"),
    ("kernel_memroy = [1]\n", r"rules\.speck\.kernel_memroy is not a parameter of rule set 'speck' "
                              r"\(did you mean 'kernel_memory'\?\)"),
])
def test_wrong_rule_parameters_are_spec_errors_naming_the_key(tmp_path, table, message):
    spec = spec_with(tmp_path, "[rules.speck]\n" + table)
    with pytest.raises(SpecError, match=message):
        spikefit.verify(Chain("p", (2, 6, 6)).conv(2, 3).pool(2).dense(4).build(), spec)
