"""Chip rules as plugin code (spikefit.rules) and vendor checks (spikefit.vendor): hooks, parameters,
reporting, and a rule that raises."""
from __future__ import annotations

import re

import numpy as np
import pytest

from spikefit import PluginError, SpecError, TargetSpec, hookimpl, plugins, verify
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.rules import ChipView, Rule, RuleSet, rule_sets_for
from spikefit.vendor import Case, VendorVerdict, get_vendor_check, spikefit_verdict, vendor_verdict


def net(hidden: int = 4, out: int = 3) -> Network:
    rng = np.random.default_rng(0)
    return Network.sequential(Input("in", (5,)), Dense("fc1", rng.integers(1, 3, (hidden, 5)).astype(float)),
                              Neurons("lif1", (hidden,)), Dense("fc2", rng.integers(1, 3, (out, hidden)).astype(float)),
                              Neurons("lif2", (out,)), Output("out", (out,)))


def max_output(view: ChipView):
    n = sum(p.size for p in view.output_populations())
    limit = view.params["max_output"]
    return view.row(n, limit, n <= limit, "layer " + view.output_populations()[0].name,
                    "" if n <= limit else f"{n} output neurons; keep at most {limit}")


def boom(view: ChipView):
    raise RuntimeError("the rule has a bug")


RULES = RuleSet("toy", targets=("toychip",), params={"max_output": (int, 3)},
                rules=(Rule("toy.max_output", max_output, "at most max_output readout neurons", about="size"),))


class RulePlugin:
    def __init__(self, *sets):
        self.sets = sets

    @hookimpl
    def register_rules(self, register):
        for s in self.sets:
            register(s)


class TargetPlugin:
    def __init__(self, *specs):
        self.specs = specs

    @hookimpl
    def register_targets(self, register):
        for s in self.specs:
            register(s)


def test_hook_register_rules(register_plugin):
    register_plugin(TargetPlugin(TargetSpec("toychip")), "toy_targets")
    register_plugin(RulePlugin(RULES), "toy_rules")
    assert plugins.owner_of("rule_set", "toy") == "toy_rules"
    ok = verify(net(out=3), "toychip")
    row = ok.row("rule toy.max_output")
    assert (row.usage, row.limit, row.ok) == (3, 3, True)
    bad = verify(net(out=4), "toychip")
    assert not bad.ok
    row = bad.row("rule toy.max_output")
    assert (row.usage, row.ok, row.worst) == (4, False, "layer lif2")
    assert "rule toy.max_output" in bad.verdict()


def test_a_spec_table_opts_in_and_sets_parameters(register_plugin):
    register_plugin(RulePlugin(RULES), "toy_rules")
    spec = TargetSpec.from_dict({"name": "other", "rules": {"toy": {"max_output": 5}}})
    assert [s.name for s in rule_sets_for(spec)] == ["toy"]
    assert verify(net(out=4), spec).row("rule toy.max_output").limit == 5
    assert spec.to_dict()["rules"] == {"toy": {"max_output": 5}}
    assert TargetSpec.from_dict(spec.to_dict()) == spec


def test_wrong_rule_parameters_name_the_key(register_plugin):
    register_plugin(RulePlugin(RULES), "toy_rules")
    typo = TargetSpec.from_dict({"name": "other", "rules": {"toy": {"max_outputs": 5}}})
    with pytest.raises(SpecError, match=r"rules.toy.max_outputs is not a parameter of rule set 'toy' \(did you mean 'max_output'\?\)"):
        verify(net(), typo)
    wrong = TargetSpec.from_dict({"name": "other", "rules": {"toy": {"max_output": "five"}}})
    with pytest.raises(SpecError, match=r"rules.toy.max_output must be int; got str 'five'"):
        verify(net(), wrong)
    unknown = TargetSpec.from_dict({"name": "other", "rules": {"toyy": {}}})
    with pytest.raises(SpecError, match=r"\[rules.toyy\] names no registered rule set \(did you mean 'toy'\?\)"):
        verify(net(), unknown)
    with pytest.raises(SpecError, match=r"rules.toy must be a table"):
        TargetSpec.from_dict({"name": "other", "rules": {"toy": 3}})


