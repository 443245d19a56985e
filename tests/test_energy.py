"""The [energy] section of target specs, the energy/latency model and its reports (run, fit)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clitools import assert_one_line_error, invoke
from spikefit import hookimpl
from spikefit.emulator import EmulatorBackend
from spikefit.energy import Activity, activity, destination_cores, estimate, estimate_run
from spikefit.errors import SpecError
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import write_nir
from spikefit.plugins import get_target
from spikefit.runner import execute
from spikefit.spec import EnergySpec, TargetSpec, load_target

CHIP = """
name = "chip"
unverified = ["energy.static_mw"]
[limits]
neurons_per_core = 2
[energy]
synop_pj = 2.0
neuron_update_pj = 10
spike_pj = 0.5
static_mw = 4.0
time_step_us = 100
sources = ["synop_pj: datasheet table 1", "neuron_update_pj: datasheet table 1", "spike_pj: datasheet table 2",
           "static_mw: forum post", "time_step_us: datasheet 3.1"]
"""


def test_catalog_energy_constants_carry_sources_and_flags():
    loihi = get_target("loihi")
    assert (loihi.energy.synop_pj, loihi.energy.neuron_update_pj, loihi.energy.spike_pj) == (23.6, 52.0, 1.7)
    assert "Davies et al. 2018" in loihi.energy.source("synop_pj")
    assert loihi.is_unverified("energy.synop_pj") and loihi.energy.time_step_us is None
    assert get_target("truenorth").energy.synop_pj == 26.0 and "Merolla" in get_target("truenorth").energy.source("synop_pj")
    for name in ("loihi2", "akida", "dynapse2"):  # no public figure: no constant, and a note that says so
        spec = get_target(name)
        assert all(getattr(spec.energy, k) is None for k in ("synop_pj", "neuron_update_pj", "spike_pj", "static_mw"))
        assert spec.energy.note
    for spec in map(get_target, ("loihi", "loihi2", "truenorth", "spinnaker2", "xylo-audio2", "speck2f")):
        for key in ("synop_pj", "neuron_update_pj", "spike_pj", "static_mw", "time_step_us"):
            if getattr(spec.energy, key) is not None:
                assert spec.energy.source(key)


@pytest.mark.parametrize("line, pattern", [
    ("synop_pj = -1.0", r"energy\.synop_pj must be a finite number >= 0; got -1\.0"),
    ('static_mw = "high"', r"energy\.static_mw must be a number; got str 'high'"),
    ("time_step_us = true", r"energy\.time_step_us must be a number; got bool True"),
    ("spike_pj = nan", r"energy\.spike_pj must be a number; got float nan"),
])
def test_bad_constants_name_the_key(tmp_toml, line, pattern):
    path = tmp_toml(f'name = "x"\n[energy]\n{line}\nsources = ["synop_pj: a", "static_mw: b", "time_step_us: c", "spike_pj: d"]\n')
    with pytest.raises(SpecError, match=pattern):
        load_target(path)
    assert_one_line_error(invoke("targets", "check", path), pattern)


def test_every_constant_needs_a_source():
    with pytest.raises(SpecError, match=r"energy\.spike_pj has no source; add \"spike_pj: <paper"):
        EnergySpec(spike_pj=1.0)
    with pytest.raises(SpecError, match=r"energy.sources entry 'synop: x' must read \"KEY: source\".*did you mean 'synop_pj'"):
        EnergySpec(sources=("synop: x",))
    assert EnergySpec(synop_pj=3, sources=["synop_pj: a paper"]).synop_pj == 3.0


def test_roundtrip_and_unverified_keys(tmp_toml):
    spec = load_target(tmp_toml(CHIP))
    assert spec.is_unverified("energy.static_mw") and spec.energy.source("time_step_us") == "datasheet 3.1"
    assert TargetSpec.from_dict(spec.to_dict()).energy == spec.energy


def test_model_arithmetic(tmp_toml):
    spec = load_target(tmp_toml(CHIP))
    act = Activity(samples=4, steps=5, synops=1000.0, neuron_updates=40.0, spikes=12.0, input_spikes=3.0, messages=20.0)
    rep = estimate(act, spec)
    # 1000 x 2 pJ + 40 x 10 pJ + 20 x 0.5 pJ = 2410 pJ; static 4 mW x 500 us = 2000 nJ
    assert rep.dynamic_uj == pytest.approx(2.41e-3) and rep.latency_us == 500.0
    assert rep.static_uj == pytest.approx(2.0) and rep.energy_uj == pytest.approx(2.00241)
    by_key = {t.key: t for t in rep.terms}
    assert by_key["synop_pj"].energy_uj == pytest.approx(2e-3) and by_key["synop_pj"].source == "datasheet table 1"
    assert by_key["static_mw"].unverified and not by_key["synop_pj"].unverified and rep.missing == []
    assert "synaptic operations" in rep.table() and "forum post" in rep.table()


def test_absent_constants_give_no_number():
    rep = estimate(Activity(1, 8, 10.0, 8.0, 1.0, 1.0, None), TargetSpec(name="bare"))
    assert rep.energy_uj is None and rep.latency_us is None
    assert rep.missing == ["energy.synop_pj", "energy.neuron_update_pj", "energy.spike_pj", "energy.time_step_us",
                           "energy.static_mw"]
    only_static = TargetSpec(name="s", energy=EnergySpec(static_mw=1.0, sources=("static_mw: x",)))
    assert estimate(Activity(1, 8, 10.0, 8.0, 1.0, 1.0, None), only_static).energy_uj is None  # no time step


def messages_net():
    # input 0 reaches neurons 0 and 3, input 1 reaches neuron 1 only; with 2 neurons per core, neurons 0-1
    # sit on core 0 and 2-3 on core 1. Population "a" (4) -> "b" (1): every neuron of a reaches core 2.
    w = np.zeros((4, 2))
    w[0, 0] = w[3, 0] = w[1, 1] = 2.0
    return Network.sequential(Input("in", (2,)), Dense("fc", w), Neurons("a", (4,), vth=1.0),
                              Dense("fc2", np.ones((1, 4))), Neurons("b", (1,), vth=10.0), Output("out", (1,)))


def test_spike_messages_count_destination_cores(tmp_toml):
    from spikefit.fitcheck import verify

    net, spec = messages_net(), load_target(tmp_toml(CHIP))
    report = verify(net, spec)
    cores = destination_cores(net, report)
    assert cores["in"].tolist() == [2, 1] and cores["a"].tolist() == [1, 1, 1, 1]
    x = np.zeros((3, 1, 2), dtype=np.float32)
    x[:, 0, 0] = 1  # input 0 spikes at every one of 3 steps: neurons 0 and 3 spike every step
    res = execute(net, "emulator", x)
    act = activity(net, res, report)
    assert res.spikes == {"a": 6, "b": 0} and act.messages == 3 * 2 + 6 * 1
    assert act.synops == 3 * 2 + 6 * 1 and act.neuron_updates == 5 * 3


def test_run_target_json_and_text(tmp_path, tmp_toml):
    model = write_nir(messages_net(), tmp_path / "m.nir")
    x = np.zeros((3, 2, 2), dtype=np.float32)
    x[:, :, 0] = 1
    np.save(tmp_path / "x.npy", x)
    chip = tmp_toml(CHIP)
    r = invoke("run", model, "--inputs", tmp_path / "x.npy", "--target", chip, "--json")
    assert r.exit_code == 0, r.output
    e = json.loads(r.stdout)["energy"]
    assert e["target"] == "chip" and e["latency_per_inference_us"] == 300.0
    assert e["activity"]["synops"] == 12.0 and e["activity"]["messages"] == 12.0
    # (12 x 2 + 15 x 10 + 12 x 0.5) pJ + 4 mW x 300 us
    assert e["energy_per_inference_uj"] == pytest.approx(180e-6 + 1.2)
    assert {t["key"]: t["source"] for t in e["terms"]}["spike_pj"] == "datasheet table 2"
    text = invoke("run", model, "--inputs", tmp_path / "x.npy", "--target", chip).stdout
    assert "energy    1.2 uJ per inference on chip" in text and "latency   300.0 us per inference (3 steps)" in text
    bare = json.loads(invoke("run", model, "--inputs", tmp_path / "x.npy", "--target", "loihi2", "--json").stdout)
    assert bare["energy"]["energy_per_inference_uj"] is None and "Loihi 2" in bare["energy"]["note"]
    assert_one_line_error(invoke("run", model, "--inputs", tmp_path / "x.npy", "--target", "nochip"), r"nochip")


def test_estimate_run_on_a_catalog_chip():
    net = messages_net()
    x = np.ones((4, 3, 2), dtype=np.float32)
    res = execute(net, "emulator", x)
    rep = estimate_run(net, res, "loihi")
    syn = {t.key: t for t in rep.terms}["synop_pj"]
    assert syn.count == res.synops_total / 3 and syn.energy_uj == pytest.approx(syn.count * 23.6e-6)
    assert rep.latency_us is None and "energy.time_step_us" in rep.missing


def test_fit_reports_energy(tmp_path):
    from spikefit.trainer import FitConfig, fit

    cfg = FitConfig.preset("demo", train_limit=64, test_limit=40, warmup_epochs=1, cat_epochs=1, prune_epochs=1,
                           finetune_epochs=0, prune_rounds=1)
    fit(None, "digits", "truenorth", cfg, out=tmp_path / "fit", progress=False)
    e = json.loads((tmp_path / "fit" / "report.json").read_text())["energy"]
    assert e["target"] == "truenorth" and e["activity"]["samples"] == 40
    assert e["energy_per_inference_uj"] == pytest.approx(e["activity"]["synops"] * 26e-6)
    assert e["latency_per_inference_us"] == 1000.0 * e["activity"]["steps"]
    md = (tmp_path / "fit" / "report.md").read_text()
    assert "## Energy" in md and "| synaptic operations |" in md and "Merolla" in md


class FloatReference:
    """The emulator's float mode under a name of this test's own."""

    @hookimpl
    def register_backends(self, register):
        backend = EmulatorBackend("float")
        backend.name = "float-ref"
        register(backend)


def test_run_compare_with_target(tmp_path, tmp_toml, register_plugin):
    register_plugin(FloatReference(), "float-ref-energy")
    model = write_nir(messages_net(), tmp_path / "m.nir")
    np.save(tmp_path / "x.npy", np.ones((3, 2, 2), dtype=np.float32))
    args = ["run", model, "--inputs", tmp_path / "x.npy", "--compare", "emulator,float-ref", "--target", tmp_toml(CHIP)]
    report = json.loads(invoke(*args, "--json").stdout)
    e = {k: r["energy"]["energy_per_inference_uj"] for k, r in report["results"].items()}
    assert e["emulator"] == e["float-ref"] > 1.2  # same spikes, same energy; static 4 mW x 300 us = 1.2 uJ
    text = invoke(*args).stdout
    assert "uJ/inference" in text and "energy per inference on chip" in text
