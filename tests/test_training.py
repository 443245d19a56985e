"""The training engine: typed state, stage plans of the fit and the baselines, one checkpoint format."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from spikefit.baselines import plan
from spikefit.datasets import load_dataset
from spikefit.errors import TrainingError
from spikefit.training.checkpoint import CHECKPOINT, load_checkpoint
from spikefit.training.config import FitConfig
from spikefit.training.engine import Engine, TrainData
from spikefit.training.stages import Compress, KMeansAfter, Settle, SparsityPrune, Stage, Warmup
from spikefit.training.state import TrainState
from spikefit.trainer import default_model

CFG = FitConfig(hidden=(16,), steps=6, batch_size=32, warmup_epochs=1, cat_epochs=1, prune_rounds=2, prune_epochs=1,
                finetune_epochs=1, train_limit=200, test_limit=60, fisher_samples=64, threads=1)


def test_state_round_trips_and_rejects_unknown_fields():
    st = TrainState(stage=2, epoch=1, entered=True, stage_epochs=3, global_epoch=9, accuracy={"float": 0.5})
    assert TrainState.from_dict(st.to_dict()) == st
    with pytest.raises(TrainingError, match=r"training state has unknown fields \['phase'\]"):
        TrainState.from_dict({**st.to_dict(), "phase": 1})
    with pytest.raises(TrainingError, match="training state epoch -1 must be 0 or more"):
        TrainState(epoch=-1)


def test_baseline_plans_are_stage_objects():
    stages = plan("kmeans", 4, 0.5, CFG)      # the default order: the rounds prune the float network, then CAT
    assert [type(s) for s in stages] == [Warmup, SparsityPrune, SparsityPrune, Compress, Settle, KMeansAfter]
    assert [s.name for s in stages] == ["warmup", "prune1", "prune2", "compress", "finetune", "kmeans"]
    assert stages[1].sparsity == 0.5 and stages[1].per_layer is False and stages[1].structured   # FSC: one global ranking
    magnitude = plan("magnitude", 4, 0.5, CFG)
    assert magnitude[1].scorer == "magnitude" and magnitude[1].per_layer and not magnitude[1].structured
    after = plan("fsc", 4, 0.5, replace(CFG, prune_order="after-cat"))
    assert [s.name for s in after] == ["warmup", "compress", "prune1", "prune2", "finetune"]
    gmp = plan("gmp", 4, 0.5, CFG)            # every pruner takes the same place, in its one stage of the rounds' epochs
    assert [(s.name, s.epochs) for s in gmp] == [("warmup", 1), ("prune", 2), ("compress", 1), ("finetune", 1)]
    dense = plan("cat", 4, 0.0, CFG)          # nothing to prune: the rounds' epochs as one stage after CAT
    assert [(type(s), s.name, s.epochs, s.lr) for s in dense] == [
        (Warmup, "warmup", 1, CFG.lr), (Compress, "compress", 1, CFG.lr), (Stage, "train", 2, CFG.prune_lr),
        (Settle, "finetune", 1, CFG.finetune_lr)]


def test_a_baseline_plan_writes_the_fits_checkpoint_format(tmp_path):
    ds = load_dataset("digits")
    data = TrainData.build(ds, 6, "rate", CFG)
    engine = Engine(default_model(ds, CFG), data, plan("fsc", 4, 0.5, CFG), CFG, out=tmp_path)
    engine.run()
    ck = load_checkpoint(tmp_path / CHECKPOINT)         # the loader `spikefit fit --resume` uses
    state = TrainState.from_dict(ck["state"])
    assert state.stage == 5 and state.global_epoch == 5 and set(state.accuracy) == {"float"}
    assert [h["stage"] for h in state.history] == ["warmup", "prune1", "prune2", "compress", "finetune"]
    assert all(0.0 <= h["accuracy"] <= 1.0 for h in state.history)
    assert ck["arch"]["stages"][0]["quant"]["type"] == "codebook" and ck["arch"]["stages"][0]["quant"]["M"] == 4


def test_fine_tuning_keeps_the_codebook_and_a_checkpoint_remembers_it(tmp_path):
    """The last stage trains the weights on codebook values that no longer move; the fixed flag survives
    the checkpoint, so a resumed fine-tune does not learn them either."""
    from spikefit import cat as C
    from spikefit.nn import SNN
    from spikefit.training.checkpoint import share_codebooks

    ds = load_dataset("digits")
    cfg = replace(CFG, finetune_epochs=2)
    data = TrainData.build(ds, 6, "rate", cfg)
    seen = []

    def grab(info):
        if info["stage"] == "finetune":
            seen.append(info["model"].synapses()[0].quant.codebook.centers.detach().clone())

    engine = Engine(default_model(ds, cfg), data, plan("cat", 4, 0.0, cfg), cfg, out=tmp_path, callbacks=[grab])
    engine.run()
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])
    qs = C.codebook_quantizers(engine.model)
    assert qs and all(q.fixed and not q.codebook.centers.requires_grad for q in qs)
    arch = load_checkpoint(tmp_path / CHECKPOINT)["arch"]
    back = SNN.from_arch(arch)
    share_codebooks(back, arch)
    assert all(q.fixed and not q.codebook.centers.requires_grad for q in C.codebook_quantizers(back))
