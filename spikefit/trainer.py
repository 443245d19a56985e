"""The fit: train an SNN until it fits a target, driven only by its :class:`~spikefit.spec.TargetSpec`.

Its plan on the training engine (:mod:`spikefit.training`, ``docs/method.md``)::

    float warm-up -> CAT (codebook per scope group) -> FSC prune rounds (each: score, prune,
    fine-tune) -> fine-tune (CAT kept, hard) -> verify -> emulator (deployed accuracy) -> outputs

A given (already trained) model skips the warm-up: CAT starts from its float weights, and its own
accuracy on the test split is reported before every stage's.

``fit(model, data, target, config) -> FitResult``. With ``out`` it writes ``model.nir``,
``checkpoint.pt`` (after every epoch, atomically), ``report.json`` and ``report.md``; Ctrl-C leaves
the last checkpoint and raises :class:`FitInterrupted`; ``resume=True`` continues from it exactly
(every epoch's spikes and order derive from the seed and the epoch number).
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import cat as C
from . import chipfit, fsc
from .datafiles import resolve
from .datasets import Dataset, check_encoding, predict
from .errors import DoesNotFitError, ModelError, TrainingError
from .network import Network
from .nn import SNN, set_neuron_model
from .placement import place
from .training.checkpoint import (CHECKPOINT, atomic_save, atomic_write_text, load_checkpoint, load_network,
                                  resume_point_exists)
from .training.config import (CURRENT_CONVENTIONS, DEFAULT_CONV, DEFAULT_HIDDEN, DEFAULT_STEPS, ENCODINGS,  # noqa: F401
                              SCORERS, FitConfig, default_hidden, default_synapses, steps_for)
from .training import distributed
from .training.engine import Engine, FitInterrupted, TrainData
from .datasets import encode  # noqa: F401  (re-exported: spikefit.trainer is the fit's public module)
from .training.loop import (deterministic, epoch_seed, evaluate, make_optimizer, predict_model, set_lr,  # noqa: F401
                            stage_lr, train_epoch)
from .training.report import FitResult, codebooks, json_default, network_usage, report_dict, report_markdown
from .training.stages import Cat, ChipPrune, Finetune, Warmup, fisher_ema

REPLACE_ROUNDS = 3       # a pruning round re-places and re-prunes at most this often (per-core rows converge in 1-2)
PER_CORE = ("synapses_per_core", "axons_per_core", "fan_out", "fan_out_cores", "cores")


def default_model(dataset: Dataset, config: FitConfig, target=None) -> SNN:
    """The per-dataset default architecture (IF neurons when the target runs no leaky model): an MLP of
    ``DEFAULT_HIDDEN`` widths, or for a dataset in ``DEFAULT_CONV`` (digits-image) convolutions of
    ``DEFAULT_HIDDEN`` channels and a dense readout (``spikefit.training.config``)."""
    hidden = list(default_hidden(dataset, config))
    dv = config.dv
    if target is not None and not target.neuron.runs("lif"):
        dv = 0.0
    conv = DEFAULT_CONV.get(dataset.name)
    if conv is not None:
        model = SNN.convnet(dataset.input_shape, hidden, list(conv.strides), dataset.n_classes, conv.kernel,
                            conv.padding, du=config.du, dv=dv, vth=config.vth, seed=config.seed)
    else:
        model = SNN.mlp(dataset.n_inputs, hidden, dataset.n_classes, du=config.du, dv=dv, vth=config.vth,
                        seed=config.seed)
    return chip_neurons(model, target)


def chip_neurons(model: SNN, target) -> SNN:
    """Train the neuron the target runs: its ``[neuron] models`` chip model (spikefit.chipneurons), else
    spikefit's LIF."""
    if target is not None:
        set_neuron_model(model, target.neuron.chip_model, target.neuron.reset)
    return model


