"""``spikefit fit``: train a network until it fits a target (CAT + FSC), write model.nir and a report."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import DatasetError, DoesNotFitError, TrainingError, UnknownTargetError
from .options import SEED, STEPS


def _epochs(value: str | None) -> dict:
    """``W[,C[,P[,F]]]``: epochs of warm-up, CAT, each pruning round and fine-tuning."""
    if not value:
        return {}
    keys = ("warmup_epochs", "cat_epochs", "prune_epochs", "finetune_epochs")
    parts = value.split(",")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = None
    if not nums or len(nums) > len(keys) or min(nums) < 0:
        raise TrainingError(f"--epochs {value!r} must be up to four non-negative integers W[,C[,P[,F]]] "
                            "(warm-up, CAT, per pruning round, fine-tune), e.g. 20,10,3,5")
    return dict(zip(keys, nums))


@click.command()
@click.option("--target", "target_name", help="Registered target name (see `spikefit targets`).")
@click.option("--target-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A target spec TOML file instead of a registered name.")
@click.option("--dataset", help="Registered dataset: digits, mnist1d (embedded); shd, nmnist, dvsgesture (from "
              "--data-dir); a plugin's.")
@click.option("--data", "data_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Your data: .npz or HDF5 with x_train, y_train, x_test, y_test (optional x_val, y_val).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the files of a dataset read from disk (shd, nmnist, dvsgesture).")
@click.option("--layout", type=click.Choice(["static", "sequence"]),
              help="x is (n, *shape) static values or (n, t, *shape) frames (default: from the model's input, "
                   "else 2-D/4-D static, 3-D/5-D sequence).")
@click.option("--encoding", type=click.Choice(["current", "rate"]),
              help="How static inputs enter (default: what the model expects; snnTorch and Norse models take "
                   "currents, spikefit's rate-coded spikes).")
@click.option("--init", "init", type=click.Path(dir_okay=False, path_type=Path),
              help="Start from this NIR model (snnTorch, Norse, spikefit) and fine-tune its weights.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: model.nir, checkpoint.pt, report.json, report.md.")
@click.option("--force", is_flag=True, help="Overwrite an existing output directory.")
@click.option("--resume", is_flag=True, help="Continue the interrupted fit in --out from its checkpoint.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of init, spikes and order.")
@click.option("--preset", type=click.Choice(["full", "demo"]), default="full", show_default=True,
              help="Epoch budget: full, or demo (about a third of the epochs).")
@click.option("--epochs", help="Epochs W[,C[,P[,F]]]: warm-up, CAT, per pruning round, fine-tune. With --init, W "
              "is a float fine-tune of the given weights (default 0: CAT starts from them).")
@click.option("--steps", type=STEPS, help="Time steps per sample (default: 16 digits, 20 mnist1d).")
@click.option("--cat-mode", type=click.Choice(["auto", "lloyd", "hard", "soft"]),
              help="How CAT moves the codebook: Lloyd steps, gradient (hard) or soft attention; auto (the default): "
                   "Lloyd steps for codebooks shared by many neurons, gradient for one codebook per neuron.")
@click.option("--prune-rounds", type=click.IntRange(min=0),
              help="Pruning rounds towards the chip's budgets (default 9; the preset's with --preset demo), each "
                   "followed by the epochs P of --epochs.")
@click.option("--prune-order", type=click.Choice(["before-cat", "after-cat"]),
              help="Prune the float network before CAT (the default) or the quantized one after it.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Samples per step (default 64); under torchrun each step's batch is split across the processes.")
@click.option("--device", default="auto", show_default=True,
              help="Where to train: auto (the first visible GPU, else the CPU), cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: training steps' matmuls and convolutions in bfloat16 (autocast); neurons, loss and "
                   "optimizer stay float32.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def fit(target_name, target_file, dataset, data_file, data_dir, layout, encoding, init, out, force, resume, seed,
        preset, epochs, steps, cat_mode, prune_rounds, prune_order, batch_size, device, precision, quiet, as_json):
    """Fit a spiking network to a chip: float warm-up, Fisher Spike Contribution pruning,
    Clusterization-Aware Training (or CAT first with --prune-order after-cat), fine-tuning, then
    verify and the fixed-point emulator."""
    from contextlib import nullcontext

    from ..datafiles import load_file
    from ..devices import resolve
    from ..training import distributed
    from ..datasets import load_dataset
    from ..outputs import check_output_path, output_lock
    from ..plugins import get_target
    from ..spec import load_target
    from ..trainer import FitConfig, FitInterrupted
    from ..trainer import fit as run_fit

    resolve(device)   # a device that is not visible: exit 2 before anything is read
    if bool(target_name) == bool(target_file):
        raise TrainingError("give exactly one of --target NAME or --target-file PATH")
    check_output_path(out)
    try:
        target = load_target(target_file) if target_file else get_target(target_name)
    except UnknownTargetError:
        from . import warn_plugin_errors

        warn_plugin_errors()  # e.g. a spec file in SPIKEFIT_TARGETS_PATH that was skipped, and why
        raise
    if bool(dataset) == bool(data_file):
        raise DatasetError("give exactly one of --dataset NAME or --data FILE (.npz / HDF5)")
    if data_dir is not None and not dataset:
        raise DatasetError("--data-dir goes with --dataset NAME (shd, nmnist, dvsgesture)")
    data = load_file(data_file, layout) if data_file else load_dataset(dataset, root=data_dir, steps=steps)
    if layout and dataset and layout != data.layout:
        raise DatasetError(f"dataset {dataset!r} is a {data.layout} dataset; drop --layout")
    overrides = {"seed": seed, "device": device, "precision": precision, **_epochs(epochs)}
    if batch_size:
        overrides["batch_size"] = batch_size
    if init is not None and "warmup_epochs" in overrides:  # a given model's float fine-tune before CAT
        overrides["init_warmup_epochs"] = overrides["warmup_epochs"]
    if encoding:
        overrides["encoding"] = encoding
    if steps is not None:
        overrides["steps"] = steps
    if cat_mode:
        overrides["cat_mode"] = cat_mode
    if prune_rounds is not None:
        overrides["prune_rounds"] = prune_rounds
    if prune_order:
        overrides["prune_order"] = prune_order
    config = FitConfig.preset(preset, **overrides)
    _check_memory(data, config)
    model = None
    if init is not None:
        from ..nir_io import read_nir

        model = read_nir(init)
    main = distributed.env_rank() == 0   # torchrun: rank 0 holds the output folder and reports
    with output_lock(out) if main else nullcontext():
        try:
            result = run_fit(model, data, target, config, out=out, force=force, resume=resume, progress=not quiet)
        except FitInterrupted as e:
            message = f"interrupted: checkpoint kept in {e.path}; continue with the same command plus --resume"
            if as_json:
                click.echo(json.dumps({"ok": False, "error": message, "exit_code": 130}))
            click.echo(message[0].upper() + message[1:], err=True)
            raise SystemExit(130)
        except DoesNotFitError as e:
            _does_not_fit(e, out, as_json, target.name)
    if result is None:   # another process of a data-parallel fit: rank 0 prints the result
        return
    if as_json:
        data = result.to_dict()
        report = out / "report.json"
        if report.exists():  # energy and latency per inference on the target (spikefit.energy)
            data["energy"] = json.loads(report.read_text(encoding="utf-8")).get("energy")
        click.echo(json.dumps({**data, "exit_code": 0}, indent=2))
        return
    click.echo((out / "report.md").read_text(encoding="utf-8").rstrip())
    click.echo(f"\nWrote {out / 'model.nir'}, {out / 'report.json'}, {out / 'report.md'}")


def _does_not_fit(e: DoesNotFitError, out: Path, as_json: bool, target: str) -> None:
    """A target the fit cannot meet (found before training, or after it: then with its report):
    exit 1, as verify does for "does not fit"."""
    message = " ".join(str(e).split())
    if as_json:
        data = e.result.to_dict() if e.result is not None else {"ok": False, "target": target, "trained": False}
        click.echo(json.dumps({**data, "error": message, "exit_code": 1}, indent=2))
    elif (out / "report.md").exists():
        click.echo((out / "report.md").read_text(encoding="utf-8").rstrip())
    click.echo(f"Does not fit: {message}", err=True)
    raise SystemExit(1)


def _check_memory(data, config) -> None:
    """Refuse a fit whose encoded spikes (float32, steps x samples x inputs, held in a few copies) cannot fit."""
    from ..bounds import check_memory
    from ..trainer import steps_for

    steps = steps_for(data, config)
    samples = len(data.x_train[:config.train_limit]) + 2 * len(data.x_test[:config.test_limit])
    check_memory(3 * 4 * steps * samples * data.n_inputs, f"a fit of {data.name!r} with {steps} steps",
                 "pass fewer --steps")
