"""The compression grid on the convolutional default network of digits-image: every method runs on it,
codebooks are per output channel, the dense reference scales the channel counts to the synapse budget."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from spikefit import cat as C
from spikefit.baselines import run_method
from spikefit.bench.compression import compression
from spikefit.bench.compression_grid import DEFAULT_METHODS
from spikefit.compress import pruners as P
from spikefit.datasets import load_dataset
from spikefit.errors import TrainingError
from spikefit.nn import Conv, Linear
from spikefit.trainer import FitConfig, default_model
from spikefit.training.config import DEFAULT_CONV, default_synapses

TINY = FitConfig(steps=6, batch_size=32, warmup_epochs=1, cat_epochs=1, prune_rounds=2, prune_epochs=1,
                 finetune_epochs=1, train_limit=64, test_limit=64, fisher_samples=64, threads=1, deploy=False,
                 device="cpu")
PRUNING = ("fsc", "fsc-point", "fsc-regrow", "fsc-gmp", "gmp", "gmp-layer", "snip", "rigl", "rewire", "magnitude",
           "random")
QUANTIZING = ("cat", "cat-hard", "cat-soft", "cat-lloyd", "kmeans", "lsq", "dkm", "kmeans-qat")
FULL = 144 + 16 * 32 * 9 + 32 * 4 * 4 * 10      # conv 1->16 3x3, conv 16->32 3x3 stride 2, dense 512->10


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits-image")


def test_default_network_is_the_conv_of_the_table(ds):
    m = default_model(ds, FitConfig())
    convs = [s for s in m.synapses() if isinstance(s, Conv)]
    assert [tuple(s.weight.shape) for s in convs] == [(16, 1, 3, 3), (32, 16, 3, 3)]
    assert [s.stride for s in convs] == [(1, 1), (2, 2)] and isinstance(m.synapses()[-1], Linear)
    assert [p.shape for p in m.populations()] == [(16, 8, 8), (32, 4, 4), (10,)]
    assert sum(s.mask.numel() for s in m.synapses()) == default_synapses(ds, (16, 32)) == FULL
    for channels in [(1, 1), (3, 7), (40, 9)]:      # the formula counts what the built network holds
        built = default_model(ds, FitConfig(hidden=channels))
        assert sum(s.mask.numel() for s in built.synapses()) == default_synapses(ds, channels)


def test_hidden_of_the_wrong_length_or_size_is_one_line(ds):
    with pytest.raises(TrainingError, match=r"hidden \(16, 32, 64\) gives 3 channel counts but the default network "
                                            r"of 'digits-image' has 2 convolutions; pass 2 \(default \(16, 32\)\)"):
        default_model(ds, FitConfig(hidden=(16, 32, 64)))
    with pytest.raises(TrainingError, match=r"hidden \(16, 0\) must list at least one layer size, each at least 1"):
        FitConfig(hidden=(16, 0))


@pytest.mark.parametrize("method", sorted(set(DEFAULT_METHODS) | set(PRUNING) | set(QUANTIZING) | {"uniform"}))
def test_every_method_runs_on_the_conv_network(method):
    M = None if method in ("float", "ternary") else 4
    sparsity = 0.75 if method in PRUNING + ("dense",) else 0.0
    r = run_method(method, "digits-image", M, sparsity, 0, TINY, threads=1)
    assert 0.0 <= r["accuracy"] <= 1.0
    if method == "dense":
        assert r["measured_sparsity"] == 0.0 and r["synapses"] <= round(FULL * 0.25)
        assert [s[1:] for s in r["shapes"]] == [[8, 8], [4, 4]] and r["shapes"][0][0] < 16
    else:
        assert r["shapes"] == [[16, 8, 8], [32, 4, 4]]
        assert r["measured_sparsity"] == pytest.approx(sparsity, abs=1e-3)
        assert r["synapses"] == round(FULL * (1 - sparsity))
    if method == "float":
        assert r["max_distinct"] is None
    elif method in ("ternary", "uniform"):
        assert 1 <= r["max_distinct"] <= 3       # ternary ±1; uniform 2-bit: -2, -1, 1
    else:
        assert 1 <= r["max_distinct"] <= 4


def test_neuron_scope_codebooks_are_the_output_channels(ds):
    m = default_model(ds, FitConfig())
    C.attach_cat(m, C.CatSpec(4, "neuron", 8, "layer", "hard"))
    for s in m.synapses():
        assert s.quant.groups.numpy().tolist() == list(range(s.n_out))   # one codebook per channel / neuron
        assert s.quant.codebook.centers.shape == (s.n_out, 4)
    assert max(C.distinct_per_group(m).values()) <= 4
    r = run_method("cat", "digits-image", 4, 0.0, 0, TINY, scope="neuron", threads=1)
    assert 1 <= r["max_distinct"] <= 4


@pytest.mark.parametrize("sparsity", [0.5, 0.75, 0.9, 0.95])
def test_equal_width_of_the_conv_network_is_the_largest_under_the_budget(ds, sparsity):
    count = lambda h: default_synapses(ds, h)                     # noqa: E731
    budget = int(round(FULL * (1 - sparsity)))
    w = P.equal_width(ds.n_inputs, (16, 32), ds.n_classes, budget, count=count)
    assert count(w) <= budget
    reachable = {tuple(max(1, round(f * h)) for h in (16, 32)) for f in np.linspace(0.0, 1.0, 20001)}
    assert count(w) == max(count(c) for c in reachable if count(c) <= budget)   # no common factor does better
    with pytest.raises(TrainingError, match=r"10 synapses are fewer than a network with one neuron \(channel\) per "
                                            r"hidden layer has \(178\)"):
        P.equal_width(ds.n_inputs, (16, 32), ds.n_classes, 10, count=count)
    assert DEFAULT_CONV["digits-image"].synapses((1, 8, 8), (1, 1), 10) == 178


def test_bench_compression_takes_the_conv_dataset(tmp_path):
    res = CliRunner().invoke(compression, ["--dataset", "digits-image", "--seeds", "1", "--methods", "float,cat,fsc,gmp,dense",
                                           "--M", "4", "--sparsity", "0,0.9", "--epochs", "0", "--train-limit", "32",
                                           "--test-limit", "32", "--timing-steps", "0", "--energy-targets", "none",
                                           "--quiet", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "# Compression benchmark: digits-image" in res.output
    assert (tmp_path / "compression_digits-image.json").exists()
    assert (tmp_path / "digits-image_synapses_magnitude.png").exists()   # accuracy vs synapses kept
    rows = {r["method"]: r for r in json.loads((tmp_path / "compression_digits-image.json").read_text())["summary"]
            if r["sparsity"] == 0.9}
    assert rows["fsc"]["synapses"] == round(0.1 * FULL) and rows["dense"]["synapses"] <= rows["fsc"]["synapses"]
    bad = CliRunner().invoke(compression, ["--dataset", "digits16", "--quiet"])
    assert bad.exit_code == 2 and "'digits16' is not one of 'digits', 'mnist1d', 'digits-image'" in bad.output
