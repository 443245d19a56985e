"""The training engine: runs a plan of :class:`~spikefit.training.stages.Stage` objects over a model.

Every plan goes through the same loop: a stage's entry action (quantize, prune), then its epochs
(a fresh Adam, cosine-decayed learning rate, each epoch's spikes and order seeded by the global
epoch number), then its exit action (harden, measure), with a checkpoint after every epoch and
every stage. ``spikefit fit`` (:mod:`spikefit.trainer`) and the compression benchmark
(:func:`spikefit.baselines.run_method`) are two plans on it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import cat as C
from .. import devices
from ..datasets import Dataset, time_major
from ..errors import TrainingError
from ..nn import SNN
from .checkpoint import CHECKPOINT, CHECKPOINT_VERSION, atomic_save, resume_point_exists, share_codebooks
from . import distributed
from .config import FitConfig
from .loop import epoch_seed, evaluate, make_optimizer, set_lr, stage_lr, train_epoch
from .state import TrainState


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during a fit: the last checkpoint (``path``) is intact; ``resume=True`` continues."""

    def __init__(self, path: Path | None):
        super().__init__(str(path))
        self.path = path


@dataclass
class TrainData:
    """The tensors a plan trains and measures on, built once from a dataset split by
    :func:`spikefit.datasets.time_major`: static inputs are re-encoded every epoch, frames kept."""

    dataset: Dataset
    steps: int
    encoding: str
    y_train: torch.Tensor            # (n,)
    x_test: torch.Tensor             # (t, b, *shape): the test split's fixed spikes (seed * 2 + 1)
    y_test: np.ndarray               # (b,)
    x_fisher: torch.Tensor           # (t, f, *shape): the first fisher_samples training samples
    y_fisher: torch.Tensor
    train_limit: int | None = None
    _frames: torch.Tensor | None = None

    @classmethod
    def build(cls, ds: Dataset, steps: int, encoding: str, config: FitConfig) -> "TrainData":
        y_train = torch.as_tensor(ds.y_train[:config.train_limit])
        fisher_n = min(config.fisher_samples, len(y_train))
        x_test, y_test = time_major(ds, "test", steps, encoding, config.seed * 2 + 1, config.test_limit)
        x_fisher = time_major(ds, "train", steps, encoding, epoch_seed(config.seed, -2), fisher_n)[0]
        return cls(ds, steps, encoding, y_train, torch.as_tensor(x_test), y_test, torch.as_tensor(x_fisher),
                   y_train[:fisher_n], config.train_limit)

    def train(self, seed: int, device: torch.device | None = None) -> torch.Tensor:
        """Training inputs (t, n, *shape) of one epoch (``seed``: the epoch's stream), on ``device``
        when they take less than a quarter of its free memory (else on the host, moved per batch)."""
        if self.dataset.layout == "sequence":
            if self._frames is None:  # frames do not change between epochs: build them once
                self._frames = _onto(torch.as_tensor(time_major(self.dataset, "train", self.steps,
                                                                limit=self.train_limit)[0]), device)
            return self._frames
        return _onto(torch.as_tensor(time_major(self.dataset, "train", self.steps, self.encoding, seed,
                                                self.train_limit)[0]), device)

    @property
    def x_test_flat(self) -> np.ndarray:
        """The test inputs as backends take them: (t, b, n)."""
        return self.x_test.numpy().reshape(self.x_test.shape[0], self.x_test.shape[1], -1)


