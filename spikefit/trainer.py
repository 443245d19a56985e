"""The trainer: fit an SNN to a target, driven only by its :class:`~spikefit.spec.TargetSpec`.

Stages (``docs/method.md``)::

    float warm-up -> CAT (codebook per scope group) -> FSC prune rounds (each: score, prune,
    fine-tune) -> fine-tune (CAT kept, hard) -> verify -> emulator (deployed accuracy) -> outputs

``fit(model, data, target, config) -> FitResult``. With ``out`` it writes ``model.nir``,
``checkpoint.pt`` (after every epoch, atomically), ``report.json`` and ``report.md``; Ctrl-C leaves
the last checkpoint and raises :class:`FitInterrupted`; ``resume=True`` continues from it exactly
(every epoch's spikes and order derive from the seed and the epoch number).
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import cat as C
from . import chipfit, fsc
from .datafiles import resolve
from .datasets import Dataset, check_encoding, encode, load_dataset, predict, time_major
from .errors import DatasetError, DoesNotFitError, ModelError, TrainingError
from .network import Network
from .nn import SNN, count_loss
from .placement import place

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
DEFAULT_HIDDEN = {"digits": (128,), "mnist1d": (256,)}  # one hidden layer: accurate, fast on 2 cores
DEFAULT_STEPS = {"digits": 16, "mnist1d": 20}           # rate codes need ~16-20 steps to resolve intensities
REPLACE_ROUNDS = 3       # a pruning round re-places and re-prunes at most this often (per-core rows converge in 1-2)
PER_CORE = ("synapses_per_core", "axons_per_core", "fan_out", "fan_out_cores", "cores")


@dataclass
class FitConfig:
    """How to train. Defaults reach good accuracy on digits in ~15 s on 2 CPU cores."""

    # -- network (used when no model is given) ------------------------------------------------
    hidden: tuple[int, ...] | None = None  # hidden layer sizes; None: per dataset (digits 128, mnist1d 256)
    steps: int | None = None               # time steps T; None: per dataset (digits 16, mnist1d 20; a sequence its own t)
    du: float = 1.0                        # u = this step's input: no current state to round (Lava du=4095)
    dv: float = 0.125                      # 512/4096: a mild leak; exact on 12-bit decays (IF when the chip lacks LIF)
    vth: float = 1.0                       # threshold; weights scale to it
    encoding: str | None = None            # static inputs: "rate" (chips take spikes; fresh every epoch) or "current";
                                           # None: what the model expects (snnTorch/Norse files: current, else rate)
    # -- optimisation -----------------------------------------------------------------------
    batch_size: int = 64                   # small batches: more steps per epoch on a small dataset
    lr: float = 3e-3                       # Adam; float warm-up, CAT and pruning rounds
    prune_lr: float = 1e-3                 # recovery after each pruning round: a restart at lr would shake the codebook
    finetune_lr: float = 1e-3              # last stage: settle on the hard codebook
    logit_scale: float = 8.0               # logits = logit_scale * counts / T (a full-rate neuron = 8 nats)
    # -- stages (epochs) --------------------------------------------------------------------
    warmup_epochs: int = 20                # float accuracy plateaus near 20 epochs on digits
    init_warmup_epochs: int = 0            # a given (trained) model: its float weights start CAT as they are
    cat_epochs: int = 10                   # codebook and weights co-adapt
    prune_rounds: int = 3                  # budgets approached geometrically: gentler than one cut
    prune_epochs: int = 3                  # recovery after each pruning round
    finetune_epochs: int = 5               # hard codebook, lower learning rate
    # -- CAT ------------------------------------------------------------------------------------
    cat_mode: str = "hard"                 # "hard" (STE) or "soft" (annealed DKM); hard measured better, docs/method.md
    tau_start: float = 0.5                 # soft mode: attention temperature (x group weight variance) at CAT start
    tau_end: float = 0.005                 # ... and at CAT end, then hard
    max_weight_bits: int | None = 8        # Lava's mixed-sign 8-bit mantissa: the emulator and Lava run the fit
    # -- FSC -----------------------------------------------------------------------------------
    fisher_samples: int = 1024             # training samples per Fisher estimate (beyond ~1k scores are stable)
    prune_scorer: str = "fsc"              # "fsc" | "magnitude" | "random" (benchmarks)
    # -- data and runtime ------------------------------------------------------------------------
    train_limit: int | None = None         # first N training samples (tests, quick runs)
    test_limit: int | None = None          # first N test samples
    seed: int = 0                          # model init, spikes, order: same seed, same result
    threads: int | None = None             # torch threads; None keeps torch's default
    deploy: bool = True                    # measure deployed accuracy on the fixed-point emulator

    def __post_init__(self):
        if self.hidden is not None:
            self.hidden = tuple(int(h) for h in self.hidden)
        if self.cat_mode not in C.MODES:
            raise TrainingError(f"unknown cat_mode {self.cat_mode!r}; use one of {', '.join(C.MODES)}")
        if self.prune_scorer not in SCORERS:
            raise TrainingError(f"unknown prune_scorer {self.prune_scorer!r}; use one of {', '.join(SCORERS)}")
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise TrainingError(f"unknown encoding {self.encoding!r}; use one of {', '.join(ENCODINGS)}")
        for f in ("warmup_epochs", "init_warmup_epochs", "cat_epochs", "prune_rounds", "prune_epochs",
                  "finetune_epochs"):
            if getattr(self, f) < 0:
                raise TrainingError(f"{f} {getattr(self, f)} must be 0 or more")
        if self.steps is not None and self.steps < 1:
            raise TrainingError(f"steps {self.steps} must be at least 1")

    @classmethod
    def preset(cls, name: str, **overrides) -> "FitConfig":
        """``"full"`` (the defaults) or ``"demo"`` (about a third of the epochs: a digits fit in ~5 s)."""
        presets = {"full": {}, "demo": dict(warmup_epochs=8, cat_epochs=4, prune_rounds=2, prune_epochs=2,
                                            finetune_epochs=3)}
        if name not in presets:
            raise TrainingError(f"unknown preset {name!r}; use one of {', '.join(presets)}")
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


SCORERS = ("fsc", "magnitude", "random")
ENCODINGS = ("rate", "current")
CURRENT_CONVENTIONS = ("snntorch", "norse-1.1")  # libraries whose models take static inputs as currents


@dataclass
class FitResult:
    """What a fit produced."""

    model: SNN                             # the trained torch model
    network: Network                       # its exact Network description (what model.nir holds)
    report: object                         # spikefit.fitcheck.FitReport of network against the target
    accuracy: dict[str, float]             # float, cat, pruned, fitted (torch) and deployed (emulator)
    history: list[dict]                    # one entry per stage: epochs, loss, accuracy, seconds
    config: FitConfig
    target: str
    dataset: str
    out: Path | None = None                # output directory (None: nothing written)
    agreement: float | None = None         # emulator prediction == torch prediction, fraction of test samples
    pruning: dict = field(default_factory=dict)  # per pruning stage: budgets that bound, usage after it
    deployed_on: str | None = None         # backend of the deployed accuracy (emulator-float for current inputs)
    user: dict | None = None               # a given model: its NIR convention, decays rounded to 1/4096, encoding

    def to_dict(self) -> dict:
        return {"target": self.target, "dataset": self.dataset, "accuracy": self.accuracy,
                "agreement": self.agreement, "deployed_on": self.deployed_on, "user_model": self.user,
                "ok": bool(self.report.ok),
                "history": self.history,
                "config": self.config.to_dict(), "out": None if self.out is None else str(self.out)}


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during a fit: the last checkpoint (``path``) is intact; ``resume=True`` continues."""

    def __init__(self, path: Path | None):
        super().__init__(str(path))
        self.path = path


