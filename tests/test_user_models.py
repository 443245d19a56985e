"""A user's own trained network (snnTorch, Norse) and data fitted to Loihi 2 and TrueNorth from the CLI.

Each test trains a small network with the real library on synthetic data, exports it with the
library's own NIR exporter, saves the data as ``.npz`` and runs ``spikefit fit --init --data``,
``spikefit verify`` and ``spikefit run --compare emulator,lava`` on the user's test split. The fit
starts from the user's float weights (no warm-up), so the user model's own accuracy, measured by
spikefit on the imported network, equals what the library itself measures, and the fitted network
stays within 2 percentage points of it.

snnTorch modules reset to zero (``reset_mechanism="zero"``; RLeaky with ``reset_delay=False``):
its NIR files state no reset mode and spikefit reads them as reset to zero (``test_interop_snntorch``).
"""
from __future__ import annotations

import json
import warnings

import nir
import numpy as np
import pytest
import snntorch as snn
import snntorch.utils
import torch
from snntorch.export_nir import export_to_nir

from clitools import invoke

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import norse.torch as norse

EPOCHS = "0,2,1,2"        # no float warm-up: CAT starts from the user's weights
TOLERANCE = 0.02          # fitted and deployed accuracy within 2 pp of the user model's own


def bars(n: int, t: int, seed: int, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(n, t, 1, 8, 8) spike frames: a class's bar fires at 0.5, every pixel at 0.08 (noise)."""
    rng = np.random.default_rng(seed)
    protos = np.zeros((classes, 1, 8, 8))
    protos[0, 0, 2:4, :] = 1
    protos[1, 0, :, 2:4] = 1
    protos[2, 0, np.arange(8), np.arange(8)] = 1
    protos[3, 0, np.arange(8), 7 - np.arange(8)] = 1
    y = rng.integers(0, classes, n)
    p = 0.08 + 0.42 * protos[y]
    return (rng.random((n, t, 1, 8, 8)) < p[:, None]).astype(np.float32), y


def save_data(path, train, test, shape) -> None:
    (x, y), (xt, yt) = train, test
    np.savez(path, x_train=x.reshape(len(x), x.shape[1], *shape), y_train=y,
             x_test=xt.reshape(len(xt), xt.shape[1], *shape), y_test=yt)


def train(net, step, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
    """Adam on cross-entropy of output spike counts; ``step(net, x (b, t, ...)) -> counts (b, classes)``."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for epoch in range(epochs):
        perm = np.random.default_rng(epoch).permutation(len(x))
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            loss = torch.nn.functional.cross_entropy(step(net, x[idx]), torch.as_tensor(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()


def snntorch_counts(net, x: np.ndarray) -> torch.Tensor:
    snntorch.utils.reset(net)
    return torch.stack([net(torch.from_numpy(x[:, k])) for k in range(x.shape[1])]).sum(0)


def norse_counts(net, x: np.ndarray) -> torch.Tensor:
    out, state = [], None
    for k in range(x.shape[1]):
        s, state = net(torch.from_numpy(x[:, k]), state)
        out.append(s)
    return torch.stack(out).sum(0)


def accuracy(counts_fn, net, x, y) -> float:
    with torch.no_grad():
        return float((counts_fn(net, x).argmax(1).numpy() == y).mean())


def fit_to_chips(tmp_path, model, data, own: float, targets=("loihi2", "truenorth")) -> dict[str, dict]:
    """fit + verify + run --compare emulator,lava on each target whose neuron Lava runs (a TrueNorth fit runs
    TrueNorth's linear leak, which Lava refuses in one line: it runs on the emulator); returns the reports."""
    reports = {}
    for target in targets:
        out = tmp_path / target
        r = invoke("fit", "--init", model, "--data", data, "--target", target, "--out", out, "--epochs", EPOCHS, "--quiet")
        assert r.exit_code == 0, r.output
        rep = json.loads((out / "report.json").read_text())
        acc = rep["accuracy"]
        assert rep["ok"] and abs(acc["user"] - own) <= 0.01, (acc, own)  # spikefit measures the library's accuracy
        assert acc["fitted"] >= acc["user"] - TOLERANCE and acc["deployed"] >= acc["user"] - TOLERANCE, acc
        assert "user model (as given, before fitting)" in (out / "report.md").read_text()
        assert invoke("verify", "--target", target, out / "model.nir").exit_code == 0
        r = invoke("run", out / "model.nir", "--compare", "emulator,lava", "--data", data, "--json")
        if target == "truenorth":
            assert r.exit_code == 2 and "this network's are truenorth-lif" in r.output
            r = invoke("run", out / "model.nir", "--data", data, "--json")   # the emulator runs the fit's neuron
            assert r.exit_code == 0, r.output
            assert json.loads(r.stdout)["accuracy"] == acc["deployed"]
            reports[target] = rep
            continue
        assert r.exit_code == 0, r.output
        cmp = json.loads(r.stdout)
        assert cmp["agreement"] == {"lava": 1.0}
        assert cmp["results"]["emulator"]["accuracy"] == acc["deployed"]
        reports[target] = rep
    return reports


def leaky(shape, beta=0.9):
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, 1.0), init_hidden=True,
                     reset_mechanism="zero")


def test_snntorch_conv_network(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2), leaky((4, 3, 3)), torch.nn.Flatten(),
                              torch.nn.Linear(36, 4), leaky((4,)))
    tr, te = bars(240, 8, 0), bars(100, 8, 1)
    train(net, snntorch_counts, *tr, epochs=12, lr=5e-3)
    own = accuracy(snntorch_counts, net, *te)
    assert own >= 0.8
    nir.write(tmp_path / "user.nir", export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0]))
    save_data(tmp_path / "user.npz", tr, te, (1, 8, 8))
    reports = fit_to_chips(tmp_path, tmp_path / "user.nir", tmp_path / "user.npz", own)
    user = reports["loihi2"]["user_model"]
    assert user["convention"] == "snntorch" and user["layout"] == "sequence"
    assert [(d["parameter"], d["was"]) for d in user["snapped"]][:1] == [("dv", pytest.approx(0.1, abs=1e-6))]


