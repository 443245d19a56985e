"""spikefit.placement: the one placement that verify, FSC and CAT share."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spikefit import cat as C
from spikefit import chipfit, fsc, plugins
from spikefit.fitcheck import verify
from spikefit.network import Conv2d, Flatten, Input, Network, Neurons, Output, Pool2d
from spikefit.nn import SNN
from spikefit.placement import count_cores, place
from spikefit.spec import TargetSpec


def random_model(rng: np.random.Generator) -> SNN:
    model = SNN.mlp(int(rng.integers(8, 65)), [int(rng.integers(4, 300))], int(rng.integers(2, 17)),
                    dv=float(rng.choice([0.0, 0.125])), seed=int(rng.integers(1 << 16)))
    with torch.no_grad():
        for s in model.synapses():
            s.mask.copy_(torch.as_tensor(rng.random(tuple(s.mask.shape)) < rng.uniform(0.05, 1.0)))
    model.apply_masks()
    return model


@pytest.mark.parametrize("name", [t.name for t in plugins.list_targets()])
def test_the_trainer_places_networks_where_verify_does(name):
    target = plugins.get_target(name)
    rng = np.random.default_rng(abs(hash(name)) % (1 << 32))
    for _ in range(3):
        model = random_model(rng)
        net = model.to_network()
        checked = verify(net, target).placement                  # verify's placement
        trainer = place(model.to_network(), target)              # what CAT's core groups and chipfit read
        assert trainer.n_cores == checked.n_cores
        for key in ("neurons", "synapses", "parameter_sets"):
            assert np.array_equal(getattr(trainer, key), getattr(checked, key)), key
        for pop in trainer.bounds:
            assert np.array_equal(trainer.core_of(pop), checked.core_of(pop))
        groups, G = C.core_groups(model, target)                  # one codebook per core, across layers
        core_to_group = {}
        for s in model.synapses():
            post = model.post_of(s).name
            for core, g in zip(checked.core_of(post).tolist(), groups[s.name].tolist()):
                assert core_to_group.setdefault(core, g) == g     # a core's layers share its codebook
        assert G == len(set(core_to_group.values()))


def test_pruning_aims_at_the_placement_verify_then_finds():
    target = TargetSpec.from_dict({"name": "t", "limits": {"neurons_per_core": 16, "synapses_per_core": 120,
                                                          "axons_per_core": 20, "cores": 4}})
    model = SNN.mlp(40, [40], 6, seed=3)
    aim = place(model.to_network(), target, by_neurons=True)
    assert aim.n_cores == 3 and place(model.to_network(), target).n_cores > 4
    rng = np.random.default_rng(0)
    fsc.prune_synapses(model, {s.name: rng.random(tuple(s.weight.shape)) for s in model.synapses()},
                       target.limits, placement=aim)
    report = verify(model.to_network(), target)
    assert report.ok
    for pop in aim.bounds:
        assert np.array_equal(aim.core_of(pop), report.placement.core_of(pop))
    assert chipfit.binding(model, target) == []


def test_core_groups_join_cores_a_convolution_channel_spans():
    net = Network.sequential(Input("in", (1, 4, 4)), Conv2d("c1", np.ones((3, 1, 3, 3)), (1, 4, 4), padding=(1, 1)),
                             Neurons("n1", (3, 4, 4)), Flatten("f", (3, 4, 4)))
    target = TargetSpec.from_dict({"name": "t", "limits": {"neurons_per_core": 20}})
    pl = place(net, target)
    assert pl.core_of("n1").tolist() == [0] * 20 + [1] * 20 + [2] * 8
    groups, G = pl.core_groups({"c1": ("n1", 16)})   # channel 1 spans cores 0-1, channel 2 cores 1-2
    assert G == 1 and groups["c1"].tolist() == [0, 0, 0]
    groups, G = pl.core_groups({"c1": ("n1", 1)})    # rows of one neuron: one group per core
    assert G == 3 and groups["c1"].tolist()[:21] == [0] * 20 + [1]


def test_count_cores_follows_share_layers_and_parameter_sets():
    pops = [(100, Neurons("a", (100,), vth=1.0)), (30, Neurons("b", (30,), vth=2.0))]
    spec = lambda **core: TargetSpec.from_dict({"name": "t", "limits": {"neurons_per_core": 64}, "core": core})
    assert count_cores(spec(), pops) == 3                                   # 64 | 36 + 28 | 2
    assert count_cores(spec(share_layers=False), pops) == 3                 # 64 | 36 | 30
    assert count_cores(spec(shared=["vth"]), pops) == 3                     # one vth per core: b starts a core
    assert count_cores(spec(), [(10, pops[0][1])]) == 1


def test_pool_then_conv_is_measured_not_crashed():
    """A SumPool2d feeding a Conv2d used to fail with 'dimension mismatch' (exit 1): the convolution
    was sized from the un-pooled source."""
    net = Network.sequential(Input("in", (2, 8, 8)), Conv2d("c1", np.ones((4, 2, 3, 3)), (2, 8, 8), padding=(1, 1)),
                             Neurons("n1", (4, 8, 8)), Pool2d("p", "sum", (2, 2), (4, 8, 8)),
                             Conv2d("c2", np.ones((3, 4, 3, 3)), (4, 4, 4)), Neurons("n2", (3, 2, 2)),
                             Output("o", (3, 2, 2)))
    report = verify(net, TargetSpec.from_dict({"name": "t", "limits": {"fan_in": 200}}))
    assert report.ok
    c2 = next(s for s in report.layers if s.name == "c2")
    assert c2.fan_in_max == 4 * 9 * 4        # 36 taps, each reading a 2x2 pool window of n1