# -- small helpers ----------------------------------------------------------------------------------

def default_model(dataset: Dataset, config: FitConfig, target=None) -> SNN:
    """The per-dataset default architecture (IF neurons when the target runs no leaky model)."""
    hidden = list(config.hidden or DEFAULT_HIDDEN.get(dataset.name, (128,)))
    dv = config.dv
    if target is not None and not target.neuron.runs("lif"):
        dv = 0.0
    return SNN.mlp(dataset.n_inputs, hidden, dataset.n_classes, du=config.du, dv=dv, vth=config.vth,
                   seed=config.seed)


def resolve_data(data) -> Dataset:
    """A Dataset from a name, an .npz / HDF5 path, a Dataset or a (train, test) pair of torch datasets."""
    return resolve(data)


def steps_for(dataset: Dataset, config: FitConfig) -> int:
    """Time steps: the config's, else a sequence's own length, else the per-dataset default."""
    if config.steps is not None:
        if dataset.steps is not None and config.steps > dataset.steps:
            raise DatasetError(f"steps {config.steps} exceed the {dataset.steps} time steps of x_train "
                               f"{tuple(dataset.x_train.shape)}; pass --steps {dataset.steps} or fewer")
        return int(config.steps)
    return int(dataset.steps or DEFAULT_STEPS.get(dataset.name, 16))


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct spike/shuffle stream for every (seed, global epoch)."""
    return (seed * 1_000_003 + 7919 * (epoch + 1)) % (2 ** 31 - 1)


@contextmanager
def deterministic(threads: int | None):
    """A fixed torch thread count for the duration of a fit. The CPU kernels used here (linear,
    conv2d, element-wise, gather, argmin, softmax, Adam) are deterministic for a given thread count;
    ``torch.use_deterministic_algorithms`` changes only CUDA and scatter-style kernels and costs
    seconds of imports, so it is not used. Every random draw uses an explicit seeded generator."""
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)


def make_optimizer(model: SNN, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def stage_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine decay over a stage, per epoch: ``base`` at its first epoch, towards 0 at its end. A
    quantized network's accuracy jumps from epoch to epoch at a constant rate; the decay settles it."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def train_epoch(model: SNN, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, batch_size: int,
                logit_scale: float, gen: torch.Generator, on_step: Callable[[], None] | None = None,
                timer: list | None = None) -> float:
    """One epoch over spikes x (t, N, n) in the order ``gen`` draws; returns the mean loss. Masks are
    re-applied after every step so pruned weights stay exactly zero."""
    model.train()
    perm = torch.randperm(x.shape[1], generator=gen)
    total, seen = 0.0, 0
    for i in range(0, len(perm), batch_size):
        idx = perm[i:i + batch_size]
        t0 = time.perf_counter()
        out = model(x[:, idx])                                       # (t, b, n_out)
        loss = count_loss(out, y[idx], logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.apply_masks()
        if timer is not None:
            timer.append(time.perf_counter() - t0)
        if on_step is not None:
            on_step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / max(seen, 1)


@torch.no_grad()
def predict_model(model: SNN, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Predicted classes (argmax of output spike counts, ties to the lowest index)."""
    model.eval()
    preds = [predict(model(x[:, i:i + batch_size]).sum(0).numpy()) for i in range(0, x.shape[1], batch_size)]
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def evaluate(model: SNN, x: torch.Tensor, y: np.ndarray) -> float:
    return float((predict_model(model, x) == np.asarray(y)).mean())


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: never a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`fit`; a missing or corrupt file raises TrainingError."""
    path = Path(path)
    if not path.exists():
        raise TrainingError(f"no checkpoint at {str(path)!r} to resume from; run without --resume")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated, not a torch file, ...
        raise TrainingError(f"checkpoint {str(path)!r} is corrupt ({type(e).__name__}); delete it or run "
                            "without --resume") from None
    if not isinstance(ck, dict) or ck.get("version") != CHECKPOINT_VERSION or "arch" not in ck:
        raise TrainingError(f"checkpoint {str(path)!r} is corrupt (not a spikefit checkpoint); delete it or run "
                            "without --resume")
    return ck


def load_network(path) -> Network:
    """The network held by a checkpoint of :func:`fit` (as it was when saved, e.g. mid-fit), with the
    metadata ``model.nir`` carries (target, dataset, steps, encoding, seed).

    :raises ModelError: a missing or corrupt checkpoint.
    """
    try:
        ck = load_checkpoint(path)
    except TrainingError as e:
        raise ModelError(str(e).replace("; delete it or run without --resume", "; use the model.nir of its fit "
                                        "or fit again")) from None
    try:
        model = SNN.from_arch(ck["arch"])
        _share_codebooks(model, ck["arch"])
        model.load_state_dict(ck["model"])
        config = FitConfig.from_dict(ck["config"])
        steps = ck["steps"] if "steps" in ck else steps_for(load_dataset(ck["dataset"]), config)
        encoding = ck.get("encoding", config.encoding or "rate")
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise ModelError(f"checkpoint {str(path)!r} is corrupt ({type(e).__name__}); use the model.nir of its fit "
                         "or fit again") from None
    meta = {"target": ck["target"], "dataset": ck["dataset"], "steps": steps, "encoding": encoding,
            "seed": config.seed}
    return model.to_network(metadata=meta)


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


def cat_spec(target, config: FitConfig) -> C.CatSpec:
    lim = target.limits
    bits = lim.weight_bits
    if config.max_weight_bits is not None:
        bits = config.max_weight_bits if bits is None else min(bits, config.max_weight_bits)
    M = lim.unique_weights
    grid = C.weight_grid(bits)
    if M is not None and grid is not None:
        M = min(M, grid[1] - grid[0])  # a coarser deploy grid caps M (e.g. 255 values at 8 bits)
    return C.CatSpec(M, lim.unique_weights_scope, bits, lim.weight_scaling, config.cat_mode)


# -- the trainer ------------------------------------------------------------------------------------

class Trainer:
    """``Trainer(model, data, target, config, out=...).fit(resume=False)``; see :func:`fit`."""

    def __init__(self, model, data, target, config: FitConfig | None = None, out: str | Path | None = None,
                 callbacks: list[Callable[[dict], None]] | None = None, progress: bool = True):
        from .plugins import get_target

        self.config = config or FitConfig()
        self.target = get_target(target) if isinstance(target, str) else target
        self.data = resolve_data(data)
        self.out = None if out is None else Path(out)
        self.callbacks = list(callbacks or [])
        self.progress = progress
        self.user_model = model is not None        # a given model: fine-tuned from its own weights
        self.convention = None                     # the NIR convention it was read with (snntorch, norse-1.1, ...)
        self.model = self._model(model)            # conforms the data's layout to the model's input
        self.snapped = list(getattr(self.model, "snapped", []))
        self.steps = steps_for(self.data, self.config)
        self.encoding = self._encoding()
        check_target(self.target, self.data, self.config)
        chipfit.check_feasible(self.model, self.target)   # seconds, before any epoch
        self.spec = cat_spec(self.target, self.config)
        self._load_data()
        self.state = {"stage": 0, "epoch": 0, "entered": False, "stage_epochs": None, "global_epoch": 0,
                      "history": [], "accuracy": {}, "pruned": {}}
        self.opt: torch.optim.Optimizer | None = None

    def _model(self, model) -> SNN:
        if model is None:
            return default_model(self.data, self.config, self.target)
        if isinstance(model, Network):
            self.convention = (model.metadata.get("nir_convention") or {}).get("name")
            model = SNN.from_network(model, snap=True)  # decays to the chips' 1/4096 steps (listed in the report)
        if not isinstance(model, SNN):
            raise ModelError(f"model must be a spikefit SNN, a Network or None, got {type(model).__name__}")
        self.data = self.data.conform(model.input_shape, model.input_name)
        out = model.output_population()
        self.data.check_labels(out.size, what=f"the model output {out.name!r} has {out.size} neurons")
        for s in model.synapses():  # CAT re-clusters from the float weights (pruned zeros stay)
            s.quant = None
        return model

    def _encoding(self) -> str:
        """The config's encoding, else what the model expects: currents for snnTorch and Norse models."""
        enc = self.config.encoding or ("current" if self.convention in CURRENT_CONVENTIONS else "rate")
        check_encoding(self.data, enc)
        return enc

    def _split(self, split: str, seed: int, limit: int | None) -> torch.Tensor:
        """Inputs (t, b, *shape) of a split: static values encoded with ``seed``, sequences as given."""
        if self.data.layout == "sequence" and split == "train" and limit == self.config.train_limit:
            if self._train_frames is None:  # frames do not change between epochs: build them once
                self._train_frames = torch.as_tensor(time_major(self.data, "train", self.steps, limit=limit)[0])
            return self._train_frames
        return torch.as_tensor(time_major(self.data, split, self.steps, self.encoding, seed, limit)[0])

    def _load_data(self) -> None:
        cfg, ds = self.config, self.data
        self._train_frames = None
        self.y_train = torch.as_tensor(ds.y_train[:cfg.train_limit])
        self.y_test = ds.y_test[:cfg.test_limit]
        # The test split's fixed spikes (datasets.encoded_split's stream): torch and emulator see the same.
        self.x_test_t = self._split("test", cfg.seed * 2 + 1, cfg.test_limit)
        self.x_test = self.x_test_t.numpy().reshape(self.x_test_t.shape[0], self.x_test_t.shape[1], -1)
        fisher_n = min(cfg.fisher_samples, len(self.y_train))
        self.x_fisher = self._split("train", epoch_seed(cfg.seed, -2), fisher_n)
        self.y_fisher = self.y_train[:fisher_n]

    # -- stages --------------------------------------------------------------------------------
    def stages(self) -> list[tuple[str, int, float]]:
        cfg = self.config
        plan = [("warmup", cfg.init_warmup_epochs if self.user_model else cfg.warmup_epochs, cfg.lr)]
        if self.spec.active:
            plan.append(("cat", cfg.cat_epochs, cfg.lr))
        plan += [(f"prune{r}", cfg.prune_epochs, cfg.prune_lr) for r in range(1, cfg.prune_rounds + 1)]
        plan.append(("finetune", cfg.finetune_epochs, cfg.finetune_lr))
        return plan

    def _enter(self, name: str, epochs: int) -> int:
        """The stage's entry action; returns how many epochs it trains."""
        cfg = self.config
        if name == "cat":
            core = self.spec.M is not None and self.spec.scope == "core"
            C.attach_cat(self.model, self.spec, C.core_groups(self.model, self.target) if core else None)
        elif name.startswith("prune"):
            r = int(name[5:])
            binding = chipfit.binding(self.model, self.target)
            if not binding:
                return 0
            self._prune(r / cfg.prune_rounds, r)
            self.state["pruned"][name] = {"binding": binding, **chipfit.usage(chipfit.report(self.model, self.target))}
        elif name == "finetune":
            C.harden(self.model)
            if chipfit.binding(self.model, self.target):  # no rounds configured: prune once, here
                self._prune(1.0, cfg.prune_rounds + 1)
                self.state["pruned"]["finetune"] = chipfit.usage(chipfit.report(self.model, self.target))
                self.state["accuracy"]["pruned"] = evaluate(self.model, self.x_test_t, self.y_test)
        return epochs

    def _prune(self, progress: float, round_: int) -> None:
        cfg = self.config
        if self.config.cat_mode == "soft":
            C.harden(self.model)
        lim = fsc.interpolate(self.target.limits, chipfit.usage(chipfit.report(self.model, self.target)), progress)
        neuron, synapse = fsc.fisher_scores(self.model, self.x_fisher, self.y_fisher,
                                            cfg.logit_scale / self.steps)
        if lim.neurons is not None or lim.cores is not None:
            if fsc.prune_neurons(self.model, neuron, lim, self.target):
                neuron, synapse = fsc.fisher_scores(self.model, self.x_fisher, self.y_fisher,
                                                    cfg.logit_scale / self.steps)
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

    def _exit(self, name: str) -> None:
        acc = self.state["accuracy"]
        if name == "warmup":
            acc["float"] = evaluate(self.model, self.x_test_t, self.y_test)
        elif name == "cat":
            C.harden(self.model)
            acc["cat"] = evaluate(self.model, self.x_test_t, self.y_test)
        elif name in self.state["pruned"]:
            acc["pruned"] = evaluate(self.model, self.x_test_t, self.y_test)

    def _run_epoch(self, name: str, epoch: int, epochs: int, lr: float) -> float:
        cfg = self.config
        ge = self.state["global_epoch"]
        set_lr(self.opt, stage_lr(lr, epoch, epochs))
        x = self._split("train", epoch_seed(cfg.seed, ge), cfg.train_limit)
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, ge))
        on_step = None
        if name == "cat" and cfg.cat_mode == "soft":
            per = math.ceil(x.shape[1] / cfg.batch_size)
            count = [epoch * per]

            def on_step():
                count[0] += 1
                C.set_tau(self.model, C.anneal_tau(count[0] / max(epochs * per, 1), cfg.tau_start, cfg.tau_end))

            C.set_tau(self.model, C.anneal_tau(count[0] / max(epochs * per, 1), cfg.tau_start, cfg.tau_end))
        return train_epoch(self.model, x, self.y_train, self.opt, cfg.batch_size, cfg.logit_scale / self.steps,
                           gen, on_step)

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {"version": CHECKPOINT_VERSION, "config": self.config.to_dict(), "target": self.target.name,
                "dataset": self.data.name, "steps": self.steps, "encoding": self.encoding, "arch": self.model.arch(), "model": self.model.state_dict(),
                "optimizer": None if self.opt is None else self.opt.state_dict(), "state": self.state,
                "torch_rng": torch.get_rng_state()}

    def save(self) -> None:
        if self.out is not None:
            atomic_save(self.checkpoint(), self.out / CHECKPOINT)

    def restore(self, ck: dict) -> None:
        if ck.get("target") != self.target.name or ck.get("dataset") != self.data.name:
            raise TrainingError(f"checkpoint is for target {ck.get('target')!r} and dataset {ck.get('dataset')!r}, "
                                f"not {self.target.name!r} and {self.data.name!r}; resume with the same options")
        try:
            self.model = SNN.from_arch(ck["arch"])
            _share_codebooks(self.model, ck["arch"])
            self.model.load_state_dict(ck["model"])
            self.state = ck["state"]
            stages = self.stages()
            lr = stages[min(self.state["stage"], len(stages) - 1)][2]
            self.opt = make_optimizer(self.model, lr)
            if ck["optimizer"] is not None:
                self.opt.load_state_dict(ck["optimizer"])
            torch.set_rng_state(ck["torch_rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise TrainingError(f"checkpoint {str(self.out / CHECKPOINT)!r} is corrupt ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:120]}); delete it or run without --resume") from None

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        cfg = self.config
        with deterministic(cfg.threads):
            if resume:
                if self.out is None:
                    raise TrainingError("resume needs an output directory holding a checkpoint")
                ck = load_checkpoint(self.out / CHECKPOINT)
                saved = FitConfig.from_dict(ck["config"])
                if saved != cfg:
                    self.config = cfg = saved  # the checkpoint's config wins: a resumed fit is the same fit
                    self.steps = steps_for(self.data, cfg)
                    self.encoding = self._encoding()
                    self.spec = cat_spec(self.target, cfg)
                    self._load_data()
                self.restore(ck)
            else:
                torch.manual_seed(cfg.seed)
            try:
                self._loop()
                return self._finish()
            except KeyboardInterrupt:
                raise FitInterrupted(None if self.out is None else self.out / CHECKPOINT) from None

    def _loop(self) -> None:
        from tqdm import tqdm

        plan = self.stages()
        st = self.state
        if self.user_model and "user" not in self.state["accuracy"]:
            # the user's own model, as given, on the same test inputs as every stage after it
            self.state["accuracy"]["user"] = evaluate(self.model, self.x_test_t, self.y_test)
        if self.out is not None and not resume_point_exists(self.out):
            self.save()  # a resumable point exists before the first epoch ends
        while st["stage"] < len(plan):
            name, epochs, lr = plan[st["stage"]]
            if not st["entered"]:
                st["stage_epochs"] = self._enter(name, epochs)
                st["entered"] = True
                st["epoch"] = 0
                self.opt = make_optimizer(self.model, lr)
                st["history"].append({"stage": name, "epochs": st["stage_epochs"], "loss": None, "seconds": 0.0})
                self.save()
            total = st["stage_epochs"]
            bar = tqdm(total=total, initial=st["epoch"], desc=f"{self.target.name}:{name}", file=sys.stderr,
                       disable=not self.progress, leave=False, unit="epoch")
            while st["epoch"] < total:
                t0 = time.perf_counter()
                loss = self._run_epoch(name, st["epoch"], total, lr)
                st["epoch"] += 1
                st["global_epoch"] += 1
                st["history"][-1]["loss"] = loss
                st["history"][-1]["seconds"] += time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                self.save()
                for cb in self.callbacks:
                    cb({"stage": name, "epoch": st["epoch"], "epochs": total, "loss": loss, "model": self.model})
            bar.close()
            self._exit(name)
            st["history"][-1]["accuracy"] = evaluate(self.model, self.x_test_t, self.y_test)
            st["stage"] += 1
            st["entered"] = False
            self.save()

    def _finish(self) -> FitResult:
        from .fitcheck import verify

        cfg = self.config
        acc = self.state["accuracy"]
        acc.setdefault("cat", None)
        acc.setdefault("pruned", None)
        C.distinct_levels(self.model)   # codebook rows hold distinct values in the deployed network
        fitted_pred = predict_model(self.model, self.x_test_t)
        acc["fitted"] = float((fitted_pred == self.y_test).mean())
        meta = {"target": self.target.name, "dataset": self.data.name, "steps": self.steps,
                "encoding": self.encoding, "seed": cfg.seed, "layout": self.data.layout}
        network = self.model.to_network(metadata=meta)
        report = verify(network, self.target)
        agreement = None
        acc["deployed"] = None
        deployed_on = None
        if cfg.deploy:
            from .plugins import get_backend

            binary = bool(np.isin(self.x_test, (0.0, 1.0)).all())
            deployed_on = "emulator" if binary else "emulator-float"  # the fixed-point chip path takes spikes
            spikes = get_backend(deployed_on).run(network, self.x_test)
            counts = np.asarray(spikes[self.model.output_population().name]).sum(0)
            deployed_pred = predict(counts)
            acc["deployed"] = float((deployed_pred == self.y_test).mean())
            agreement = float((deployed_pred == fitted_pred).mean())
        result = FitResult(self.model, network, report, acc, self.state["history"], cfg, self.target.name,
                           self.data.name, self.out, agreement, self.state["pruned"], deployed_on,
                           self._user_info())
        if self.out is not None:
            self._write(result)
        if not report.ok:
            bad = report.failures[0]
            where = f" at {bad.worst}" if bad.worst else ""
            raise DoesNotFitError(f"the fitted network does not fit target {self.target.name!r}: {bad.name} uses "
                                f"{bad.usage} of {bad.limit}{where}; see {self.out / 'report.md' if self.out else 'the report'}")
        return result

    def _user_info(self) -> dict | None:
        if not self.user_model:
            return None
        return {"convention": self.convention, "input_shape": list(self.model.input_shape),
                "layout": self.data.layout, "encoding": self.encoding,
                "snapped": [{"node": n, "parameter": k, "was": a, "now": b} for n, k, a, b in self.snapped]}

    def _write(self, result: FitResult) -> None:
        from .nir_io import write_nir

        out = self.out
        tmp = out / "model.nir.tmp"
        write_nir(result.network, tmp)
        os.replace(tmp, out / "model.nir")
        data = report_dict(result, self.model)
        atomic_write_text(json.dumps(data, indent=2, default=_json_default) + "\n", out / "report.json")
        atomic_write_text(report_markdown(result, data), out / "report.md")


