"""Where training runs: ``--device auto|cpu|cuda[:N]`` (and ``device=`` in the Python API).

``auto`` is the first visible GPU, else the CPU. A device that is not visible is a
:class:`~spikefit.errors.DeviceError` naming the devices that are. Under ``torchrun`` each process
takes the GPU of its local rank (:mod:`spikefit.training.distributed`).
"""
from __future__ import annotations

import functools
import importlib
import os
import re

import torch

from .errors import DeviceError

SPECS = "auto, cpu, cuda or cuda:N"


def visible() -> list[str]:
    """The devices this process can use, as ``--device`` names them (``cuda:N (name)`` for GPUs)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return names


def resolve(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a ``--device`` value."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not m:
        raise DeviceError(f"--device {spec!r} is not a device; use {SPECS} (visible here: {', '.join(visible())})")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = local_rank() if m.group(1) is None else int(m.group(1))
    if index >= count:
        raise DeviceError(f"--device {spec!r} is not visible here (visible: {', '.join(visible())}); "
                          "use --device auto or one of those")
    return torch.device("cuda", index)


def local_rank() -> int:
    """This process's rank on its host under torchrun (0 otherwise)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timing only; training never waits)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=None)
def kernels(module: str):
    """The Triton kernel module ``spikefit.<module>`` (``lif_triton``, ``quant_triton``), or None where
    Triton is missing or cannot load its CUDA driver; imported once."""
    try:
        return importlib.import_module(f"spikefit.{module}")
    except Exception:  # ImportError, or a Triton that cannot load its driver
        return None