def resolve_data(data) -> Dataset:
    """A Dataset from a name, an .npz / HDF5 path, a Dataset or a (train, test) pair of torch datasets."""
    return resolve(data)


def check_target(target, dataset: Dataset, config: FitConfig) -> None:
    """Fail early, in one line, on targets no classifier of this dataset can meet."""
    lim = target.limits
    if lim.inputs is not None and lim.inputs < dataset.n_inputs:
        raise DoesNotFitError(f"target {target.name!r} takes {lim.inputs} input channels but dataset "
                              f"{dataset.name!r} has {dataset.n_inputs}; use a target with more inputs")
    if lim.outputs is not None and lim.outputs < dataset.n_classes:
        raise DoesNotFitError(f"target {target.name!r} has {lim.outputs} outputs but dataset {dataset.name!r} "
                              f"has {dataset.n_classes} classes; use a target with more outputs")
    grid = C.weight_grid(lim.weight_bits)
    if lim.unique_weights and grid and lim.unique_weights > grid[1] - grid[0]:
        raise TrainingError(f"target {target.name!r}: unique_weights {lim.unique_weights} exceeds the "
                            f"{grid[1] - grid[0]} non-zero values of a {lim.weight_bits}-bit weight; lower "
                            "unique_weights or raise weight_bits")
    if lim.fan_out is not None and lim.fan_out_unit == "synapses" and lim.fan_out < 1:
        raise TrainingError(f"target {target.name!r} allows fan_out {lim.fan_out}; no neuron could reach the output")


def cat_spec(target, config: FitConfig, model: SNN | None = None) -> C.CatSpec:
    lim = target.limits
    bits = lim.weight_bits
    if config.max_weight_bits is not None:
        bits = config.max_weight_bits if bits is None else min(bits, config.max_weight_bits)
    M = lim.unique_weights
    grid = C.weight_grid(bits)
    if M is not None and grid is not None:
        M = min(M, grid[1] - grid[0])  # a coarser deploy grid caps M (e.g. 255 values at 8 bits)
    layers = C.layer_grids(model, target) if model is not None else ()
    if config.max_weight_bits is not None:
        layers = tuple((n, min(b, config.max_weight_bits), w) for n, b, w in layers)
    return C.CatSpec(M, lim.unique_weights_scope, bits, lim.weight_scaling, config.cat_mode, layer_bits=layers)


# -- the fit's engine ----------------------------------------------------------------------------

