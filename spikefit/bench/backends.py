"""``spikefit bench backends``: samples per second of the emulator and of every other registered
backend that runs the model's neuron (:mod:`spikefit.capabilities`), on the same model and samples,
side by side, with each ratio (the project's target: the emulator >= 100 x each of them).

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


def measure(network: Network, dataset: str, samples: int, steps: int | None, seed: int | None, repeat: int,
            backends: list[str] | None = None) -> dict:
    """The emulator (running the model's neuron) against ``backends`` (default: every registered backend
    besides the core's that runs that neuron and takes the inputs)."""
    from ..capabilities import REFERENCE, capability, counterparts, input_kind, network_neuron
    from ..runner import check_backends, resolve_backend

    model, _, origin = network_neuron(network)
    x, y = prepare_inputs(network, dataset=dataset, samples=samples, steps=steps, seed=seed)
    if backends is None:
        kinds = {"spikes": ("spikes", "counts", "currents"), "counts": ("counts", "currents"), "currents": ("currents",)}
        names = [n for n in counterparts(model)
                 if capability(resolve_backend(n, network)).inputs in kinds[input_kind(x)]]
    else:
        names = [n for n in backends if n != REFERENCE]
    if not names:
        raise BackendError(f"no registered backend besides the emulator runs {model or 'generic LIF'} neurons "
                           f"({origin}) on these inputs, so there is nothing to compare the emulator with; install "
                           "a plugin that provides one (`spikefit plugins` lists the loaded ones)")
    ref = resolve_backend(REFERENCE, network)
    others = [resolve_backend(n, network) for n in names]
    check_backends([ref, *others], network, x)
    emu = min((execute(network, ref, x, y) for _ in range(max(repeat, 1))), key=lambda r: r.seconds)
    out = {"samples": emu.samples, "steps": emu.steps, "dataset": dataset,
           "neurons": sum(p.size for p in network.populations()), "neuron_model": model or "lif",
           "target_ratio": TARGET_RATIO, "compared": names,
           "emulator": {"seconds": emu.seconds, "samples_per_s": emu.samples_per_s, "accuracy": emu.accuracy}}
    for be in others:
        res = execute(network, be, x, y)
        same = (emu.outputs[emu.output] == res.outputs[res.output]).all(axis=(0, 2)).mean()
        ratio = emu.samples_per_s / res.samples_per_s
        out[be.name] = {"seconds": res.seconds, "samples_per_s": res.samples_per_s, "accuracy": res.accuracy,
                        "ratio": ratio, "meets_target": bool(ratio >= TARGET_RATIO), "identical_outputs": float(same)}
    return out


@click.command("backends")
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Model (NIR file); default: a seeded random inputs-128-10 network.")
@click.option("--dataset", default="digits", show_default=True, help="Dataset whose test samples to run.")
@click.option("--samples", type=int, default=50, show_default=True, help="Samples (every backend runs them all).")
@click.option("--steps", type=int, default=None, help="Time steps per sample (default: the model's, else 32).")
@click.option("--seed", type=int, default=None, help="Seed of the encoding (default: the model's, else 0) and of the random model.")
@click.option("--repeat", type=int, default=3, show_default=True, help="Emulator runs; the fastest counts.")
@click.option("--dt", type=float, default=None, help="Seconds per step for a NIR model (default: detected).")
@click.option("--backend", "-b", "names", multiple=True,
              help="Backend to compare with the emulator (repeatable); default: every registered one that runs "
                   "the model's neuron.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def backends(model: Path | None, dataset: str, samples: int, steps: int | None, seed: int | None, repeat: int,
             dt: float | None, names: tuple[str, ...], as_json: bool) -> None:
    """Samples per second of the emulator and of the other registered backends that run the model's neuron,
    on the same model and samples, and the ratios."""
    if model is not None:
        from ..model_io import load_model

        network = load_model(model, dt)
    else:
        network = bench_network(load_dataset(dataset).n_inputs, seed=seed or 0)
    r = measure(network, dataset, samples, steps, seed, repeat, list(names) or None)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    what = str(model) if model else "random inputs-128-10 network"
    click.echo(f"{what}: {r['samples']} {dataset} test samples x {r['steps']} steps, {r['neurons']} neurons")
    click.echo(f"{'backend':<12} {'seconds':>9} {'samples/s':>11} {'emulator is':>12}  identical outputs")
    click.echo(f"{'emulator':<12} {r['emulator']['seconds']:>9.3f} {r['emulator']['samples_per_s']:>11,.1f}")
    for name in r["compared"]:
        b = r[name]
        verdict = "meets" if b["meets_target"] else "misses"
        click.echo(f"{name:<12} {b['seconds']:>9.3f} {b['samples_per_s']:>11,.1f} {b['ratio']:>10,.0f} x  "
                   f"{b['identical_outputs']:.1%} of samples ({verdict} the {TARGET_RATIO:.0f} x target)")
