"""spikefit's speck2f verdict against sinabs's own mapping, on a representative subset of the corpus
(the whole corpus runs in `spikefit bench vendor-agreement --target speck2f`)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import spikefit
from spikefit.cli import cli
from spikefit.network import Dense, Input, Network, Neurons
from spikefit.plugins import owner_of
from spikefit.vendor import VendorCheck, get_vendor_check, spikefit_verdict, vendor_verdict
from spikefit_speck.check import SinabsCheck
from spikefit_speck.corpus import Chain, corpus

SPEC = spikefit.get_target("speck2f")
CASES = {c.name: c for c in corpus()}
# one or two per limit and rule: inside and outside
SUBSET = [
    "neuron-memory-16x64x64-at-64Ki", "neuron-memory-60x33x33-rounds-to-240Ki",
    "kernel-memory-64ch-k3-f64-at-64Ki", "kernel-memory-65ch-k3-f64-over-64Ki",
    "kernel-memory-dense-4096-to-10", "kernel-memory-dense-8192-to-10",
    "kernel-memory-dense-reads-640x5x5-map-unflattened", "kernel-memory-dense-reads-640x5x5-map-to-2",
    "bias-memory-1024-channels", "bias-memory-1025-channels",
    "match-small-layer-first-then-three-big", "match-four-layers-need-64Ki-neurons",
    "match-eight-layers-fill-the-large-cores", "match-nine-layers-no-core-for-the-last",
    "cores-nine-small-layers", "cores-ten-small-layers",
    "kernel-square-3x3", "kernel-non-square-3x5", "dense-after-non-square-flatten-8x4x8",
    "destinations-2", "destinations-2-one-pooled-one-direct", "weights-int8-full-range", "neurons-lif",
    "pool-sum2-then-conv", "pool-avg2-then-conv", "pool-lenet", "pool-stride-differs-from-size",
    "pool-of-the-input-then-conv",
    "two-weight-layers-into-one-population",
    # known differences: sinabs accepts what the datasheet forbids, or rescales
    "kernel-17x17", "channels-1025-outputs", "destinations-3", "weights-beyond-int8", "pool-size-3",
]


def test_the_sinabs_check_is_registered_for_speck2f_by_the_speck_plugin():
    check = get_vendor_check("speck2f")
    assert isinstance(check, SinabsCheck) and isinstance(check, VendorCheck)
    assert (check.name, check.target) == ("sinabs", "speck2f")
    assert owner_of("vendor_check", "speck2f") == "speck"


def test_corpus_covers_the_limits_deterministically():
    assert len(CASES) >= 40 and all(name.startswith("speck/") for name in CASES)
    again = {c.name: c for c in corpus()}
    for name, case in CASES.items():
        for node, other in zip(case.network.nodes.values(), again[name].network.nodes.values()):
            if hasattr(node, "weight"):
                np.testing.assert_array_equal(node.weight, other.weight)
    known = [c for c in CASES.values() if c.known_difference]
    assert len(known) >= 5 and all(c.expect is True for c in known)   # sinabs accepts, spikefit refuses
    assert sum(c.expect is False for c in CASES.values()) >= 15


@pytest.mark.parametrize("name", SUBSET)
def test_spikefit_agrees_with_sinabs(name):
    case = CASES[f"speck/{name}"]
    vendor = vendor_verdict(case.network, SPEC)
    fits, why = spikefit_verdict(case.network, SPEC)
    assert vendor.fits is case.expect, vendor.message
    if case.known_difference:
        assert (vendor.fits, fits) == (True, False), why
    else:
        assert fits is vendor.fits, (why, vendor.message)


def test_the_verdict_carries_sinabs_own_words():
    check = SinabsCheck()
    assert check.check(CASES["speck/match-four-layers-need-64Ki-neurons"].network, SPEC).message.startswith(
        "ValueError: No valid mapping found. One or more of the DynapcnnLayers could not be mapped to any core.")
    assert check.check(CASES["speck/neurons-lif"].network, SPEC).message == (
        "UnsupportedLayerType: The provided SNN contains LIF layers:")
    ok = check.check(CASES["speck/match-small-layer-first-then-three-big"].network, SPEC)
    assert ok.fits and ok.message == "mapped 4 layers on cores (lif1->3, lif2->1, lif3->2, lif4->0)"


def test_a_network_with_no_sinabs_equivalent_is_not_judged():
    rec = Network({"in": Input("in", (3,)), "fc": Dense("fc", np.ones((3, 3))), "n": Neurons("n", (3,)),
                   "rec": Dense("rec", np.ones((3, 3)))}, [("in", "fc"), ("fc", "n"), ("n", "rec"), ("rec", "n")])
    v = SinabsCheck().check(rec, SPEC)
    assert v.fits is None and v.message.startswith("no sinabs equivalent: edge rec -> n is recurrent")


def test_verify_vendor_check_adds_sinabs_row(tmp_path):
    path = tmp_path / "four.nir"
    spikefit.write_nir(CASES["speck/match-four-layers-need-64Ki-neurons"].network, path)
    result = CliRunner().invoke(cli, ["verify", str(path), "--target", "speck2f", "--vendor-check"])
    assert result.exit_code == 1, result.output
    assert "rule speck.core_memory" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("vendor check (sinabs)"))
    assert "does not fit" in row and "No valid mapping found" in row


def random_chain(rng: np.random.Generator, name: str):
    """A random conv / pool / dense chain near Speck's memory limits, inside the datasheet limits that
    sinabs does not check (kernel <= 8, channels <= 128, single pools of 2), so sinabs and spikefit must
    agree on it; None when the drawn shapes do not make a network."""
    c = Chain(name, (int(rng.integers(1, 20)), int(rng.integers(4, 40)), int(rng.integers(4, 40))), wmax=50)
    last = ""
    try:
        for _ in range(int(rng.integers(1, 6))):
            r = rng.random()
            if len(c.shape) == 3 and r < 0.55:
                k = int(rng.integers(1, min(c.shape[1], c.shape[2], 8) + 1))
                c.conv(int(rng.choice([1, 2, 4, 8, 16, 17, 33, 64, 65, 128])), k,
                       stride=int(rng.choice([1, 1, 2])), padding=int(rng.integers(0, 2)), bias=bool(rng.random() < 0.3))
                last = "conv"
            elif len(c.shape) == 3 and r < 0.75 and min(c.shape[1:]) >= 2 and last != "pool":
                c.pool(2, kind=str(rng.choice(["sum", "avg"])))
                last = "pool"
            else:
                c.dense(int(rng.choice([2, 10, 64, 100, 500])), bias=bool(rng.random() < 0.3))
                last = "dense"
        return c.build() if c.n else None
    except spikefit.ModelError:
        return None


def test_spikefit_agrees_with_sinabs_on_random_chains():
    rng = np.random.default_rng(2026)
    nets = [n for n in (random_chain(rng, f"random{i}") for i in range(12)) if n is not None][:8]
    verdicts = []
    for net in nets:
        vendor = vendor_verdict(net, SPEC)
        fits, why = spikefit_verdict(net, SPEC)
        assert fits is vendor.fits, (net.summary(), why, vendor.message)
        verdicts.append(vendor.fits)
    assert len(nets) == 8 and True in verdicts and False in verdicts
