"""Akida's own fit check (plugins/spikefit-akida) against spikefit's verdict, on a subset of the corpus
that touches every rule; the full corpus runs in `spikefit bench vendor-agreement --target akida`."""
import subprocess
import sys

import numpy as np
import pytest

import spikefit
from spikefit.vendor import get_vendor_check, spikefit_verdict
from spikefit_akida.corpus import corpus, random_networks

SUBSET = (
    "fc/inputs-57334", "fc/inputs-57335-mostly-zero", "fc/layers-23", "fc/fnp3-1075-then-fnp2-4",
    "fc/fnp2-1076-then-fnp2-4", "weights/4bit-minus8", "weights/input-conv-8bit-127",
    "weights/input-conv-all-zero", "weights/off-grid", "conv/kernel-3x5", "conv/input-conv-kernel-1",
    "conv/stride-3", "conv/padding-valid", "conv/input-conv-padding-valid", "conv/filters-2049",
    "conv/input-conv-3ch-k7-filters-33", "memory/4bit-k7-c149", "memory/4bit-k7-c150", "memory/1bit-k3-c897",
    "nps/conv-x-78x32", "nps/conv-x-78x32-plus-1", "nps/conv-63-fc-16", "pool/global-then-conv",
    "pool/avg-2x2-then-conv", "pool/sum-2x2-then-conv", "pool/global-x-33", "structure/lif-leak",
    "structure/recurrent",
)
CASES = {c.name.removeprefix("akida/"): c for c in corpus()}


def test_the_corpus_covers_the_limits_and_is_deterministic():
    assert len(CASES) >= 40
    assert set(SUBSET) <= set(CASES)
    again = {c.name.removeprefix("akida/"): c for c in corpus()}
    a, b = CASES["memory/4bit-k7-c149"].network, again["memory/4bit-k7-c149"].network
    assert np.array_equal(a.nodes["conv1"].weight, b.nodes["conv1"].weight)
    assert {c.expect for c in CASES.values()} == {True, False, None}


@pytest.mark.parametrize("name", SUBSET)
def test_spikefit_agrees_with_akida(name):
    case, spec = CASES[name], spikefit.get_target("akida")
    vendor = get_vendor_check("akida").check(case.network, spec)
    assert vendor.fits is case.expect, vendor.message
    ours, why = spikefit_verdict(case.network, spec)
    if vendor.fits is None:
        assert ours is not True, why              # nothing Akida cannot express may fit
    elif case.known_difference:
        assert ours != vendor.fits
    else:
        assert ours == vendor.fits, f"akida: {vendor.message} | spikefit: {why}"


def test_the_verdict_carries_akidas_own_words():
    check = get_vendor_check("akida")
    v = check.check(CASES["memory/4bit-k7-c150"].network, spikefit.get_target("akida"))
    assert v.fits is False and v.message.startswith("Cannot map layer 'conv1'. Filter size is too big to fit in a CNP")
    v = check.check(CASES["nps/conv-x-78x32"].network, spikefit.get_target("akida"))
    assert v.fits is True and v.message == "mapped on AKD1000 in one sequence (78 CNP1)"
    v = check.check(CASES["structure/recurrent"].network, spikefit.get_target("akida"))
    assert v.fits is None and "edge rec -> n1 is recurrent" in v.message


def test_the_plugin_registers_without_importing_akida():
    code = ("import sys, spikefit; from spikefit.vendor import get_vendor_check; "
            "c = get_vendor_check('akida'); print(c.name, c.target, 'akida' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["akida", "akida", "False"]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_networks_agree_with_akida(seed):
    """Beyond the corpus: seeded random convolutional networks (channels, kernels, widths, strides,
    filters, pooling and dense heads drawn at random)."""
    check, spec = get_vendor_check("akida"), spikefit.get_target("akida")
    for network in random_networks(seed, 6, max_side=64, max_y=40):
        vendor = check.check(network, spec)
        ours, why = spikefit_verdict(network, spec)
        if vendor.fits is None:
            assert ours is not True
        else:
            assert ours == vendor.fits, f"akida: {vendor.message} | spikefit: {why}"


def test_without_akida_the_check_says_how_to_install_it(monkeypatch):
    from spikefit.errors import PluginError

    monkeypatch.setitem(sys.modules, "akida", None)           # `import akida` raises ImportError
    with pytest.raises(PluginError, match=r"^akida is not installed; install it with `make install` \(akida==2.19.3"):
        get_vendor_check("akida").check(CASES["fc/inputs-57334"].network, spikefit.get_target("akida"))