def test_a_rule_that_raises_is_named_and_the_others_still_run(register_plugin):
    broken = RuleSet("broken", targets=("toychip",), rules=(Rule("broken.boom", boom),))
    register_plugin(TargetPlugin(TargetSpec("toychip")), "toy_targets")
    register_plugin(RulePlugin(RULES), "toy_rules")
    register_plugin(RulePlugin(broken), "broken_rules")
    report = verify(net(), "toychip")
    row = report.row("rule broken.boom")
    assert not row.ok and row.usage is None
    assert "rule 'broken.boom' of plugin 'broken_rules' raised RuntimeError: the rule has a bug" in row.detail
    assert report.row("rule toy.max_output").ok            # the other set still ran
    assert not report.ok                                   # unchecked is not "fits"


def test_rule_and_rule_set_validation():
    with pytest.raises(SpecError, match=r"rule name 'Bad Name' must be lower-case"):
        Rule("Bad Name", max_output)
    with pytest.raises(SpecError, match=r"about 'memory' is not one of structure, size, weights"):
        Rule("x.y", max_output, about="memory")
    with pytest.raises(SpecError, match=r"parameter 'n' must be declared as \(type, default\)"):
        RuleSet("x", params={"n": 3})


class ToyVendor:
    name = "toytool"
    target = "toychip"

    def check(self, network, spec):
        n = sum(p.size for p in network.populations())
        return VendorVerdict(n <= 8, f"mapped {n} neurons" if n <= 8 else f"ToolError: {n} neurons > 8")

    def corpus(self):
        return [Case("toy/small", net(2, 3), expect=True), Case("toy/big", net(6, 3), expect=False)]


class VendorPlugin:
    @hookimpl
    def register_vendor_checks(self, register):
        register(ToyVendor())


def test_hook_register_vendor_checks(register_plugin):
    register_plugin(TargetPlugin(TargetSpec.from_dict({"name": "toychip", "limits": {"neurons": 8}})), "toy_targets")
    register_plugin(VendorPlugin(), "toy_vendor")
    check = get_vendor_check("toychip")
    assert check.name == "toytool" and plugins.owner_of("vendor_check", "toychip") == "toy_vendor"
    spec = plugins.get_target("toychip")
    for case in check.corpus():
        v = vendor_verdict(case.network, spec)
        fits, _ = spikefit_verdict(case.network, spec)
        assert v.fits == case.expect == fits
    with pytest.raises(PluginError, match=r"no vendor check for target 'loihi2'; vendor checks: toychip \(toytool\)"):
        get_vendor_check("loihi2")


def test_bench_vendor_agreement_and_verify_vendor_check(register_plugin, tmp_path):
    from click.testing import CliRunner

    from spikefit.cli import cli
    from spikefit.nir_io import write_nir

    register_plugin(TargetPlugin(TargetSpec.from_dict({"name": "toychip", "limits": {"neurons": 8}})), "toy_targets")
    register_plugin(VendorPlugin(), "toy_vendor")
    res = CliRunner().invoke(cli, ["bench", "vendor-agreement", "--target", "toychip", "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    assert "toychip  toy/big    no      no        agree" in res.output
    assert "toychip       toytool        2      2         0" in res.output
    write_nir(net(6, 3), tmp_path / "big.nir")
    res = CliRunner().invoke(cli, ["verify", "--target", "toychip", "--vendor-check", str(tmp_path / "big.nir")])
    assert res.exit_code == 1
    assert re.search(r"vendor check \(toytool\)\s+does not fit\s+maps\s+FAIL\s+ToolError: 9 neurons > 8", res.output)
