"""One checkpoint format for every plan the engine runs: a plain dict saved atomically.

``{"version", "config", "arch", "model", "optimizer", "state", "torch_rng"}`` plus what the fit adds
(``target``, ``dataset``, ``steps``, ``encoding``). ``state`` is :class:`~spikefit.training.state.TrainState`
as a dict.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from ..datasets import load_dataset
from ..errors import ModelError, TrainingError
from ..network import Network
from ..nn import SNN
from .config import FitConfig, steps_for

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1


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
        share_codebooks(model, ck["arch"])
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


def resume_point_exists(out: Path) -> bool:
    return (Path(out) / CHECKPOINT).exists()


def share_codebooks(model: SNN, arch: dict) -> None:
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