class Engine:
    """``Engine(model, data, plan, config, out=...).run()``: the loop every plan shares."""

    label = "train"                 # progress-bar prefix

    def __init__(self, model: SNN, data: TrainData, plan: list, config: FitConfig, out: Path | None = None,
                 callbacks: list[Callable[[dict], None]] | None = None, progress: bool = False,
                 stage_accuracy: bool = True):
        self.model, self.data, self.plan, self.config = model, data, list(plan), config
        self.out = None if out is None else Path(out)
        self.callbacks = list(callbacks or [])
        self.progress = progress
        self.stage_accuracy = stage_accuracy   # measure test accuracy after every stage (history)
        self.state = TrainState()
        self.opt: torch.optim.Optimizer | None = None
        self.timers: dict[str, list[float]] = {}  # stage name -> wall time of each training step (not saved)
        self.fisher_ema = None   # FSC scores averaged over training (spikefit.training.stages.fisher_ema)
        self.device = devices.resolve(config.device)
        self.world = distributed.init(self.device)   # one process, or this one of torchrun's
        self.progress = progress and self.world.main
        self.step_model: torch.nn.Module | None = None  # what a step calls: the model, or DDP over it

    @property
    def logit_scale(self) -> float:
        """logits = logit_scale * counts / T: a full-rate neuron is worth ``config.logit_scale`` nats."""
        return self.config.logit_scale / self.data.steps

    def evaluate(self) -> float:
        """Test accuracy, computed on the training device (the model returns where it was)."""
        home = next(self.model.parameters()).device
        try:
            return evaluate(self.model.to(self.device), self.data.x_test, self.data.y_test)
        finally:
            self.model.to(home)

    def on_host(self, action: Callable[[], object]):
        """Run a stage action (quantize, prune, harden: numpy bookkeeping) with the model on the CPU,
        then give every process rank 0's network and put it back on the training device."""
        self.model.cpu()
        try:
            return action()
        finally:
            self.model = distributed.sync_model(self.model, self.world)
            self.model.to(self.device)

    def begin_stage(self, lr: float) -> None:
        """A fresh optimizer (and DDP wrapper: a stage may have changed the network) for a stage."""
        self.model.to(self.device)
        self.opt = make_optimizer(self.model, lr)
        self.step_model = distributed.wrap(self.model, self.world, self.device)

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        from tqdm import tqdm

        st = self.state
        if self.out is not None and not resume_point_exists(self.out):
            self.save()  # a resumable point exists before the first epoch ends
        self.model.to(self.device)
        if self.opt is not None and self.step_model is None:  # resumed mid-stage
            self.step_model = distributed.wrap(self.model, self.world, self.device)
        while st.stage < len(self.plan):
            stage = self.plan[st.stage]
            if not st.entered:
                st.stage_epochs = self.on_host(lambda: stage.enter(self))
                st.entered = True
                st.epoch = 0
                self.begin_stage(stage.lr)
                st.history.append({"stage": stage.name, "epochs": st.stage_epochs, "loss": None, "seconds": 0.0})
                self.save()
            total = st.stage_epochs
            bar = tqdm(total=total, initial=st.epoch, desc=f"{self.label}:{stage.name}", file=sys.stderr,
                       disable=not self.progress, leave=False, unit="epoch")
            while st.epoch < total:
                t0 = time.perf_counter()
                loss = self.run_epoch(stage, st.epoch, total)
                st.epoch += 1
                st.global_epoch += 1
                st.history[-1]["loss"] = loss
                st.history[-1]["seconds"] += time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                self.save()
                for cb in self.callbacks:
                    cb({"stage": stage.name, "epoch": st.epoch, "epochs": total, "loss": loss, "model": self.model})
            bar.close()
            self.on_host(lambda: stage.exit(self))
            self.step_model = None
            if self.stage_accuracy:
                st.history[-1]["accuracy"] = self.evaluate()
            st.stage += 1
            st.entered = False
            self.save()
        self.model.cpu()   # export, verify and the emulator read the weights on the host
        self.step_model = None

    def run_epoch(self, stage, epoch: int, epochs: int) -> float:
        cfg = self.config
        seed = epoch_seed(cfg.seed, self.state.global_epoch)
        set_lr(self.opt, stage_lr(stage.lr, epoch, epochs))
        x = self.data.train(seed, self.device)
        gen = torch.Generator().manual_seed(seed)
        on_step = stage.on_step(self, epoch, epochs, x.shape[1])
        timer = self.timers.setdefault(stage.name, [])
        return train_epoch(self.model, x, self.data.y_train, self.opt, cfg.batch_size, self.logit_scale, gen,
                           on_step, timer, self.step_model, self.world, cfg.precision)

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_extra(self) -> dict:
        """What a plan adds to the checkpoint (the fit: target, dataset, steps, encoding)."""
        return {}

    def checkpoint(self) -> dict:
        return {"version": CHECKPOINT_VERSION, "config": self.config.to_dict(), **self.checkpoint_extra(),
                "arch": self.model.arch(), "model": _to_host(self.model.state_dict()),
                "optimizer": None if self.opt is None else _to_host(self.opt.state_dict()),
                "state": self.state.to_dict(), "torch_rng": torch.get_rng_state(),
                "fisher_ema": None if self.fisher_ema is None else
                [{k: torch.from_numpy(np.asarray(v)) for k, v in d.items()} for d in self.fisher_ema]}

    def save(self) -> None:
        """Write the checkpoint (rank 0 of a data-parallel fit only: one file, any process count resumes it)."""
        if self.out is not None and self.world.main:
            atomic_save(self.checkpoint(), self.out / CHECKPOINT)

    def restore(self, ck: dict) -> None:
        """Continue from a checkpoint of the same plan: model, state, optimizer and torch's RNG."""
        try:
            self.model = SNN.from_arch(ck["arch"])
            share_codebooks(self.model, ck["arch"])
            self.model.load_state_dict(ck["model"])
            self.state = TrainState.from_dict(dict(ck["state"]))
            stage = self.plan[min(self.state.stage, len(self.plan) - 1)]
            self.model.to(self.device)   # Adam's state follows its parameters' device on load
            self.opt = make_optimizer(self.model, stage.lr)
            if ck["optimizer"] is not None:
                self.opt.load_state_dict(ck["optimizer"])
            ema = ck.get("fisher_ema")
            self.fisher_ema = None if ema is None else tuple({k: v.numpy() for k, v in d.items()} for d in ema)
            torch.set_rng_state(ck["torch_rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            where = self.out / CHECKPOINT if self.out is not None else "checkpoint"
            raise TrainingError(f"checkpoint {str(where)!r} is corrupt ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:120]}); delete it or run without --resume") from None


def _onto(x: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """``x`` on a GPU when it takes under a quarter of the GPU's free memory, else where it is."""
    if device is None or device.type != "cuda":
        return x
    free, _ = torch.cuda.mem_get_info(device)
    return x.to(device) if x.numel() * x.element_size() < free // 4 else x


def _to_host(obj):
    """A state dict (nested dicts and lists of tensors) with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj


def cat_schedule(engine: Engine, mode: str | None, epoch: int, epochs: int, n: int) -> Callable[[], None] | None:
    """What a CAT stage does after every training step: "lloyd" moves every codebook one Lloyd step
    (:func:`spikefit.cat.lloyd_step`), "soft" anneals the temperature (:func:`soft_schedule`)."""
    if mode == "soft":
        return soft_schedule(engine, epoch, epochs, n)
    if mode == "lloyd":
        return lambda: C.lloyd_step(engine.model)
    return None


def soft_schedule(engine: Engine, epoch: int, epochs: int, n: int) -> Callable[[], None]:
    """Soft CAT: the attention temperature anneals from tau_start to tau_end over the stage's steps
    (set before the epoch and after every step)."""
    cfg = engine.config
    per = -(-n // cfg.batch_size)
    count = [epoch * per]

    def step() -> None:
        count[0] += 1
        C.set_tau(engine.model, C.anneal_tau(count[0] / max(epochs * per, 1), cfg.tau_start, cfg.tau_end))

    C.set_tau(engine.model, C.anneal_tau(count[0] / max(epochs * per, 1), cfg.tau_start, cfg.tau_end))
    return step
