"""spikefit.trainer: end-to-end fits on a tiny budget, resume, determinism, early stops."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spikefit.errors import DatasetError, DoesNotFitError, ModelError, TrainingError
from spikefit.nir_io import read_nir
from spikefit.nn import SNN
from spikefit.spec import LayerSpec, Limits, NeuronSpec, TargetSpec
from spikefit.trainer import FitConfig, FitInterrupted, fit

TINY = dict(hidden=(24,), steps=8, batch_size=16, warmup_epochs=2, cat_epochs=1, prune_rounds=2, prune_epochs=1,
            finetune_epochs=1, train_limit=300, test_limit=120, fisher_samples=128, threads=1)


def tiny_target(**limits) -> TargetSpec:
    base = dict(neurons=30, synapses=1000, fan_in=40, weight_bits=8, unique_weights=4, unique_weights_scope="neuron")
    return TargetSpec(name="tiny", limits=Limits(**{**base, **limits}))


def _weights(network) -> dict[str, np.ndarray]:
    return {c.name: (c.dense_weight() if hasattr(c, "dense_weight") else c.weight) for c in network.connections()}


def test_fit_end_to_end_writes_outputs_that_fit(tmp_path):
    out = tmp_path / "fit"
    target = tiny_target()
    result = fit(None, "digits", target, FitConfig(**TINY), out=out, progress=False)
    for name in ("model.nir", "checkpoint.pt", "report.json", "report.md"):
        assert (out / name).is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and result.report.ok
    assert set(report["accuracy"]) >= {"float", "cat", "pruned", "fitted", "deployed"}
    assert result.accuracy["fitted"] > 0.3 and result.accuracy["deployed"] > 0.3  # 10 classes: chance is 0.1
    use = report["usage"]
    assert use["neurons"] <= 30 and use["synapses"] <= 1000 and use["fan_in"] <= 40
    rows = {r["name"].split(" (")[0]: r["usage"] for r in report["fit"]["rows"]}
    assert all(use[k] == rows[k] for k in ("neurons", "synapses", "fan_in", "unique_weights"))  # one set of numbers
    for row in report["codebooks"]["fc1"]["codebook"] + report["codebooks"]["fc2"]["codebook"]:
        assert len(set(row)) == len(row)                                  # codebook rows hold distinct values
    assert report["codebooks"]["fc1"]["scope"] == "neuron" and len(report["codebooks"]["fc1"]["codebook"][0]) == 4
    md = (out / "report.md").read_text()
    assert "deployed (fixed-point emulator)" in md and "unique_weights (per neuron)" in md
    back = read_nir(out / "model.nir")  # what was written is the fitted network
    for name, w in _weights(result.network).items():
        assert np.array_equal(_weights(back)[name], w)


def test_if_neurons_deploy_exactly(tmp_path):
    """IF neurons, integer weights: no state is rounded, so the emulator reproduces torch exactly."""
    target = TargetSpec(name="ifchip", limits=Limits(weight_bits=8, unique_weights=4, unique_weights_scope="layer"),
                        neuron=NeuronSpec(models=("if",)))
    result = fit(None, "digits", target, FitConfig(**TINY), progress=False)
    assert result.model.populations()[0].dv == 0.0
    assert result.agreement == 1.0 and result.accuracy["deployed"] == result.accuracy["fitted"]


def test_resume_after_interrupt_gives_the_uninterrupted_result(tmp_path):
    cfg = FitConfig(**TINY)
    target = tiny_target()
    full = fit(None, "digits", target, cfg, out=tmp_path / "a", progress=False)
    calls = []

    def stop(info):
        calls.append(info["stage"])
        if len(calls) == 4:  # inside the first pruning round
            raise KeyboardInterrupt

    with pytest.raises(FitInterrupted) as exc:
        fit(None, "digits", target, cfg, out=tmp_path / "b", callbacks=[stop], progress=False)
    assert exc.value.path == tmp_path / "b" / "checkpoint.pt" and exc.value.path.is_file()
    assert not (tmp_path / "b" / "model.nir").exists()
    resumed = fit(None, "digits", target, cfg, out=tmp_path / "b", resume=True, progress=False)
    for name, w in _weights(full.network).items():
        assert np.array_equal(_weights(resumed.network)[name], w)
    assert resumed.accuracy == full.accuracy


def test_same_seed_same_weights():
    target = tiny_target()
    a = fit(None, "digits", target, FitConfig(**TINY), progress=False)
    b = fit(None, "digits", target, FitConfig(**TINY), progress=False)
    for name, w in _weights(a.network).items():
        assert np.array_equal(_weights(b.network)[name], w)
    c = fit(None, "digits", target, FitConfig(**{**TINY, "seed": 1}), progress=False)
    assert not np.array_equal(_weights(c.network)["fc2"], _weights(a.network)["fc2"])


def test_existing_output_needs_force(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(TrainingError, match="output directory '.*out' exists; pass --force to overwrite it or --resume"):
        fit(None, "digits", tiny_target(), FitConfig(**TINY), out=tmp_path / "out")


def test_corrupt_checkpoint_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="checkpoint '.*checkpoint.pt' is corrupt .*; delete it or run without --resume"):
        fit(None, "digits", tiny_target(), FitConfig(**TINY), out=tmp_path / "out", resume=True)
    torch.save({"something": 1}, tmp_path / "out" / "checkpoint.pt")
    with pytest.raises(TrainingError, match="is corrupt \\(carries no checksum\\)"):
        fit(None, "digits", tiny_target(), FitConfig(**TINY), out=tmp_path / "out", resume=True)


def test_impossible_budgets_stop_before_the_first_epoch():
    epochs = []
    with pytest.raises(DoesNotFitError, match=r"target 'tiny' cannot hold this network even pruned to one neuron per "
                                              r"hidden layer and one synapse per neuron: neurons needs 11 of 9"):
        fit(None, "digits", tiny_target(neurons=9), FitConfig(**TINY), progress=False, callbacks=[epochs.append])
    with pytest.raises(DoesNotFitError, match="target 'tiny' has 5 outputs but dataset 'digits' has 10 classes"):
        fit(None, "digits", tiny_target(outputs=5), FitConfig(**TINY), progress=False, callbacks=[epochs.append])
    target = TargetSpec(name="convonly", limits=Limits(weight_bits=8), layers=LayerSpec(kinds=("conv2d",)))
    with pytest.raises(DoesNotFitError, match=r"cannot hold this network .*: layer_kinds needs .* of conv2d at layer fc1"):
        fit(None, "digits", target, FitConfig(**{**TINY, "deploy": False}), progress=False, callbacks=[epochs.append])
    assert epochs == []


def test_model_must_match_the_dataset():
    with pytest.raises(DatasetError, match=r"x_train has shape \(1437, 64\) but the model input 'input' expects \(12,\)"):
        fit(SNN.mlp(12, [5], 10), "digits", tiny_target(), FitConfig(**TINY), progress=False)


def test_soft_mode_and_qat_target_fit():
    target = TargetSpec(name="qat8", limits=Limits(weight_bits=8))  # no codebook limit: uniform 8-bit QAT
    result = fit(None, "digits", target, FitConfig(**{**TINY, "cat_mode": "soft"}), progress=False)
    assert result.report.ok
    cb = json.loads(json.dumps(result.network.nodes["fc1"].quant.to_dict()))
    assert cb["codebook"] is None and cb["weight_bits"] == 8


def test_cat_mode_auto_follows_the_targets_codebook_scope():
    """Lloyd steps where a codebook row is shared across neurons (per core), gradient with one row per
    neuron (TrueNorth's scope); an explicit mode wins."""
    from spikefit.trainer import cat_spec
    assert FitConfig().cat_mode == "auto"
    assert cat_spec(tiny_target(), FitConfig()).mode == "hard"
    assert cat_spec(tiny_target(unique_weights_scope="core"), FitConfig()).mode == "lloyd"
    assert cat_spec(tiny_target(unique_weights_scope="core"), FitConfig(cat_mode="hard")).mode == "hard"
    with pytest.raises(TrainingError, match="^unknown cat_mode 'mean'; use one of auto, hard, lloyd, soft$"):
        FitConfig(cat_mode="mean")


def test_fisher_shrinkage_is_checked_and_old_configs_keep_the_raw_scores():
    assert FitConfig().fisher_shrinkage == 0.5
    with pytest.raises(TrainingError, match=r"^fisher_shrinkage -0.1 must lie in \[0, 1\]$"):
        FitConfig(fisher_shrinkage=-0.1)
    old = {k: v for k, v in FitConfig().to_dict().items() if k != "fisher_shrinkage"}
    assert FitConfig.from_dict(old).fisher_shrinkage == 0.0       # a checkpoint from before resumes as it ran


def test_prune_order_sets_the_plan_and_the_report(tmp_path):
    """The rounds prune the float network before CAT by default (CAT's core codebooks then come from the
    final placement); ``after-cat`` runs CAT first. Both fit, and the report lists the stages in their order."""
    target = tiny_target(neurons=None, synapses=900, fan_in=None, cores=3, neurons_per_core=12, unique_weights=4,
                         unique_weights_scope="core")
    runs = {}
    for order in ("before-cat", "after-cat"):
        out = tmp_path / order
        runs[order] = fit(None, "digits", target, FitConfig(**TINY, prune_order=order), out=out, progress=False)
        assert runs[order].report.ok
        md = (out / "report.md").read_text()
        rows = [line.split(" |")[0] for line in md.splitlines() if line.startswith("| ")]
        pruned = "| FSC pruned (float weights)" if order == "before-cat" else "| FSC pruned (quantized weights)"
        cat = "| CAT (quantized, hard) of the pruned network" if order == "before-cat" else "| CAT (quantized, hard)"
        assert (rows.index(pruned) < rows.index(cat)) == (order == "before-cat")
    assert [h["stage"] for h in runs["before-cat"].history] == ["warmup", "prune1", "prune2", "cat", "finetune"]
    assert [h["stage"] for h in runs["after-cat"].history] == ["warmup", "cat", "prune1", "prune2", "finetune"]
    before = runs["before-cat"]
    assert before.pruning["prune1"]["binding"] and before.accuracy["cat"] > 0.3    # CAT trained the pruned network


def test_prune_order_is_checked_and_old_checkpoints_keep_theirs():
    with pytest.raises(TrainingError, match="unknown prune_order 'first'; use one of before-cat, after-cat"):
        FitConfig(prune_order="first")
    old = {k: v for k, v in FitConfig().to_dict().items() if k != "prune_order"}   # a config saved before the field
    assert FitConfig.from_dict(old).prune_order == "after-cat"
    assert FitConfig.from_dict(FitConfig().to_dict()).prune_order == "before-cat"
