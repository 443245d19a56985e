"""Data-parallel fits of the conv workload on event frames, for ``spikefit bench train --processes``.

The data are the embedded digits as an event camera would see them, the way N-MNIST was recorded
(Orchard et al. 2015): each 8x8 digit is scaled to ``size`` x ``size`` and moved along three
saccades; a pixel whose intensity rises (falls) by more than ``THRESHOLD`` between two steps emits
an ON (OFF) event. Frames are (t, 2, size, size), ``steps`` of them per sample.

``python -m torch.distributed.run --standalone --nproc-per-node N -m spikefit.bench.ddp_fit ...``
trains the conv network (:func:`spikefit.bench.train_models.conv`) with the training engine for a
few float epochs; rank 0 writes samples/s and test accuracy as JSON. :func:`run_counts` launches it
for each process count and reads the results back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THRESHOLD = 0.2
SACCADES = ((1, 1), (1, -1), (-2, 0))   # direction of each saccade (dx, dy), pixels of the 8x8 grid per sweep


def saccade_offsets(steps: int, scale: int) -> list[tuple[int, int]]:
    """Sensor offsets (pixels of the scaled image) at steps 0..steps: three sweeps, like N-MNIST's."""
    per = max(steps // len(SACCADES), 1)
    pos = [(0, 0)]
    for dx, dy in SACCADES:
        for k in range(per):
            x, y = pos[-1]
            pos.append((x + dx * scale // per, y + dy * scale // per))
    while len(pos) < steps + 1:
        pos.append(pos[-1])
    return pos[:steps + 1]


def events(x: np.ndarray, size: int, steps: int) -> np.ndarray:
    """Static images x (n, 64) in [0, 1] -> ON/OFF event frames (n, steps, 2, size, size) uint8."""
    scale = size // 8
    img = np.kron(x.reshape(-1, 8, 8), np.ones((scale, scale), dtype=np.float32))   # (n, size, size)
    pad = 2 * scale
    big = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    offs = saccade_offsets(steps, scale)

    def view(dx, dy):
        return big[:, pad + dy:pad + dy + size, pad + dx:pad + dx + size]

    out = np.zeros((len(x), steps, 2, size, size), dtype=np.uint8)
    prev = view(*offs[0])
    for k in range(steps):
        cur = view(*offs[k + 1])
        d = cur - prev
        out[:, k, 0] = d > THRESHOLD
        out[:, k, 1] = d < -THRESHOLD
        prev = cur
    return out


def event_digits(size: int = 128, steps: int = 8, limit: int | None = None):
    """The digits as event frames: a sequence Dataset of (steps, 2, size, size) samples."""
    from ..datasets import Dataset, load_dataset

    if size % 8 or size < 16:
        raise ValueError(f"size {size} must be a multiple of 8, at least 16")
    d = load_dataset("digits")
    n = None if limit is None else int(limit)
    return Dataset(f"digits-events{size}", events(d.x_train[:n], size, steps), d.y_train[:n],
                   events(d.x_test, size, steps), d.y_test, 10, layout="sequence")


def main(argv: list[str] | None = None) -> None:
    import argparse

    import torch

    from ..training.config import FitConfig
    from ..training.engine import Engine, TrainData
    from ..training.stages import Warmup
    from . import train_models as W

    ap = argparse.ArgumentParser(prog="spikefit.bench.ddp_fit")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    ds = event_digits(a.size, a.steps, a.limit)
    config = FitConfig(batch_size=a.batch_size, lr=2e-3, seed=0, device=a.device, steps=a.steps)
    torch.manual_seed(0)
    model = W.spikefit_model(W.conv(a.size, a.batch_size, a.steps))
    data = TrainData.build(ds, a.steps, "rate", config)
    stamps: list[float] = []
    engine = Engine(model, data, [Warmup("train", a.epochs, config.lr)], config,
                    callbacks=[lambda info: stamps.append(time.perf_counter())])
    stamps.append(time.perf_counter())
    engine.run()
    if engine.world.main:
        n = len(data.y_train)
        # samples/s over the epochs after the first (which also compiles kernels and copies the frames)
        first = 1 if a.epochs > 1 else 0
        rate = n * (len(stamps) - 1 - first) / (stamps[-1] - stamps[first])
        result = {"processes": engine.world.size, "device": engine.device.type, "size": a.size,
                  "epochs": a.epochs, "batch_size": a.batch_size, "train_samples": n,
                  "epoch_seconds": [round(b - a_, 3) for a_, b in zip(stamps, stamps[1:])],
                  "samples_per_s": rate, "accuracy": engine.state.accuracy["float"],
                  "neurons": sum(p.size for p in model.populations())}
        Path(a.out).write_text(json.dumps(result), encoding="utf-8")
    from ..training import distributed

    distributed.finish(engine.world)


def run_counts(counts: list[int], device, size: int, epochs: int, limit: int | None, log=print) -> list[dict]:
    """One data-parallel fit per process count (torchrun, one process per GPU or gloo on CPUs)."""
    from ..errors import TrainingError

    results = []
    kind = "cuda" if getattr(device, "type", str(device)).startswith("cuda") else "cpu"
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                   "-m", "spikefit.bench.ddp_fit", "--size", str(size), "--epochs", str(epochs),
                   "--device", kind, "--out", str(out)]
            if limit:
                cmd += ["--limit", str(limit)]
            env = dict(os.environ)
            if kind == "cpu":
                env.setdefault("OMP_NUM_THREADS", str(max((os.cpu_count() or 1) // n, 1)))
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0 or not out.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise TrainingError(f"data-parallel fit on {n} processes failed (exit {proc.returncode}): "
                                   + " | ".join(tail))
            r = json.loads(out.read_text(encoding="utf-8"))
        results.append(r)
        log(f"  conv fit   {r['device']:7s} {n} process(es)   {r['samples_per_s']:10.1f} samples/s   "
            f"accuracy {r['accuracy'] * 100:.2f} %")
    return results


if __name__ == "__main__":
    main()