def resume_point_exists(out: Path) -> bool:
    return (Path(out) / CHECKPOINT).exists()


def _share_codebooks(model: SNN, arch: dict) -> None:
    """Chip-scope codebooks are one module shared by every connection: rebuild the sharing."""
    shared = {}
    for s in model.synapses():
        q = s.quant
        sid = getattr(q, "shared_id", None)
        if sid:
            if sid in shared:
                q.codebook = shared[sid]
            else:
                shared[sid] = q.codebook


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# -- reports ---------------------------------------------------------------------------------------

def codebooks(model: SNN) -> dict[str, dict]:
    """Per connection: scale, scope and the integer codebook rows (or the uniform grid)."""
    out = {}
    for s in model.synapses():
        q = s.quant
        if q is None:
            continue
        ints, quant = q.export(s.weight.detach())
        entry = {"scale": quant.scale, "weight_bits": quant.weight_bits, "scope": quant.scope}
        if quant.codebook is not None:
            rows = np.rint(quant.codebook / quant.scale).astype(int)
            entry["groups"] = int(rows.shape[0])
            entry["codebook"] = rows.tolist()
        else:
            used = np.where(s.mask.numpy() > 0, ints, 0)
            entry["grid"] = [int(used.min()), int(used.max())]
        out[s.name] = entry
    return out


