"""The user's side of "bring your own network and data": train an SNN in snnTorch or Norse, export
it with the library's own NIR exporter and save the data as ``.npz``; then fit it with the CLI.

Data: scikit-learn's digits (1,437 train / 360 test, the split of ``spikefit.datasets``), rate-coded
into T = 16 steps of 0/1 spike frames with a fixed seed, so chips and Lava take them as they are.

* ``snntorch-conv``: Conv2d(1->8, 3x3, stride 2) -> Leaky -> Flatten -> Linear(72->10) -> Leaky, on
  (n, 16, 1, 8, 8) frames;
* ``norse-mlp``: Linear(64->64) -> LIFBoxCell -> Linear(64->10) -> LIFBoxCell, on (n, 16, 64) spikes;
* ``snntorch-rmlp``: Linear(64->64) -> RLeaky (recurrent) -> Linear(64->10) -> Leaky, on (n, 16, 64).

Usage::

    python examples/bring_your_own.py snntorch-conv --out runs/byo/conv      # writes user.nir, user.npz
    spikefit fit --init runs/byo/conv/user.nir --data runs/byo/conv/user.npz --target loihi2 --out runs/byo/conv/loihi2
    spikefit verify --target loihi2 runs/byo/conv/loihi2/model.nir
    spikefit run --compare emulator,lava runs/byo/conv/loihi2/model.nir --data runs/byo/conv/user.npz
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import nir
import numpy as np
import torch

from spikefit.datasets import load_dataset

T = 16


def spikes(x: np.ndarray, seed: int) -> np.ndarray:
    """(n, features) intensities in [0, 1] -> (n, T, features) Bernoulli spikes."""
    rng = np.random.default_rng(seed)
    return (rng.random((len(x), T, x.shape[1]), dtype=np.float32) < x[:, None]).astype(np.float32)


def counts_snntorch(net, x: np.ndarray) -> torch.Tensor:
    import snntorch.utils

    snntorch.utils.reset(net)
    return torch.stack([net(torch.from_numpy(x[:, k])) for k in range(x.shape[1])]).sum(0)


def counts_norse(net, x: np.ndarray) -> torch.Tensor:
    out, state = [], None
    for k in range(x.shape[1]):
        s, state = net(torch.from_numpy(x[:, k]), state)
        out.append(s)
    return torch.stack(out).sum(0)


def build(kind: str):
    import snntorch as snn

    def leaky(shape, beta=0.875):
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, 1.0), init_hidden=True,
                         reset_mechanism="zero")

    if kind == "snntorch-conv":
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, stride=2), leaky((8, 3, 3)), torch.nn.Flatten(),
                                  torch.nn.Linear(72, 10), leaky((10,)))
        return net, counts_snntorch, (1, 8, 8)
    if kind == "snntorch-rmlp":
        net = torch.nn.Sequential(torch.nn.Linear(64, 64),
                                  snn.RLeaky(beta=torch.full((64,), 0.875), threshold=torch.full((64,), 1.0),
                                             linear_features=64, init_hidden=True, reset_mechanism="zero",
                                             reset_delay=False),
                                  torch.nn.Linear(64, 10), leaky((10,)))
        return net, counts_snntorch, (64,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import norse.torch as norse

    def box(n):
        return norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.full((n,), 100.0), v_th=torch.full((n,), 0.5),
                                                       v_leak=torch.zeros(n)))

    net = norse.SequentialState(torch.nn.Linear(64, 64), box(64), torch.nn.Linear(64, 10, bias=False), box(10))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    return net, counts_norse, (64,)


def export(kind: str, net, shape) -> object:
    if kind.startswith("snntorch"):
        from snntorch.export_nir import export_to_nir

        return export_to_nir(net, torch.zeros(1, *shape), ignore_dims=[0])
    import norse.torch as norse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return norse.to_nir(net, torch.rand(*shape))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["snntorch-conv", "norse-mlp", "snntorch-rmlp"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    ds = load_dataset("digits")
    x, xt = spikes(ds.x_train, 0), spikes(ds.x_test, 1)
    net, counts, shape = build(args.kind)
    lr = 1e-2 if args.kind == "norse-mlp" else 5e-3
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        perm = np.random.default_rng(epoch).permutation(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(counts(net, x[idx].reshape(len(idx), T, *shape)),
                                                     torch.as_tensor(ds.y_train[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((counts(net, xt.reshape(len(xt), T, *shape)).argmax(1).numpy() == ds.y_test).mean())
    print(f"{args.kind}: test accuracy {100 * acc:.2f} % in its own library ({time.perf_counter() - t0:.0f} s training)")
    args.out.mkdir(parents=True, exist_ok=True)
    graph = export(args.kind, net, shape)
    if any(isinstance(n, nir.Conv2d) for n in graph.nodes.values()):
        graph.infer_types()
    nir.write(args.out / "user.nir", graph)
    np.savez(args.out / "user.npz", x_train=x.reshape(len(x), T, *shape), y_train=ds.y_train,
             x_test=xt.reshape(len(xt), T, *shape), y_test=ds.y_test)
    print(f"wrote {args.out / 'user.nir'} and {args.out / 'user.npz'}")


if __name__ == "__main__":
    main()
