"""The epoch and its pieces: seeds, learning-rate schedule, one epoch of training, evaluation."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch

from ..datasets import predict
from ..nn import SNN, count_loss


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