class Trainer(Engine):
    """``Trainer(model, data, target, config, out=...).fit(resume=False)``; see :func:`fit`."""

    def __init__(self, model, data, target, config: FitConfig | None = None, out: str | Path | None = None,
                 callbacks: list[Callable[[dict], None]] | None = None, progress: bool = True):
        from .plugins import get_target

        config = config or FitConfig()
        self.target = get_target(target) if isinstance(target, str) else target
        self.label = self.target.name
        self.dataset = resolve_data(data)
        self.user_model = model is not None        # a given model: fine-tuned from its own weights
        self.convention = None                     # the NIR convention it was read with (snntorch, norse-1.1, ...)
        self.config = config
        model = self._model(model)                 # conforms the data's layout to the model's input
        self._grid_model = model                   # per-layer weight grids (cat.layer_grids) are read from it
        self.snapped = list(getattr(model, "snapped", []))
        check_target(self.target, self.dataset, config)
        chipfit.check_feasible(model, self.target)   # seconds, before any epoch
        self._setup(config)
        super().__init__(model, self.data, self.stages(), config, out, callbacks, progress)

    def _setup(self, config: FitConfig) -> None:
        """What follows from the config: steps, encoding, the CAT spec and the data tensors."""
        self.config = config
        self.steps = steps_for(self.dataset, config)
        self.encoding = self._encoding()
        self.spec = cat_spec(self.target, config, getattr(self, "model", None) or self._grid_model)
        self.data = TrainData.build(self.dataset, self.steps, self.encoding, config)

    def _model(self, model) -> SNN:
        if model is None:
            return default_model(self.dataset, self.config, self.target)
        if isinstance(model, Network):
            self.convention = (model.metadata.get("nir_convention") or {}).get("name")
            model = SNN.from_network(model, snap=True)  # decays to the chips' 1/4096 steps (listed in the report)
        if not isinstance(model, SNN):
            raise ModelError(f"model must be a spikefit SNN, a Network or None, got {type(model).__name__}")
        self.dataset = self.dataset.conform(model.input_shape, model.input_name)
        out = model.output_population()
        self.dataset.check_labels(out.size, what=f"the model output {out.name!r} has {out.size} neurons")
        for s in model.synapses():  # CAT re-clusters from the float weights (pruned zeros stay)
            s.quant = None
        return chip_neurons(model, self.target)

    def _encoding(self) -> str:
        """The config's encoding, else what the model expects: currents for snnTorch and Norse models."""
        enc = self.config.encoding or ("current" if self.convention in CURRENT_CONVENTIONS else "rate")
        check_encoding(self.dataset, enc)
        return enc

    # -- the plan --------------------------------------------------------------------------------
    def stages(self) -> list:
        cfg = self.config
        cat = [Cat("cat", cfg.cat_epochs, cfg.lr)] if self.spec.active else []
        rounds = [ChipPrune(f"prune{r}", cfg.prune_epochs, cfg.prune_lr, round=r, rounds=cfg.prune_rounds)
                  for r in range(1, cfg.prune_rounds + 1)]
        middle = rounds + cat if cfg.prune_order == "before-cat" else cat + rounds
        return [Warmup("warmup", cfg.init_warmup_epochs if self.user_model else cfg.warmup_epochs, cfg.lr), *middle,
                Finetune("finetune", cfg.finetune_epochs, cfg.finetune_lr)]

    def prune(self, progress: float, round_: int) -> None:
        """Score (FSC or the configured scorer) and prune towards the budgets interpolated at ``progress``."""
        cfg = self.config
        if self.spec.mode == "soft":
            C.harden(self.model)
        lim = fsc.interpolate(self.target.limits, chipfit.usage(chipfit.report(self.model, self.target)), progress)
        neuron, synapse = fisher_ema(self)      # averaged over the rounds so far (docs/method.md)
        if lim.neurons is not None or lim.cores is not None:
            if fsc.prune_neurons(self.model, neuron, lim, self.target):   # a new network: its own scores
                self.fisher_ema = None
                neuron, synapse = fisher_ema(self)
        if cfg.prune_scorer == "magnitude":
            synapse, neuron = fsc.magnitude_scores(self.model), None
        elif cfg.prune_scorer == "random":
            synapse = fsc.random_scores(self.model, np.random.default_rng(epoch_seed(cfg.seed, 10_000 + round_)))
            neuron = None
        for _ in range(REPLACE_ROUNDS):  # pruning changes the packing: re-place until per-core rows hold
            placement = place(self.model.to_network(), self.target, by_neurons=True)
            fsc.prune_synapses(self.model, synapse, lim, neuron, placement)
            fsc.remove_dead_neurons(self.model)
            left = chipfit.binding(self.model, self.target, lim)
            if not any(k in left for k in PER_CORE):
                break
            synapse = {s.name: np.where(s.mask.numpy() > 0, synapse[s.name], -np.inf) for s in self.model.synapses()
                       if s.name in synapse}
        if self.spec.M is not None and self.spec.scope == "core":
            C.regroup(self.model, C.core_groups(self.model, self.target))

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_extra(self) -> dict:
        return {"target": self.target.name, "dataset": self.dataset.name, "steps": self.steps,
                "encoding": self.encoding}

    def restore(self, ck: dict) -> None:
        if ck.get("target") != self.target.name or ck.get("dataset") != self.dataset.name:
            raise TrainingError(f"checkpoint is for target {ck.get('target')!r} and dataset {ck.get('dataset')!r}, "
                                f"not {self.target.name!r} and {self.dataset.name!r}; resume with the same options")
        super().restore(ck)

    # -- the fit -----------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        cfg = self.config
        with deterministic(cfg.threads):
            if resume:
                if self.out is None:
                    raise TrainingError("resume needs an output directory holding a checkpoint")
                ck = load_checkpoint(self.out / CHECKPOINT)
                try:
                    # where it runs is not part of the fit: resume on another device or thread count
                    saved = replace(FitConfig.from_dict(ck["config"]), device=cfg.device, threads=cfg.threads)
                except (TypeError, ValueError, TrainingError) as e:
                    raise TrainingError(f"checkpoint {str(self.out / CHECKPOINT)!r} is corrupt (config: {e}); delete "
                                        "it or run without --resume") from None
                if saved != cfg:  # the checkpoint's config wins: a resumed fit is the same fit
                    self._setup(saved)
                    self.plan = self.stages()
                self.restore(ck)
            else:
                torch.manual_seed(cfg.seed)
            try:
                if self.user_model and "user" not in self.state.accuracy:
                    # the user's own model, as given, on the same test inputs as every stage after it
                    self.state.accuracy["user"] = self.evaluate()
                self.run()
                if not self.world.main:   # rank 0 of a data-parallel fit verifies, deploys and writes
                    distributed.finish(self.world)
                    return None
                result = self._finish()
                distributed.finish(self.world)
                return result
            except KeyboardInterrupt:
                raise FitInterrupted(None if self.out is None else self.out / CHECKPOINT) from None

    def _finish(self) -> FitResult:
        from .fitcheck import verify

        cfg = self.config
        acc = self.state.accuracy
        acc.setdefault("cat", None)
        acc.setdefault("pruned", None)
        C.distinct_levels(self.model)   # codebook rows hold distinct values in the deployed network
        fitted_pred = predict_model(self.model.to(self.device), self.data.x_test)
        self.model.cpu()
        acc["fitted"] = float((fitted_pred == self.data.y_test).mean())
        meta = {"target": self.target.name, "dataset": self.dataset.name, "steps": self.steps,
                "encoding": self.encoding, "seed": cfg.seed, "layout": self.dataset.layout}
        network = self.model.to_network(metadata=meta)
        report = verify(network, self.target)
        agreement = None
        acc["deployed"] = None
        deployed_on = None
        if cfg.deploy:
            from .plugins import get_backend

            x_test = self.data.x_test_flat
            binary = bool(np.isin(x_test, (0.0, 1.0)).all())
            deployed_on = "emulator" if binary else "emulator-float"  # the fixed-point chip path takes spikes
            backend = get_backend(deployed_on)
            if self.target.neuron.chip_model is not None:  # the emulator runs the chip's own neuron
                from .emulator import EmulatorBackend

                chip = EmulatorBackend.for_target(self.target)
                if binary or chip.inputs == "currents":   # truenorth-lif (float64) integrates currents too
                    backend, deployed_on = chip, "emulator"
            spikes = backend.run(network, x_test)
            counts = np.asarray(spikes[self.model.output_population().name]).sum(0)
            deployed_pred = predict(counts)
            acc["deployed"] = float((deployed_pred == self.data.y_test).mean())
            agreement = float((deployed_pred == fitted_pred).mean())
        result = FitResult(self.model, network, report, acc, self.state.history, cfg, self.target.name,
                           self.dataset.name, self.out, agreement, self.state.pruned, deployed_on,
                           self._user_info())
        if self.out is not None:
            self._write(result)
        if not report.ok:
            bad = report.failures[0]
            where = f" at {bad.worst}" if bad.worst else ""
            raise DoesNotFitError(f"the fitted network does not fit target {self.target.name!r}: {bad.name} uses "
                                  f"{bad.usage} of {bad.limit}{where}; see "
                                  f"{self.out / 'report.md' if self.out else 'the report'}", result)
        return result

    def _user_info(self) -> dict | None:
        if not self.user_model:
            return None
        return {"convention": self.convention, "input_shape": list(self.model.input_shape),
                "layout": self.dataset.layout, "encoding": self.encoding,
                "snapped": [{"node": n, "parameter": k, "was": a, "now": b} for n, k, a, b in self.snapped]}

    def _write(self, result: FitResult) -> None:
        from .nir_io import write_nir

        out = self.out
        tmp = out / "model.nir.tmp"
        write_nir(result.network, tmp)
        os.replace(tmp, out / "model.nir")
        data = report_dict(result, self.model, self.target)
        atomic_write_text(json.dumps(data, indent=2, default=json_default) + "\n", out / "report.json")
        atomic_write_text(report_markdown(result, data), out / "report.md")



