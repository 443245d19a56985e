"""``spikefit bench compression``: accuracy of every compression method in one harness.

The grid, its cells and targets are in :mod:`.compression_grid`, the tables and plots in
:mod:`.compression_report`; this module is the command.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .compression_grid import (DEFAULT_METHODS, PRUNERS, QUANTIZERS, TARGET_M, BenchError, Cell,  # noqa: F401
                               check_targets, find, plan, run_benchmark, run_cells, summarize)
from .compression_report import markdown, plots, tables, write_outputs  # noqa: F401

# -- the command ---------------------------------------------------------------------------------------

def _ints(text: str, option: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=option) from None
    if not vals or min(vals) < 2:
        raise click.BadParameter(f"{text!r}: every M must be at least 2", param_hint=option)
    return vals


def _floats(text: str, option: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=option) from None
    if not vals or not all(0 <= v < 1 for v in vals):
        raise click.BadParameter(f"{text!r}: every sparsity must lie in [0, 1)", param_hint=option)
    return sorted(vals)


def _widths(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or min(vals) < 1:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of positive layer widths, e.g. 1024",
                                 param_hint="--hidden")
    return vals


def _methods(text: str) -> list[str]:
    from ..baselines import METHODS

    vals = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in vals if m not in METHODS]
    if bad or not vals:
        raise click.BadParameter(f"unknown method {bad[0] if bad else text!r}; use some of {', '.join(METHODS)}",
                                 param_hint="--methods")
    return vals


def build_config(preset: str, epochs: int | None, train_limit: int | None, test_limit: int | None,
                 device: str = "cpu", hidden: tuple[int, ...] | None = None, precision: str = "fp32",
                 prune_order: str = "before-cat"):
    from ..trainer import FitConfig

    over = {"train_limit": train_limit, "test_limit": test_limit, "threads": 1, "deploy": False, "device": device,
            "hidden": hidden, "precision": precision, "prune_order": prune_order}
    if epochs is not None:
        over.update(warmup_epochs=epochs, cat_epochs=epochs, prune_epochs=epochs, finetune_epochs=epochs)
    return FitConfig.preset(preset, **over)



@click.command("compression")
@click.option("--dataset", type=click.Choice(["digits", "mnist1d", "digits-image"]), default="digits", show_default=True,
              help="digits and mnist1d train their MLP default, digits-image its convolutional one.")
@click.option("--data", "data_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Your own dataset instead: an .npz / HDF5 file with x_train, y_train, x_test, y_test (as "
                   "`spikefit fit --data`); its network is the default MLP (--hidden), files are named by its stem.")
@click.option("--layout", type=click.Choice(["static", "sequence"]), default=None,
              help="With --data: static inputs (rate-coded) or per-step frames; default: from the array shapes.")
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True, help="Seeds 0..N-1 per cell.")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True, help="Comma-separated methods.")
@click.option("--M", "Ms", default="2,4,8,16", show_default=True, help="Codebook sizes of the quantization methods.")
@click.option("--sparsity", "sparsity", default="0,0.5,0.75,0.9", show_default=True,
              help="Synapse sparsity levels of the pruning methods.")
@click.option("--scope", type=click.Choice(["layer", "neuron"]), default="layer", show_default=True,
              help="Codebook scope of the grid (layer adds one per-neuron CAT row).")
@click.option("--prune-m", type=click.IntRange(2), default=TARGET_M, show_default=True,
              help="M of the pruning curves and of the per-neuron row.")
@click.option("--neuron-row/--no-neuron-row", default=True, show_default=True,
              help="With --scope layer: add CAT at M=--prune-m with one codebook per neuron.")
@click.option("--allocation", type=click.Choice(["default", "global", "layer"]), default="default", show_default=True,
              help="How pruners spread sparsity: one ranking over all layers, or the level in every layer; "
                   "default: FSC global, magnitude and random per layer.")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Parallel processes (one torch thread each); results do not depend on it.")
@click.option("--preset", type=click.Choice(["full", "demo"]), default="full", show_default=True,
              help="Training epochs (spikefit.trainer.FitConfig.preset).")
@click.option("--epochs", type=click.IntRange(0), default=None, help="Override every stage's epochs (quick runs).")
@click.option("--train-limit", type=click.IntRange(1), default=None, help="First N training samples.")
@click.option("--test-limit", type=click.IntRange(1), default=None, help="First N test samples.")
@click.option("--timing-steps", type=click.IntRange(0), default=200, show_default=True,
              help="Alternating float/CAT steps timed for the speed figure (0: skip).")
@click.option("--energy-targets", default="published", show_default=True,
              help="Chips of the energy column and plot: 'published' (every target with a per-operation energy "
                   "constant), 'none', or comma-separated names.")
@click.option("--cache", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON-lines file of finished cells: reused on a rerun with the same options, appended to.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for compression_<dataset>.md/.json and the PNG plots.")
@click.option("--from-json", "from_json", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Render a saved report (compression_<dataset>.json) instead of running; other options ignored.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the tables.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--hidden", default=None, help="Hidden layer widths of the dataset's network, comma-separated "
              "(e.g. 1024; default: the dataset's own). Files are named compression_<dataset>-h<widths>.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Training steps' matmuls in float32 or bfloat16 (autocast; FitConfig.precision).")
@click.option("--prune-order", type=click.Choice(["before-cat", "after-cat"]), default="before-cat",
              show_default=True, help="Every pruner prunes the float network before the compression stage, or the "
              "compressed one after it (FitConfig.prune_order).")
@click.option("--device", default="cpu", show_default=True,
              help="Training device of every cell (FitConfig.device: auto, cpu, cuda, cuda:N); these networks are "
                   "small: the CPU with --jobs processes is the fast choice.")
def compression(dataset, data_file, layout, seeds, methods, Ms, sparsity, scope, prune_m, neuron_row, allocation,
                jobs, preset, epochs, train_limit, test_limit, timing_steps, energy_targets, cache, out, from_json, as_json, quiet, hidden,
                precision, prune_order, device):
    """Accuracy of compression methods (CAT, k-means, uniform, LSQ, DKM, k-means QAT, ternary; FSC, GMP,
    SNIP, rewiring, magnitude, random pruning; the equal-synapse dense network) over M and sparsity in
    one harness, mean ± std over seeds, with the targets checked."""
    if from_json is not None:
        try:
            report = json.loads(from_json.read_text(encoding="utf-8"))
            report["summary"], report["dataset"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BenchError(f"{str(from_json)!r} is not a report of 'spikefit bench compression'; pass the "
                             "compression_<dataset>.json it wrote") from None
    else:
        config = build_config(preset, epochs, train_limit, test_limit, device, _widths(hidden), precision, prune_order)
        source = click.get_current_context().get_parameter_source("dataset")
        if data_file is not None and source == click.core.ParameterSource.COMMANDLINE:
            raise BenchError(f"pass --dataset {dataset} or --data {data_file}, not both")
        if data_file is None and layout is not None:
            raise BenchError(f"--layout {layout} goes with --data FILE; the embedded datasets have their own")
        if data_file is not None:
            from .compression_grid import DataFile

            dataset = DataFile.of(data_file, layout)
        log = None if quiet else (lambda msg: click.echo(msg, err=True))
        report = run_benchmark(dataset, _methods(methods), _ints(Ms, "--M"), _floats(sparsity, "--sparsity"), seeds,
                               scope, prune_m, jobs, config, timing_steps, cache, neuron_row, log,
                               None if allocation == "default" else allocation, _energy_targets(energy_targets))
        report["preset"] = preset
        report["command"] = _command(report["dataset"], seeds, methods, Ms, sparsity, scope, prune_m, neuron_row,
                                     allocation, jobs, preset, epochs, train_limit, test_limit)
        if energy_targets != "published":
            report["command"] += f" --energy-targets {energy_targets}"
        if data_file is not None:
            report["command"] = report["command"].replace(f"--dataset {report['dataset']}", f"--data {data_file}"
                                                          + (f" --layout {layout}" if layout else ""), 1)
        if hidden:
            report["command"] += f" --hidden {hidden}"
        if precision != "fp32":
            report["command"] += f" --precision {precision}"
        if device != "cpu":
            report["command"] += f" --device {device}"
        if prune_order != "before-cat":
            report["command"] += f" --prune-order {prune_order}"
    if out is not None:
        write_outputs(report, out)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(markdown(report), nl=False)


def _energy_targets(text: str) -> list[str]:
    from .compression_energy import resolve_targets

    return resolve_targets(text)



def _command(dataset, seeds, methods, Ms, sparsity, scope, prune_m, neuron_row, allocation, jobs, preset, epochs,
             train_limit, test_limit) -> str:
    parts = [f"spikefit bench compression --dataset {dataset} --seeds {seeds} --methods {methods} --M {Ms}",
             f"--sparsity {sparsity} --scope {scope} --prune-m {prune_m} --jobs {jobs} --preset {preset}"]
    if not neuron_row:
        parts.append("--no-neuron-row")
    if allocation != "default":
        parts.append(f"--allocation {allocation}")
    for flag, v in (("--epochs", epochs), ("--train-limit", train_limit), ("--test-limit", test_limit)):
        if v is not None:
            parts.append(f"{flag} {v}")
    return " ".join(parts)

