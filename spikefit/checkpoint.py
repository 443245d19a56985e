"""Checkpoint files that hold data only: tensors, numbers, strings, lists and dicts.

A checkpoint is a plain dict written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers: no code runs while a file is read. A SHA-256
of the content (tensors by dtype, shape and bytes; everything else by type and value) travels in the
file under ``"sha256"``; :func:`read` recomputes it, so a truncated, altered or hand-edited file is
refused before any of its values is used.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

DIGEST_KEY = "sha256"
MAX_BYTES = 2 ** 31  # a checkpoint larger than 2 GiB is not one spikefit wrote for these networks


class CheckpointFormatError(ValueError):
    """The file is not a readable, intact checkpoint (the message says why, in a few words)."""


def digest(payload: dict) -> str:
    """SHA-256 (hex) of ``payload``'s content, independent of how torch laid out the file."""
    h = hashlib.sha256()
    _feed(h, payload)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise CheckpointFormatError(f"holds a {type(obj).__name__}, which a checkpoint cannot carry")


def seal(payload: dict) -> dict:
    """``payload`` with its digest added (what :func:`save` writes)."""
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    return {**body, DIGEST_KEY: digest(body)}


def save(payload: dict, path: Path) -> None:
    """Write ``seal(payload)`` to a temporary file beside ``path``, then rename it: never a partial file."""
    path = Path(path)
    sealed = seal(payload)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(sealed, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: Path) -> dict:
    """The payload of a checkpoint written by :func:`save`, its digest verified.

    :raises FileNotFoundError: no file at ``path``.
    :raises CheckpointFormatError: not a torch file, a file that asks to run code, no or a wrong digest.
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise CheckpointFormatError("is not a regular file")
        raise FileNotFoundError(path)
    if path.stat().st_size > MAX_BYTES:
        raise CheckpointFormatError(f"is larger than {MAX_BYTES // 2 ** 30} GiB")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, a pickle that references code, ...
        what = "holds objects other than tensors and plain data" if "weights_only" in str(e) else "is not a torch file"
        raise CheckpointFormatError(f"{what} ({type(e).__name__})") from None
    if not isinstance(ck, dict):
        raise CheckpointFormatError(f"holds a {type(ck).__name__}, not a dict")
    stored = ck.pop(DIGEST_KEY, None)
    if not isinstance(stored, str):
        if ck.get("version") == 1:
            raise CheckpointFormatError("format 1, written before checkpoints carried a checksum")
        raise CheckpointFormatError("carries no checksum")
    if digest(ck) != stored:
        raise CheckpointFormatError("fails its checksum (the file changed after it was written)")
    return ck


# -- structure ------------------------------------------------------------------------------------
MAX_PARAMETERS = 2 ** 28  # weights of one connection (1 GiB of float32): beyond any chip's synapse count
MAX_NEURONS = 2 ** 26     # neurons of one population
MAX_EPOCHS = 100_000      # epochs of a stage, or steps per sample, that a resumed fit may plan


def check_arch(arch) -> str | None:
    """Why an architecture (``SNN.arch()``) cannot be rebuilt safely, or None. Sizes are bounded so
    that a crafted file cannot make the rebuild allocate terabytes."""
    if not isinstance(arch, dict) or not isinstance(arch.get("stages"), list):
        return "its architecture is not a dict with a list of stages"
    for d in arch["stages"]:
        if not isinstance(d, dict):
            return "an architecture stage is not a dict"
        for key, value in d.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, int) and not isinstance(v, bool) and not 0 <= v <= MAX_NEURONS:
                    return f"stage {d.get('name')!r} has {key} {v}, outside 0..{MAX_NEURONS}"
        kind = d.get("kind")
        try:
            if kind == "dense":
                size = int(d["n_in"]) * int(d["n_out"])
            elif kind == "conv2d":
                size = int(d["c_out"]) * int(d["input_shape"][0]) * int(d["kernel"][0]) * int(d["kernel"][-1])
            elif kind == "neurons":
                size = 1
                for s in d["shape"]:
                    size *= int(s)
            else:
                size = 0
        except (KeyError, IndexError, TypeError, ValueError):
            return f"stage {d.get('name')!r} ({kind}) lacks its sizes"
        if size > MAX_PARAMETERS:
            return f"stage {d.get('name')!r} ({kind}) would hold {size} values, more than {MAX_PARAMETERS}"
    return None
