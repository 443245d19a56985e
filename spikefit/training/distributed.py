"""Data-parallel fits with PyTorch's own engine: ``torchrun --nproc-per-node N -m spikefit fit ...``.

Every process runs the same plan on the same seeded data stream. Each global batch (``--batch-size``
samples, as in a one-process fit) is split across the processes; DistributedDataParallel averages
their gradients, and each process's loss is its share of the global batch's mean, so an N-process
fit takes the same steps as a one-process fit up to floating-point summation order. Stage actions
(quantize, prune) run in every process and rank 0's result is broadcast, so all processes hold one
network. Rank 0 alone writes checkpoints and outputs; a checkpoint holds no process count, so a fit
resumes on any number of processes. Backend: NCCL on GPUs, gloo on CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This process's part of a global batch (every size-th sample from its rank)."""
        return idx[self.rank::self.size] if self.active else idx


SINGLE = World()


def launched() -> bool:
    """Started by torchrun (or another launcher that sets WORLD_SIZE) with more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def env_rank() -> int:
    """This process's global rank as the launcher set it (0 when not launched by one)."""
    try:
        return int(os.environ.get("RANK", "0")) if launched() else 0
    except ValueError:
        return 0


def init(device: torch.device) -> World:
    """Join the process group torchrun describes (once per process); a single process: SINGLE."""
    if not launched():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size())


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The module a training step calls: DDP over ``model`` in a process group, else ``model``."""
    if not world.active:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, broadcast_buffers=False)


def sync_model(model, world: World):
    """Rank 0's network in every process (architecture and weights): after a stage action, so a
    tie broken differently on another device cannot leave the processes with different networks."""
    if not world.active:
        return model
    from ..nn import SNN
    from .checkpoint import share_codebooks

    payload = [None]
    if world.main:
        payload[0] = (model.arch(), {k: v.detach().cpu() for k, v in model.state_dict().items()})
    dist.broadcast_object_list(payload, src=0)
    arch, state = payload[0]
    if not world.main:
        if model.arch() != arch:
            model = SNN.from_arch(arch)
            share_codebooks(model, arch)
        model.load_state_dict(state)
    return model


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def finish(world: World) -> None:
    """Leave the process group (at the end of a fit)."""
    if world.active and dist.is_initialized():
        dist.destroy_process_group()