# -- the public entry point ------------------------------------------------------------------------

def fit(model, data, target, config: FitConfig | None = None, *, out: str | Path | None = None,
        force: bool = False, resume: bool = False, callbacks: list[Callable[[dict], None]] | None = None,
        progress: bool = True, device: str | None = None) -> FitResult:
    """Train ``model`` (an SNN, a Network, or None for the dataset's default) on ``data`` (a dataset
    name or Dataset) until it fits ``target`` (a TargetSpec or a registered name).

    :param out: directory for model.nir, checkpoint.pt, report.json, report.md (None: write nothing).
    :param force: overwrite an existing ``out``; without it an existing directory is an error.
    :param resume: continue from ``out/checkpoint.pt``.
    :raises TrainingError: the target cannot be met, or the fitted network fails verify (row named).
    :param device: where to train (``auto``, ``cpu``, ``cuda``, ``cuda:N``); overrides ``config.device``.
    :raises FitInterrupted: Ctrl-C; the checkpoint in ``out`` is intact.
    :return: the result; None in the other processes of a data-parallel fit (rank 0 returns it).
    """
    if device is not None:
        from .devices import resolve

        resolve(device)   # not visible: DeviceError before anything is read or written
        config = replace(config or FitConfig(), device=str(device))
    main = distributed.env_rank() == 0   # torchrun: rank 0 alone checks and prepares the output folder
    if out is not None and main:
        out = Path(out)
        if resume:
            if not out.is_dir():
                raise TrainingError(f"output directory {str(out)!r} does not exist; nothing to resume")
        elif out.exists() and not force:
            raise TrainingError(f"output directory {str(out)!r} exists; pass --force to overwrite it or --resume "
                                "to continue its fit")
        elif out.exists() and not out.is_dir():
            raise TrainingError(f"output path {str(out)!r} is a file; choose a directory")
    # data, model and target are checked before anything is written
    trainer = Trainer(model, data, target, config, out=out, callbacks=callbacks, progress=progress)
    out = None if out is None else Path(out)
    if out is not None and not resume and main:
        if out.exists():
            for name in (CHECKPOINT, "model.nir", "report.json", "report.md"):
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    return trainer.fit(resume=resume)


__all__ = [  # the fit's API, and the engine's parts it has always exported
    "FitConfig", "FitResult", "FitInterrupted", "Trainer", "fit", "default_model", "resolve_data", "steps_for",
    "check_target", "cat_spec", "load_network", "load_checkpoint", "resume_point_exists", "atomic_save",
    "atomic_write_text", "CHECKPOINT", "DEFAULT_HIDDEN", "DEFAULT_STEPS", "ENCODINGS", "SCORERS", "encode",
    "epoch_seed", "deterministic", "evaluate", "predict_model", "make_optimizer", "set_lr", "stage_lr", "train_epoch",
    "codebooks", "network_usage", "report_dict", "report_markdown",
]
