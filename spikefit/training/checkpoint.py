"""One checkpoint format for every plan the engine runs: a plain dict saved atomically.

``{"version", "config", "arch", "model", "optimizer", "state", "torch_rng"}`` plus what the fit adds
(``target``, ``dataset``, ``steps``, ``encoding``). ``state`` is :class:`~spikefit.training.state.TrainState`
as a dict.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..datasets import load_dataset
from .. import checkpoint as _ckpt
from ..errors import ModelError, SpikefitError, TrainingError
from ..network import Network
from ..nn import SNN
from .config import FitConfig, steps_for

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 2                                 # 2: data only, with a checksum


def atomic_save(obj, path: Path) -> None:
    """A checkpoint (data only, with its checksum: :mod:`spikefit.checkpoint`) to a temporary file in the
    same folder, then os.replace: never a partial file."""
    _ckpt.save(obj, path)


def atomic_write_text(text: str, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`fit`, read as data only (no code runs) with its checksum verified;
    a missing, corrupt or altered file raises TrainingError."""
    path = Path(path)
    try:
        ck = _ckpt.read(path)
    except FileNotFoundError:
        raise TrainingError(f"no checkpoint at {str(path)!r} to resume from; run without --resume") from None
    except _ckpt.CheckpointFormatError as e:
        raise TrainingError(f"checkpoint {str(path)!r} is corrupt ({e}); delete it or run without --resume") from None
    except OSError as e:
        raise TrainingError(f"cannot read checkpoint {str(path)!r} ({e.strerror}); delete it or run without --resume") from None
    if ck.get("version") != CHECKPOINT_VERSION or "arch" not in ck:
        raise TrainingError(f"checkpoint {str(path)!r} is corrupt (not a spikefit checkpoint); delete it or run "
                            "without --resume")
    why = _checkpoint_problem(ck)
    if why:
        raise TrainingError(f"checkpoint {str(path)!r} is corrupt ({why}); delete it or run without --resume")
    return ck


def _checkpoint_problem(ck: dict) -> str | None:
    """Why a checkpoint's structure is unusable (wrong types, negative counters), or None."""
    def count(v, lo=0):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    for key, kind in (("config", dict), ("model", dict), ("state", dict)):
        if not isinstance(ck.get(key), kind):
            return f"{key} is not a {kind.__name__}"
    for key in ("target", "dataset"):
        if key in ck and not isinstance(ck[key], str):
            return f"{key} is not a str"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ck["model"].items()):
        return "model is not a dict of tensors"
    if ck.get("optimizer") is not None and not isinstance(ck["optimizer"], dict):
        return "optimizer is not a dict"
    if not isinstance(ck.get("torch_rng"), torch.Tensor) or ck["torch_rng"].dtype != torch.uint8:
        return "torch_rng is not a byte tensor"
    st = ck["state"]
    for key in ("stage", "epoch", "global_epoch"):
        if not count(st.get(key)):
            return f"state {key} {st.get(key)!r} is not a count (an integer >= 0)"
    if not isinstance(st.get("entered"), bool) or not (st.get("stage_epochs") is None or count(st["stage_epochs"])):
        return "state entered/stage_epochs have the wrong types"
    for key, kind in (("history", list), ("accuracy", dict), ("pruned", dict)):
        if not isinstance(st.get(key), kind):
            return f"state {key} is not a {kind.__name__}"
    cfg = ck["config"]
    for key in ("warmup_epochs", "cat_epochs", "prune_rounds", "prune_epochs", "finetune_epochs", "steps"):
        value = cfg.get(key)
        if value is not None and not (count(value) and value <= _ckpt.MAX_EPOCHS):
            return f"config {key} {value!r} is not a count up to {_ckpt.MAX_EPOCHS}"
    if "steps" in ck and not (count(ck["steps"], 1) and ck["steps"] <= _ckpt.MAX_EPOCHS):
        return f"steps {ck['steps']!r} is not a count up to {_ckpt.MAX_EPOCHS}"
    return _ckpt.check_arch(ck["arch"])


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
        meta = {"target": ck["target"], "dataset": ck["dataset"], "steps": steps, "encoding": encoding,
                "seed": config.seed}
        return model.to_network(metadata=meta)
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError, SpikefitError) as e:
        raise ModelError(f"checkpoint {str(path)!r} is corrupt ({type(e).__name__}); use the model.nir of its fit "
                         "or fit again") from None


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