def test_norse_mlp(tmp_path):
    torch.manual_seed(1)
    box = lambda n: norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.full((n,), 100.0),  # noqa: E731
                                                            v_th=torch.full((n,), 0.5), v_leak=torch.zeros(n)))
    net = norse.SequentialState(torch.nn.Linear(64, 24), box(24), torch.nn.Linear(24, 4, bias=False), box(4))
    tr, te = bars(240, 8, 2), bars(100, 8, 3)
    flat = lambda d: (d[0].reshape(len(d[0]), 8, 64), d[1])  # noqa: E731
    tr, te = flat(tr), flat(te)
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    train(net, norse_counts, *tr, epochs=12, lr=1e-2)
    own = accuracy(norse_counts, net, *te)
    assert own >= 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(net, torch.rand(64))
    nir.write(tmp_path / "user.nir", graph)
    save_data(tmp_path / "user.npz", tr, te, (64,))
    reports = fit_to_chips(tmp_path, tmp_path / "user.nir", tmp_path / "user.npz", own)
    assert reports["truenorth"]["user_model"]["convention"] == "norse-1.1"


def test_snntorch_recurrent_mlp_on_spike_sequences(tmp_path):
    """(n, t, features) spikes into a recurrent hidden layer (RLeaky) and a Leaky readout. On TrueNorth
    a hidden neuron's feed-forward and recurrent weights share its one codebook of 4 values."""
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(64, 20),
                              snn.RLeaky(beta=torch.full((20,), 0.875), threshold=torch.full((20,), 1.0), linear_features=20,
                                         init_hidden=True, reset_mechanism="zero", reset_delay=False),
                              torch.nn.Linear(20, 4), leaky((4,), 0.875))
    tr, te = bars(240, 8, 4), bars(100, 8, 5)
    flat = lambda d: (d[0].reshape(len(d[0]), 8, 64), d[1])  # noqa: E731
    tr, te = flat(tr), flat(te)
    train(net, snntorch_counts, *tr, epochs=12, lr=5e-3)
    own = accuracy(snntorch_counts, net, *te)
    assert own >= 0.8
    nir.write(tmp_path / "user.nir", export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0]))
    save_data(tmp_path / "user.npz", tr, te, (64,))
    reports = fit_to_chips(tmp_path, tmp_path / "user.nir", tmp_path / "user.npz", own)
    snapped = reports["loihi2"]["user_model"]["snapped"]    # beta 0.875: dv = 512/4096 up to float32 rounding
    assert snapped and all(d["now"] == 0.125 and abs(d["was"] - 0.125) < 1e-6 for d in snapped)


def test_static_currents_fit_and_run_on_the_float_emulator(tmp_path):
    """Static (n, features) values enter an snnTorch model as currents by default; the chip path takes
    spikes, so the deployed accuracy and ``run`` use emulator-float, and emulator/lava say so in one line."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), leaky((16,), 0.875), torch.nn.Linear(16, 4), leaky((4,), 0.875))
    rng = np.random.default_rng(6)
    (x, y), (xt, yt) = [(f.reshape(len(f), 4, 64).mean(1), lab) for f, lab in (bars(200, 4, 6), bars(80, 4, 7))]
    x, xt = x + 0.05 * rng.random(x.shape), xt + 0.05 * rng.random(xt.shape)   # graded values, not spikes
    held = lambda d: np.repeat(d[:, None], 8, axis=1).astype(np.float32)       # noqa: E731  constant current, 8 steps
    train(net, snntorch_counts, held(x), y, epochs=10, lr=5e-3)
    own = accuracy(snntorch_counts, net, held(xt), yt)
    nir.write(tmp_path / "user.nir", export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0]))
    np.savez(tmp_path / "user.npz", x_train=x.astype(np.float32), y_train=y, x_test=xt.astype(np.float32), y_test=yt)
    out = tmp_path / "fit"
    r = invoke("fit", "--init", tmp_path / "user.nir", "--data", tmp_path / "user.npz", "--target", "loihi2",
               "--steps", "8", "--out", out, "--epochs", EPOCHS, "--quiet", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["user_model"]["encoding"] == "current" and res["deployed_on"] == "emulator-float"
    assert abs(res["accuracy"]["user"] - own) <= 0.0125 and res["accuracy"]["fitted"] >= res["accuracy"]["user"] - TOLERANCE
    r = invoke("run", out / "model.nir", "--data", tmp_path / "user.npz", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["backend"] == "emulator-float"
    r = invoke("run", out / "model.nir", "--data", tmp_path / "user.npz", "--compare", "emulator,lava")
    assert r.exit_code == 2 and r.stderr.startswith("Error: the inputs are currents (values in [") and \
        "backend 'emulator' takes 0/1 spikes; run currents on 'emulator-float'" in r.stderr
