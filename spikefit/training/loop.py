"""The epoch and its pieces: seeds, learning-rate schedule, one epoch of training, evaluation."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
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
                timer: list | None = None, step_model: torch.nn.Module | None = None, world=None,
                precision: str = "fp32") -> float:
    """One epoch over spikes x (t, N, n) in the order ``gen`` draws; returns the mean loss. Masks are
    re-applied after every step so pruned weights stay exactly zero.

    ``x`` and ``y`` may live on the host: each batch moves to the model's device. The loss is summed
    on the device and read once, at the end of the epoch: no step waits for the host. ``step_model``
    (DDP over ``model``) and ``world`` split each global batch across processes
    (:mod:`spikefit.training.distributed`). ``precision`` "bf16" runs the forward pass under
    :func:`autocast` (bfloat16 matmuls and convolutions)."""
    model.train()
    net = step_model or model
    device = next(model.parameters()).device
    perm = torch.randperm(x.shape[1], generator=gen)
    if x.device != device:   # inputs on the host: each batch is copied over
        perm_x = perm
    else:
        perm_x = perm.to(device)
    y = y.to(device) if y.device != device and x.device == device else y
    total = torch.zeros((), device=device)
    seen = 0
    t_epoch = time.perf_counter()
    steps = 0
    for i in range(0, len(perm), batch_size):
        idx_global = perm_x[i:i + batch_size]
        idx = idx_global if world is None else world.shard(idx_global)
        t0 = time.perf_counter()
        xb = x[:, idx].to(device, non_blocking=True)
        yb = y[idx.to(y.device)].to(device, non_blocking=True)
        try:
            with autocast(device, precision):
                out = net(xb)                                              # (t, b, n_out)
                if world is not None and world.active:   # this process's share of the global batch's mean
                    loss = count_loss(out, yb, logit_scale, reduction="sum") * (world.size / len(idx_global))
                else:
                    loss = count_loss(out, yb, logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        except torch.OutOfMemoryError as e:
            raise out_of_memory(device, batch_size, e) from None
        opt.step()
        model.apply_masks()
        steps += 1
        if timer is not None and device.type == "cpu":
            timer.append(time.perf_counter() - t0)
        if on_step is not None:
            on_step()
        total += loss.detach() * (len(idx_global) / (world.size if world is not None and world.active else 1))
        seen += len(idx_global)
    mean = float(total) / max(seen, 1)  # the epoch's one wait for the device
    if world is not None and world.active:
        import torch.distributed as dist

        t = torch.tensor([mean], device=device)
        dist.all_reduce(t)
        mean = float(t)  # the processes' shares of each batch's loss add up to the global mean
    if timer is not None and device.type != "cpu" and steps:  # the device's step time, without a wait per step
        timer.extend([(time.perf_counter() - t_epoch) / steps] * steps)
    return mean


def autocast(device: torch.device, precision: str):
    """bfloat16 autocast for ``precision`` "bf16" (matmuls and convolutions; spikes, which are 0 and 1, and
    weights on a codebook of at most 8 significant bits are exact in it, and products accumulate in
    float32), else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def out_of_memory(device: torch.device, batch_size: int, error: Exception):
    """A one-line error for a step that ran out of the device's memory."""
    from ..errors import DeviceError

    first = str(error).splitlines()[0] if str(error) else "out of memory"
    return DeviceError(f"out of memory on {device} at batch size {batch_size} ({first[:100]}); pass a smaller "
                       f"--batch-size, e.g. {max(batch_size // 2, 1)}; the checkpoint of the last finished epoch is intact")


@torch.no_grad()
def predict_model(model: SNN, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Predicted classes (argmax of output spike counts, ties to the lowest index), on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    preds = [predict(model(x[:, i:i + batch_size].to(device)).sum(0).cpu().numpy())
             for i in range(0, x.shape[1], batch_size)]
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def evaluate(model: SNN, x: torch.Tensor, y: np.ndarray) -> float:
    return float((predict_model(model, x) == np.asarray(y)).mean())
