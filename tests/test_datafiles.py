"""The user's data: .npz and HDF5 files, torch datasets, the two layouts, and bad input before training."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from clitools import assert_one_line_error, invoke
from spikefit import network as N
from spikefit.datafiles import from_torch, load_file
from spikefit.datasets import Dataset, time_major
from spikefit.errors import DatasetError
from spikefit.nir_io import write_nir
from spikefit.spec import Limits, TargetSpec
from spikefit.trainer import FitConfig, fit

CHIP = 'name = "userchip"\n[limits]\nneurons = 100\nweight_bits = 8\nunique_weights = 4\nunique_weights_scope = "layer"\n'
QUICK = ("--epochs", "6,2,1,1", "--quiet")


def prototypes(n: int, features: int = 40, classes: int = 3, seed: int = 0):
    """Noisy copies of one random [0, 1] pattern per class: (n, features) values and labels."""
    rng = np.random.default_rng(seed)
    protos = rng.random((classes, features))
    y = rng.integers(0, classes, n)
    x = np.clip(protos[y] + 0.15 * rng.standard_normal((n, features)), 0, 1).astype(np.float32)
    return x, y


def static_arrays(seed: int = 0) -> dict:
    x, y = prototypes(240, seed=seed)
    return {"x_train": x[:160], "y_train": y[:160], "x_test": x[160:], "y_test": y[160:]}


def sequence_arrays(t: int = 8) -> dict:
    """(n, t, features) spikes: Bernoulli trains of the static prototypes."""
    rng = np.random.default_rng(1)
    out = {}
    for k, v in static_arrays().items():
        out[k] = (rng.random((len(v), t, v.shape[1])) < v[:, None]).astype(np.float32) if k[0] == "x" else v
    return out


@pytest.fixture
def chip(tmp_path):
    path = tmp_path / "userchip.toml"
    path.write_text(CHIP)
    return path


def test_fit_from_npz_then_run_its_test_split(tmp_path, chip):
    np.savez(tmp_path / "user.npz", **static_arrays())
    out = tmp_path / "fit"
    r = invoke("fit", "--target-file", chip, "--data", tmp_path / "user.npz", "--out", out, "--steps", "8", *QUICK)
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "user" and report["ok"] and report["config"]["encoding"] is None
    assert report["accuracy"]["deployed"] > 0.6 and report["deployed_on"] == "emulator"  # 3 classes: chance 1/3
    r = invoke("run", out / "model.nir", "--data", tmp_path / "user.npz", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] == report["accuracy"]["deployed"]  # same spikes as the fit's emulator run


def test_fit_from_hdf5_sequences_with_a_validation_split(tmp_path, chip):
    arrays = sequence_arrays()
    arrays["x_val"], arrays["y_val"] = arrays["x_test"][:20], arrays["y_test"][:20]
    with h5py.File(tmp_path / "spikes.h5", "w") as f:
        for k, v in arrays.items():
            f[k] = v
    ds = load_file(tmp_path / "spikes.h5")
    assert ds.layout == "sequence" and ds.steps == 8 and ds.input_shape == (40,) and ds.splits() == ["train", "test", "val"]
    x, y = time_major(ds, "test", limit=5)
    assert x.shape == (8, 5, 40) and np.array_equal(x[:, 2], arrays["x_test"][2])   # (t, b, n), frames kept
    result = fit(None, ds, TargetSpec(name="c", limits=Limits(weight_bits=8)), FitConfig(
        hidden=(16,), warmup_epochs=6, cat_epochs=1, prune_rounds=0, finetune_epochs=1, threads=1), progress=False)
    assert result.network.metadata["steps"] == 8 and result.network.metadata["layout"] == "sequence"
    assert result.accuracy["deployed"] > 0.6 and result.agreement == 1.0


class Pairs(torch.utils.data.Dataset):
    """A plain map-style torch dataset of (tensor, int) pairs."""

    def __init__(self, x, y):
        self.x, self.y = torch.as_tensor(x), [int(v) for v in y]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_fit_from_a_torch_dataset_and_a_dataloader():
    a = static_arrays()
    train, test = Pairs(a["x_train"], a["y_train"]), Pairs(a["x_test"], a["y_test"])
    cfg = FitConfig(hidden=(16,), steps=8, warmup_epochs=6, cat_epochs=1, prune_rounds=0, finetune_epochs=1, threads=1)
    target = TargetSpec(name="c", limits=Limits(weight_bits=8, unique_weights=4))
    result = fit(None, (train, test), target, cfg, progress=False)
    assert result.report.ok and result.accuracy["fitted"] > 0.6
    loader = torch.utils.data.DataLoader(test, batch_size=7)   # batches are concatenated back in order
    ds = from_torch(train, loader)
    assert np.array_equal(ds.x_test, a["x_test"]) and np.array_equal(ds.y_test, a["y_test"])
    with pytest.raises(DatasetError, match="a single torch dataset has no test split"):
        fit(None, train, target, cfg, progress=False)


def user_model(tmp_path, n_in: int = 40, n_out: int = 3):
    net = N.Network.sequential(N.Input("in", (n_in,)), N.Dense("fc", np.full((n_out, n_in), 0.1)),
                               N.Neurons("out", (n_out,), dv=0.125), N.Output("o", (n_out,)))
    return write_nir(net, tmp_path / "user.nir")


@pytest.mark.parametrize("change, pattern", [
    (lambda a: a.pop("y_test"), r"data file '.*bad\.npz' has no array 'y_test' \(it holds x_test, x_train, y_train\)"),
    (lambda a: a["x_train"].__setitem__((3, 2), np.nan), r"x_train holds NaN \(first at sample 3\)"),
    (lambda a: a["x_test"].__setitem__((0, 0), np.inf), r"x_test holds inf \(first at sample 0\)"),
    (lambda a: a.__setitem__("y_train", a["y_train"] + 0.5), r"y_train holds \d\.5 at sample 0; labels must be integers"),
    (lambda a: a.__setitem__("y_test", a["y_test"][:-1]), r"y_test has shape \(79,\); expected \(80,\)"),
    (lambda a: a.__setitem__("x_val", a["x_test"]), r"has 'x_val' but no array 'y_val'"),
    (lambda a: a.__setitem__("x_test", a["x_test"][:, :10]),
     r"x_test has samples of shape \(10,\) but x_train has \(40,\)"),
])
def test_bad_files_exit_2_before_training(tmp_path, chip, change, pattern):
    arrays = static_arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    assert_one_line_error(invoke("fit", "--target-file", chip, "--data", tmp_path / "bad.npz", "--out",
                                 tmp_path / "o", *QUICK), pattern)
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_data_that_does_not_match_the_model_exits_2(tmp_path, chip):
    np.savez(tmp_path / "user.npz", **static_arrays())
    args = ("fit", "--target-file", chip, "--data", tmp_path / "user.npz", "--out", tmp_path / "o", *QUICK)
    assert_one_line_error(invoke(*args, "--init", user_model(tmp_path, n_in=10)),
                          r"x_train has shape \(160, 40\) but the model input 'in' expects \(10,\) per step")
    assert_one_line_error(invoke(*args, "--init", user_model(tmp_path, n_out=2)),
                          r"y_train holds label 2 \(sample \d+\) but the model output 'out' has 2 neurons \(labels 0\.\.1\)")
    arrays = static_arrays()
    arrays["x_train"] = arrays["x_train"] * 3
    np.savez(tmp_path / "loud.npz", **arrays)
    assert_one_line_error(invoke("fit", "--target-file", chip, "--data", tmp_path / "loud.npz", "--out", tmp_path / "o",
                                 "--encoding", "rate", *QUICK),
                          r"x_train holds values in \[0, 3\]; the rate encoding needs probabilities in \[0, 1\]")
    assert_one_line_error(invoke("fit", "--target-file", chip, "--data", tmp_path / "missing.npz", "--out",
                                 tmp_path / "o"), r"data file '.*missing\.npz' does not exist")
    assert_one_line_error(invoke("fit", "--target-file", chip, "--data", tmp_path / "user.npz", "--dataset", "digits",
                                 "--out", tmp_path / "o"), "give exactly one of --dataset NAME or --data FILE")


def test_layouts_conform_to_the_model_input():
    a = sequence_arrays()
    ds = Dataset("d", a["x_train"], a["y_train"], a["x_test"], a["y_test"], layout="static")  # (n, 8, 40) read as static
    assert ds.input_shape == (8, 40)
    seq = ds.conform((40,))
    assert seq.layout == "sequence" and seq.input_shape == (40,) and seq.steps == 8
    assert ds.conform((320,)).layout == "static"   # a flat model input of the same size takes it as it is
    with pytest.raises(DatasetError, match=r"x_train has shape \(160, 8, 40\) but the model input 'input' expects \(5,\)"):
        ds.conform((5,))
    with pytest.raises(DatasetError, match=r"steps 9 exceed the 8 time steps of x_test"):
        time_major(seq, "test", steps=9)