def network_usage(network: Network) -> dict:
    """Neurons and existing (non-zero) synapses of the exported network, and its weight sparsity."""
    nnz = total = 0
    for c in network.connections():
        w = c.weight
        n = w.nnz if hasattr(w, "nnz") else int(np.count_nonzero(w))
        nnz += n
        total += int(np.prod(w.shape))
    return {"neurons": sum(p.size for p in network.populations()), "weights_nonzero": nnz,
            "weights_total": total, "sparsity": 1.0 - nnz / max(total, 1)}


def report_dict(result: FitResult, model: SNN) -> dict:
    return {"target": result.target, "dataset": result.dataset, "ok": bool(result.report.ok),
            "accuracy": result.accuracy, "agreement": result.agreement, "deployed_on": result.deployed_on,
            "user_model": result.user,
            "usage": {**chipfit.usage(result.report), **network_usage(result.network)},
            "pruning": result.pruning,
            "stages": result.history, "codebooks": codebooks(model),
            "fit": result.report.to_dict(), "config": result.config.to_dict()}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def report_markdown(result: FitResult, data: dict) -> str:
    acc = result.accuracy
    user = acc.get("user")

    def row(label: str, value, empty: str = "-") -> str:
        shown = _pct(value) if value is not None else empty
        if user is None:
            return f"| {label} | {shown} |"
        delta = "-" if value is None else f"{100 * (value - user):+.2f} pp"
        return f"| {label} | {shown} | {delta} |"

    deployed = {"emulator": "fixed-point emulator", "emulator-float": "float emulator: current inputs"}
    head = ["| stage | test accuracy |", "|---|---|"]
    if user is not None:
        head = ["| stage | test accuracy | vs the user's model |", "|---|---|---|", row("user model (as given, before fitting)", user)]
    lines = [f"# Fit of `{result.dataset}` to `{result.target}`", "",
             f"Verdict: **{'fits' if result.report.ok else 'does not fit'}**", "", *head,
             row("float (after warm-up)", acc.get("float")),
             row("CAT (quantized, hard)", acc.get("cat")),
             row("FSC pruned", acc.get("pruned"), "- (no budget binds)"),
             row("fitted (torch)", acc.get("fitted")),
             row(f"deployed ({deployed.get(result.deployed_on, 'fixed-point emulator')})", acc.get("deployed")), ""]
    if result.agreement is not None:
        lines += [f"Emulator and torch predictions agree on {_pct(result.agreement)} of the test samples.", ""]
    if result.user is not None:
        u = result.user
        inputs = "frames as given" if u["layout"] == "sequence" else f"static inputs as {u['encoding']}"
        lines += [f"The given model ({u['convention'] or 'spikefit'} convention, input {tuple(u['input_shape'])}, "
                  f"{inputs}) was fine-tuned from its own weights.", ""]
        lines += [f"- `{d['node']}`: {d['parameter']} {d['was']:.6g} rounded to {d['now']:.6g} (a multiple of 1/4096, "
                  "the chips' 12-bit decays)" for d in u["snapped"]]
        lines += [""] if u["snapped"] else []
    use = data["usage"]
    lines += [f"Neurons {use['neurons']}; non-zero weights {use['weights_nonzero']} of {use['weights_total']} "
              f"({100 * use['sparsity']:.1f} % zero: pruned or absent).", "",
              "## Constraints", "", "```", result.report.table(), "```", "", "## Codebooks", ""]
    for name, cb in data["codebooks"].items():
        if "codebook" in cb:
            rows = cb["codebook"]
            shown = "; ".join(str(r) for r in rows[:4]) + (f"; ... ({len(rows)} groups)" if len(rows) > 4 else "")
            lines.append(f"- `{name}`: scope {cb['scope']}, scale {cb['scale']:.6g}, {cb['weight_bits']}-bit "
                         f"integers: {shown}")
        else:
            lines.append(f"- `{name}`: uniform {cb['weight_bits']}-bit grid, scale {cb['scale']:.6g}, "
                         f"integers in {cb['grid']}")
    lines += ["", "## Stages", "", "| stage | epochs | final loss | test accuracy | seconds |", "|---|---|---|---|---|"]
    for h in result.history:
        loss = "-" if h.get("loss") is None else f"{h['loss']:.3f}"
        lines.append(f"| {h['stage']} | {h['epochs']} | {loss} | {_pct(h.get('accuracy'))} | {h['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


# -- the public entry point ------------------------------------------------------------------------

def fit(model, data, target, config: FitConfig | None = None, *, out: str | Path | None = None,
        force: bool = False, resume: bool = False, callbacks: list[Callable[[dict], None]] | None = None,
        progress: bool = True) -> FitResult:
    """Train ``model`` (an SNN, a Network, or None for the dataset's default) on ``data`` (a dataset
    name or Dataset) until it fits ``target`` (a TargetSpec or a registered name).

    :param out: directory for model.nir, checkpoint.pt, report.json, report.md (None: write nothing).
    :param force: overwrite an existing ``out``; without it an existing directory is an error.
    :param resume: continue from ``out/checkpoint.pt``.
    :raises TrainingError: the target cannot be met, or the fitted network fails verify (row named).
    :raises FitInterrupted: Ctrl-C; the checkpoint in ``out`` is intact.
    """
    if out is not None:
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
    if out is not None and not resume:
        if out.exists():
            for name in (CHECKPOINT, "model.nir", "report.json", "report.md"):
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    return trainer.fit(resume=resume)
