"""``spikefit run``: run a model on a backend (any registered one) and report accuracy, spikes
and synaptic operations; ``--target`` adds energy and latency per inference on a chip,
``--neurobench`` the standard NeuroBench metrics; ``--compare`` runs several backends on the same samples."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..errors import DatasetError
from ..runner import CompareResult, RunResult, compare, run as run_network
from ..model_io import load_model
from .options import DT, SAMPLES, SEED, STEPS


def _load_array(path: Path, what: str) -> np.ndarray:
    """A .npy array, mapped rather than read (a header that claims more than the file holds fails)."""
    if path.exists() and not path.is_file():
        raise DatasetError(f"{what} '{path}' is not a regular file; pass a .npy file written by numpy.save")
    try:
        return np.array(np.load(path, allow_pickle=False, mmap_mode="r"))  # a writable copy of what the file holds
    except (OSError, ValueError) as e:
        raise DatasetError(f"{what} file '{path}' is not a .npy array ({' '.join(str(e).split())}); save it with "
                           "numpy.save") from None


def result_table(res: RunResult) -> str:
    lines = [f"backend   {res.backend}: {res.samples} samples x {res.steps} steps"]
    if res.accuracy is not None:
        correct = int((res.predictions == res.labels).sum())
        lines.append(f"accuracy  {res.accuracy:.4f} ({correct}/{res.samples}, readout '{res.output}')")
    lines.append(f"{'layer':<16} {'spikes':>12} {'per sample':>12}")
    lines.append(f"{'(input)':<16} {res.input_spikes:>12,} {res.input_spikes / res.samples:>12.1f}")
    for name, n in res.spikes.items():
        lines.append(f"{name:<16} {n:>12,} {n / res.samples:>12.1f}")
    lines.append(f"{'connection':<16} {'synops':>12} {'per sample':>12}")
    for name, n in res.synops.items():
        lines.append(f"{name:<16} {n:>12,} {n / res.samples:>12.1f}")
    lines.append(f"{'total':<16} {res.synops_total:>12,} {res.synops_total / res.samples:>12.1f}")
    lines.append(f"time      {res.seconds:.3f} s ({res.samples_per_s:,.1f} samples/s)")
    return "\n".join(lines)


def compare_table(cmp: CompareResult, energy: dict | None = None) -> str:
    ref = next(iter(cmp.results))
    target = next(iter(energy.values())).target if energy else None
    head = f" {'uJ/inference':>13}" if energy else ""
    lines = [f"{'backend':<16} {'accuracy':>9} {'spikes':>12} {'synops':>14} {'samples/s':>11} {'identical':>10}{head}"]
    for name, res in cmp.results.items():
        acc = "-" if res.accuracy is None else f"{res.accuracy:.4f}"
        same = "(ref)" if name == ref else f"{cmp.agreement[name]:.4f}"
        e = energy[name].energy_uj if energy else None
        tail = (f" {'-' if e is None else f'{e:.4g}':>13}") if energy else ""
        lines.append(f"{name:<16} {acc:>9} {sum(res.spikes.values()):>12,} {res.synops_total:>14,} "
                     f"{res.samples_per_s:>11,.1f} {same:>10}{tail}")
    if energy:
        lines.append(f"uJ/inference: energy per inference on {target} (`spikefit run --target {target}` "
                     f"on one backend shows the model's terms and sources)")
    res = cmp.results[ref]
    lines.append(f"identical: fraction of the {res.samples} samples whose output spikes ('{res.output}') "
                 f"equal {ref}'s at every one of {res.steps} steps")
    return "\n".join(lines)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--backend", "-b", default=None,
              help="Backend: any registered one (`spikefit plugins`; emulator and emulator-float are built in). "
                   "Default: emulator for spikes, emulator-float for currents.")
@click.option("--dataset", default=None, help="Registered dataset whose test split to run (digits, mnist1d, ...).")
@click.option("--data", "data_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Your data file (.npz / HDF5 with x_test, y_test, ...): run its test split.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of a dataset read from disk (shd, nmnist, dvsgesture).")
@click.option("--samples", type=SAMPLES, default=None, help="Run the first N samples (default: all).")
@click.option("--steps", type=STEPS, default=None, help="Time steps per sample (default: the model's, else 32).")
@click.option("--seed", type=SEED, default=None, help="Seed of the rate encoding (default: the model's, else 0).")
@click.option("--inputs", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Input spikes .npy: (t, b, n), or (b, n) held for --steps steps.")
@click.option("--labels", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Labels .npy (b,) for --inputs, to report accuracy.")
@click.option("--dt", type=DT, default=None, help="Seconds per step for a NIR model (default: detected).")
@click.option("--target", "-t", "target", default=None,
              help="Chip (registered name or .toml) whose [energy] constants give energy and latency per inference; "
                   "the emulator runs its neuron ([neuron] models, e.g. xylo-lif; default: the model's target).")
@click.option("--neurobench", "with_neurobench", is_flag=True,
              help="Also compute NeuroBench's metrics (synaptic operations, activation and connection sparsity, "
                   "footprint) with the neurobench package.")
@click.option("--compare", "compare_with", default=None,
              help="Comma-separated backends to run on the same samples, e.g. emulator,xylosim; 'auto': the "
                   "emulator and the first registered backend that runs the model's (or --target's) neuron.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def run(model: Path, backend: str | None, dataset: str | None, data_file: Path | None, data_dir: Path | None,
        samples: int | None, steps: int | None, seed: int | None, inputs: Path | None, labels: Path | None,
        dt: float | None, target: str | None, with_neurobench: bool, compare_with: str | None, as_json: bool) -> None:
    """Run MODEL (a NIR file) on a backend and print accuracy, spikes per layer and synaptic operations;
    with --target, energy and latency per inference on that chip."""
    given = [name for name, v in (("--dataset", dataset), ("--data", data_file), ("--inputs", inputs)) if v is not None]
    if not given:
        raise DatasetError("nothing to run: pass --dataset NAME, --data FILE or --inputs X.npy")
    if len(given) > 1:
        raise DatasetError(f"pass one of --dataset, --data, --inputs, not {' and '.join(given)}")
    if labels is not None and inputs is None:
        raise DatasetError("--labels goes with --inputs; a dataset brings its own labels")
    network = load_model(model, dt)
    spec = None
    if target is not None:
        from ..plugins import get_target

        spec = get_target(target)
    x = None if inputs is None else _load_array(inputs, "inputs")
    y = None if labels is None else _load_array(labels, "labels")
    if data_file is not None:
        from ..datafiles import load_file

        dataset = load_file(data_file)
    elif dataset is not None and data_dir is not None:
        from ..datasets import load_dataset

        dataset = load_dataset(dataset, root=data_dir, steps=steps)
    kwargs = dict(inputs=x, labels=y, dataset=dataset, samples=samples, steps=steps, seed=seed)
    if compare_with:
        names = [n.strip() for n in compare_with.split(",") if n.strip()]
        result = compare(network, None if names == ["auto"] else names, target=spec, **kwargs)
        energy = None
        if spec is not None:
            from ..energy import estimate_run
            from ..fitcheck import verify

            placement = verify(network, spec)
            energy = {k: estimate_run(network, r, spec, placement) for k, r in result.results.items()}
        data = result.to_dict()
        for k, e in (energy or {}).items():
            data["results"][k]["energy"] = e.to_dict()
        text = [compare_table(result, energy)]
    else:
        res = run_network(network, backend, target=spec, **kwargs)
        data = res.to_dict()
        text = [result_table(res)]
        if spec is not None:
            from ..energy import estimate_run

            energy = estimate_run(network, res, spec)
            data["energy"] = energy.to_dict()
            text.append(energy.table())
    if with_neurobench:
        from ..neurobench_metrics import neurobench_metrics
        from ..runner import prepare_inputs

        xs, ys = prepare_inputs(network, **kwargs)
        nb = neurobench_metrics(network, xs, ys)
        data["neurobench"] = nb
        text.append(neurobench_table(nb))
    click.echo(json.dumps(data, indent=2) if as_json else "\n".join(text))


def neurobench_table(nb: dict) -> str:
    ops = nb["synops"]
    return "\n".join([
        f"neurobench {nb['neurobench_version']} ({nb['samples']} samples x {nb['steps']} steps, float32 torch model):",
        f"  synaptic operations per sample   {ops['effective_acs']:,.1f} ACs, {ops['effective_macs']:,.1f} MACs "
        f"(dense {ops['dense']:,.0f})",
        f"  activation sparsity              {nb['activation_sparsity']:.4f}",
        f"  connection sparsity              {nb['connection_sparsity']:.4f}",
        f"  footprint                        {nb['footprint_bytes']:,} bytes"])
