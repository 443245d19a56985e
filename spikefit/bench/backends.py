"""``spikefit bench backends``: samples per second of the emulator and of Lava on the same model
and the same samples, side by side, and their ratio (the project's target: emulator >= 100 x Lava).

Without ``--model`` it runs a seeded random 3-layer network (inputs-128-10) sized for the dataset:
throughput depends on the shape and spike counts of a network, not on how it was trained.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..datasets import load_dataset
from ..errors import BackendError
from ..network import Dense, Input, Network, Neurons, Output
from ..runner import execute, prepare_inputs

TARGET_RATIO = 100.0


def bench_network(n_in: int, hidden: int = 128, classes: int = 10, seed: int = 0) -> Network:
    """A seeded random inputs-hidden-classes network whose neurons spike at moderate rates."""
    rng = np.random.default_rng(seed)
    return Network.sequential(
        Input("in", (n_in,)),
        Dense("fc1", rng.normal(0.0, 2.0 / np.sqrt(n_in), (hidden, n_in))),
        Neurons("h1", (hidden,), du=1.0, dv=0.1, vth=1.0),
        Dense("fc2", rng.normal(0.0, 2.0 / np.sqrt(hidden), (classes, hidden))),
        Neurons("out", (classes,), du=1.0, dv=0.1, vth=1.0),
        Output("o", (classes,)), metadata={"bench": f"random seed {seed}"})


def measure(network: Network, dataset: str, samples: int, steps: int | None, seed: int | None, repeat: int) -> dict:
    from .. import plugins

    backends = plugins.registries()["backend"]
    if "lava" not in backends:
        raise BackendError("the 'lava' backend is not registered, so there is nothing to compare the emulator with; "
                           "install it: pip install -e plugins/spikefit-lava")
    x, y = prepare_inputs(network, dataset=dataset, samples=samples, steps=steps, seed=seed)
    emu = min((execute(network, backends["emulator"], x, y) for _ in range(max(repeat, 1))), key=lambda r: r.seconds)
    lava = execute(network, backends["lava"], x, y)
    same = (emu.outputs[emu.output] == lava.outputs[lava.output]).all(axis=(0, 2)).mean()
    ratio = emu.samples_per_s / lava.samples_per_s
    return {"samples": emu.samples, "steps": emu.steps, "dataset": dataset,
            "neurons": sum(p.size for p in network.populations()),
            "emulator": {"seconds": emu.seconds, "samples_per_s": emu.samples_per_s, "accuracy": emu.accuracy},
            "lava": {"seconds": lava.seconds, "samples_per_s": lava.samples_per_s, "accuracy": lava.accuracy},
            "ratio": ratio, "target_ratio": TARGET_RATIO, "meets_target": bool(ratio >= TARGET_RATIO),
            "identical_outputs": float(same)}


@click.command("backends")
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Model (NIR file); default: a seeded random inputs-128-10 network.")
@click.option("--dataset", default="digits", show_default=True, help="Dataset whose test samples to run.")
@click.option("--samples", type=int, default=50, show_default=True, help="Samples (Lava runs them all too).")
@click.option("--steps", type=int, default=None, help="Time steps per sample (default: the model's, else 32).")
@click.option("--seed", type=int, default=None, help="Seed of the encoding (default: the model's, else 0) and of the random model.")
@click.option("--repeat", type=int, default=3, show_default=True, help="Emulator runs; the fastest counts.")
@click.option("--dt", type=float, default=None, help="Seconds per step for a NIR model (default: detected).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def backends(model: Path | None, dataset: str, samples: int, steps: int | None, seed: int | None, repeat: int,
             dt: float | None, as_json: bool) -> None:
    """Samples per second of the emulator and of Lava on the same model and samples, and the ratio."""
    if model is not None:
        from ..model_io import load_model

        network = load_model(model, dt)
    else:
        network = bench_network(load_dataset(dataset).n_inputs, seed=seed or 0)
    r = measure(network, dataset, samples, steps, seed, repeat)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    what = str(model) if model else "random inputs-128-10 network"
    click.echo(f"{what}: {r['samples']} {dataset} test samples x {r['steps']} steps, {r['neurons']} neurons")
    click.echo(f"{'backend':<10} {'seconds':>9} {'samples/s':>11}")
    for name in ("emulator", "lava"):
        click.echo(f"{name:<10} {r[name]['seconds']:>9.3f} {r[name]['samples_per_s']:>11,.1f}")
    verdict = "meets" if r["meets_target"] else "misses"
    click.echo(f"ratio     {r['ratio']:,.0f} x ({verdict} the {TARGET_RATIO:.0f} x target); "
               f"identical output spikes on {r['identical_outputs']:.1%} of samples")
