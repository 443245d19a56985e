"""spikefit.baselines: every method runs in the shared harness and keeps its promise."""
from __future__ import annotations

import pytest

from spikefit.baselines import METHODS, run_method, step_time_ratio
from spikefit.errors import TrainingError
from spikefit.trainer import FitConfig

CFG = FitConfig(hidden=(16,), steps=6, batch_size=32, warmup_epochs=1, cat_epochs=1, prune_rounds=1, prune_epochs=1,
                finetune_epochs=1, train_limit=160, test_limit=60, fisher_samples=64, threads=1)


@pytest.mark.parametrize("method, M, sparsity, distinct", [
    ("float", None, 0.0, None),
    ("cat", 4, 0.0, 4),
    ("cat-soft", 2, 0.0, 2),
    ("kmeans", 4, 0.5, 4),
    ("uniform", 4, 0.0, 3),     # 2-bit signed grid {-2, -1, 0, 1}: 3 non-zero values
    ("ternary", None, 0.0, 2),
    ("fsc", 4, 0.75, 4),
    ("magnitude", 4, 0.75, 4),
    ("random", None, 0.5, None),
])
def test_every_method_runs_in_the_same_harness(method, M, sparsity, distinct):
    r = run_method(method, "digits", M, sparsity, 0, CFG)
    assert set(r) >= {"accuracy", "float_accuracy", "step_time", "float_step_time", "measured_sparsity"}
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["float_accuracy"] <= 1.0
    assert r["step_time"] > 0 and r["float_step_time"] > 0
    assert r["measured_sparsity"] >= sparsity - 0.01
    if distinct is not None:
        assert 1 <= r["max_distinct"] <= distinct


def test_float_accuracy_is_shared_across_methods():
    """Same seed, same warm-up: every method starts the compression stage from the same network."""
    a = run_method("cat", "digits", 4, 0.0, 3, CFG)
    b = run_method("uniform", "digits", 4, 0.0, 3, CFG)
    assert a["float_accuracy"] == b["float_accuracy"]


def test_bad_arguments():
    with pytest.raises(TrainingError, match="unknown method 'bogus'; use one of float, cat"):
        run_method("bogus", "digits", 4, 0.0, 0, CFG)
    with pytest.raises(TrainingError, match="method 'uniform' needs M a power of two"):
        run_method("uniform", "digits", 3, 0.0, 0, CFG)
    with pytest.raises(TrainingError, match="sparsity 1.5 must lie in"):
        run_method("fsc", "digits", 4, 1.5, 0, CFG)
    assert "cat" in METHODS and "magnitude" in METHODS


def test_step_time_ratio_reports_both_steps():
    r = step_time_ratio("digits", 4, "layer", "hard", steps=4, config=CFG)
    assert r["float_step"] > 0 and r["cat_step"] > 0 and r["ratio"] == pytest.approx(r["cat_step"] / r["float_step"])
