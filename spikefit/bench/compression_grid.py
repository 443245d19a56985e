"""The grid of ``spikefit bench compression``: its cells, running them, their summary and targets.

Every cell is one :func:`spikefit.baselines.run_method` call: the dataset's default network, its
time steps, data and epochs are the same for every method; only the compression stage differs.
The grid (:func:`plan`):

* ``float`` and ``ternary`` once per seed (neither has a codebook size);
* quantization methods (``QUANTIZERS``: CAT, k-means, uniform, LSQ, DKM, k-means QAT) x ``--M`` at
  sparsity 0 (``uniform`` only where M is a power of two, ``lsq`` where M is even);
* pruning methods (``PRUNERS``: FSC, FSC-EMA, magnitude, GMP, SNIP, rewiring, random) x the
  non-zero ``--sparsity`` levels at M = ``--prune-m``; their dense point (sparsity 0) is the ``cat``
  cell at that M, which is the same training (a pruner differs only once it prunes);
* ``dense`` x the non-zero sparsity levels: CAT at M = ``--prune-m`` on the dense network whose
  hidden width (channel counts of the digits-image conv network) keeps as many synapses as the pruned
  networks (the capacity reference);
* with ``--scope layer``: one CAT row at M = ``--prune-m`` with one codebook per neuron (TrueNorth).

Cells run in ``--jobs`` processes, each with one torch thread; every cell is seeded, so the
accuracies do not depend on ``--jobs``. The speed figure (CAT step time / float step time) is
measured afterwards in this process alone, on one thread, by
:func:`spikefit.baselines.step_time_ratio`: float and CAT training steps (forward, loss, backward,
Adam, masks) alternate on the same batches, and the ratio of the medians is reported.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import time
from functools import lru_cache
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import SpikefitError

QUANTIZERS = ("cat", "cat-lloyd", "cat-hard", "cat-soft", "kmeans", "uniform", "lsq", "dkm",  # x M at sparsity 0
              "kmeans-qat")
PRUNERS = ("fsc", "fsc-point", "fsc-gmp", "fsc-regrow", "magnitude", "gmp", "gmp-layer", "snip", "rewire",  # x sparsity
           "rigl", "random")
ONCE = ("float", "ternary")                                          # once per seed
REFERENCES = ("dense",)                                              # x sparsity: the equal-synapse dense network
DEFAULT_METHODS = ("float", "cat", "cat-hard", "kmeans", "uniform", "lsq", "dkm", "kmeans-qat", "ternary", "fsc",
                   "fsc-point", "fsc-regrow", "gmp", "gmp-layer", "snip", "rigl", "dense")   # the full grid (docs/benchmarks.md)
QUANT_BASELINES = ("kmeans", "uniform", "lsq", "dkm", "kmeans-qat")          # what CAT must beat
PRUNE_BASELINES = ("magnitude", "gmp", "gmp-layer", "snip", "rewire", "rigl", "random")  # what FSC must beat
TARGET_M = 4              # the method's claims are stated at M = 4 (a 2-bit codebook)
STEP_RATIO_TARGET = 1.3   # CAT step time / float step time
# The sources that decide the figures: their hashes go into the report, tying results to code.
TRAINER_SOURCES = ("baselines.py", "trainer.py", "training/engine.py", "training/stages.py", "training/loop.py",
                   "training/config.py", "training/state.py", "cat.py", "quantizers.py", "fsc.py", "nn.py",
                   "nn_network.py",
                   "datasets.py", "lifscan.py", "compress/pruners.py", "compress/quantizers_qat.py",
                   "compress/stages.py")


class BenchError(SpikefitError):
    """A benchmark option that cannot run."""


@dataclass(frozen=True)
class DataFile:
    """A user's dataset file (``.npz`` / HDF5, as ``spikefit fit --data`` reads it) as the grid's
    dataset: cells carry the path, and each worker process reads the file once. ``sha256`` ties
    cached cells to the file's contents."""

    path: str
    layout: str | None = None
    sha256: str = ""

    @classmethod
    def of(cls, path, layout: str | None = None) -> "DataFile":
        p = Path(path)
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else ""
        ref = cls(str(p.resolve()) if p.is_file() else str(p), layout, digest)
        ref.load()   # a missing file or a bad array fails here, in one line, before any process starts
        return ref

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def load(self):
        return _read_file(self.path, self.layout)


@lru_cache(maxsize=4)
def _read_file(path: str, layout: str | None):
    from ..datafiles import load_file

    return load_file(path, layout, name=Path(path).stem)


def dataset_name(dataset) -> str:
    """The grid's dataset as reports name it: a registered name, or a data file's stem."""
    return dataset.name if isinstance(dataset, DataFile) else dataset


def _data(dataset):
    """What :func:`spikefit.baselines.run_method` and the emulator take: the name, or the file's Dataset."""
    return dataset.load() if isinstance(dataset, DataFile) else dataset


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    method: str
    M: int | None          # codebook size (None: float, ternary)
    sparsity: float        # fraction of synapses pruned
    scope: str             # codebook scope: "layer" or "neuron"
    seed: int

    def label(self) -> str:
        m = "" if self.M is None else f" M={self.M}"
        s = f" sparsity={self.sparsity:g}" if self.sparsity else ""
        return f"{self.method}{m}{s} scope={self.scope} seed={self.seed}"


def plan(methods, Ms, sparsities, seeds, scope: str = "layer", prune_m: int = TARGET_M,
         neuron_row: bool = True) -> list[Cell]:
    """The cells of the grid, heaviest first (neuron scope, soft assignment, repeated Fisher scores),
    then in table order."""
    cells: list[Cell] = []

    def add(c: Cell) -> None:
        if c not in cells:
            cells.append(c)

    for seed in seeds:
        for m in methods:
            if m in ONCE:
                add(Cell(m, None, 0.0, scope, seed))
            elif m in QUANTIZERS:
                for M in Ms:
                    if m == "uniform" and M & (M - 1):
                        continue  # not a whole number of bits
                    if m == "lsq" and M % 2:
                        continue  # LSQ's levels are ±1..±M/2
                    add(Cell(m, M, 0.0, scope, seed))
            elif m in PRUNERS:
                for sp in sparsities:
                    add(Cell("cat" if sp == 0 else m, prune_m, float(sp), scope, seed))
            elif m in REFERENCES:
                for sp in sparsities:
                    if sp > 0:
                        add(Cell(m, prune_m, float(sp), scope, seed))
        if neuron_row and scope == "layer" and "cat" in methods:
            add(Cell("cat", prune_m, 0.0, "neuron", seed))
    slow = ("cat-soft", "dkm", "fsc", "fsc-regrow", "fsc-gmp")   # attention or repeated Fisher scores
    heavy = {c: (c.scope == "neuron") * 2 + (c.method in slow) for c in cells}
    return sorted(cells, key=lambda c: -heavy[c])  # stable: table order within equal weight


def code_hashes() -> dict[str, str]:
    """Short sha256 of each source in TRAINER_SOURCES."""
    here = Path(__file__).resolve().parent.parent
    return {name: hashlib.sha256((here / name).read_bytes()).hexdigest()[:12] for name in TRAINER_SOURCES}


def config_key(dataset, config, allocation: str | None = None, energy_targets=()) -> str:
    """A short hash of everything that decides a cell's result besides the cell itself: the
    dataset, the config, the pruning allocation, the chips whose spike messages are counted and the
    trainer's sources (a changed trainer invalidates a cache)."""
    data = {"file": dataset.name, "sha256": dataset.sha256, "layout": dataset.layout} \
        if isinstance(dataset, DataFile) else dataset
    blob = json.dumps({"dataset": data, "config": config.to_dict(), "allocation": allocation,
                       "energy_targets": sorted(energy_targets), "code": code_hashes()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_cell(cell: Cell, dataset, config, allocation: str | None = None, energy_targets=()) -> dict:
    """Worker: one seeded run_method call on one torch thread, then the trained network's activity
    on the emulator (compression_energy.cell_activity)."""
    from ..baselines import run_method
    from .compression_energy import cell_activity

    t0 = time.perf_counter()
    data = _data(dataset)
    r = run_method(cell.method, data, cell.M, cell.sparsity, cell.seed, config, scope=cell.scope,
                   weight_bits=config.max_weight_bits, threads=1, allocation=allocation, keep_network=True)
    r["seconds"] = time.perf_counter() - t0
    r["dataset"] = dataset_name(dataset)
    r["activity"] = cell_activity(r.pop("network"), data, config.test_limit, list(energy_targets))
    return r


def _context():
    """Workers fork from a server that imported torch and spikefit but never ran a torch op (no
    thread pools to inherit, imports paid once); spawn where there is no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["spikefit.baselines", "torch._dynamo", "sklearn.datasets", "sklearn.model_selection"])
    return ctx


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_cells(cells: list[Cell], dataset, config, jobs: int = 1, cache: Path | None = None,
              log=None, allocation: str | None = None, energy_targets=()) -> list[dict]:
    """Results of ``cells`` (same order). ``cache``: a JSON-lines file of finished cells; cells
    already in it with the same dataset and config are read, not run, and new ones are appended.
    ``allocation``: pruning allocation of every pruner ("global" or "layer"; None: each method's own)."""
    key = config_key(dataset, config, allocation, energy_targets)
    done: dict[Cell, dict] = {}
    if cache is not None and Path(cache).exists():
        for line in Path(cache).read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                if rec["key"] == key:
                    done[Cell(**rec["cell"])] = rec["result"]
            except (json.JSONDecodeError, KeyError, TypeError):  # cut short by a killed run: runs again
                continue
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells if c not in done]
    total, count = len(cells), len(cells) - len(todo)
    if log and count:
        log(f"{count} of {total} cells read from {cache}")

    def finish(c: Cell, r: dict) -> None:
        nonlocal count
        count += 1
        done[c] = r
        if cache is not None:
            with open(cache, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "cell": asdict(c), "result": r}) + "\n")
        if log:
            log(f"[{count}/{total}] {c.label()}: {100 * r['accuracy']:.2f} % ({r['seconds']:.1f} s)")

    if jobs <= 1 or len(todo) <= 1:
        for c in todo:
            finish(c, _run_cell(c, dataset, config, allocation, energy_targets))
    else:
        ctx = _context()
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker) as ex:
            futures = {ex.submit(_run_cell, c, dataset, config, allocation, energy_targets): c for c in todo}
            for fut in as_completed(futures):
                finish(futures[fut], fut.result())
    return [done[c] for c in cells]


def _table_order(c: Cell) -> tuple:
    from ..baselines import METHODS

    return (c.scope == "neuron", METHODS.index(c.method), c.M or 0, c.sparsity, c.seed)


# -- aggregation -------------------------------------------------------------------------------------

def summarize(results: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds of every (method, M, sparsity, scope)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["method"], r["M"], r["sparsity"], r["scope"]), []).append(r)
    rows = []
    for (method, M, sp, scope), rs in groups.items():
        acc = [r["accuracy"] for r in sorted(rs, key=lambda r: r["seed"])]
        ratios = [r["step_time"] / r["float_step_time"] for r in rs if r["step_time"] and r["float_step_time"]]
        rows.append({"method": method, "M": M, "sparsity": sp, "scope": scope, "seeds": len(rs),
                     "accuracy_mean": statistics.fmean(acc),
                     "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                     "accuracies": acc,
                     "float_accuracy_mean": statistics.fmean(r["float_accuracy"] for r in rs),
                     "measured_sparsity": statistics.fmean(r["measured_sparsity"] for r in rs),
                     "synapses": statistics.fmean(r["synapses"] for r in rs) if all("synapses" in r for r in rs)
                     else None,
                     "max_distinct": max((r["max_distinct"] for r in rs if r["max_distinct"] is not None),
                                         default=None),
                     "step_ratio_in_grid": statistics.median(ratios) if ratios else None,
                     "seconds_mean": statistics.fmean(r["seconds"] for r in rs)})
    return rows


def find(summary: list[dict], method: str, M=None, sparsity: float = 0.0, scope: str = "layer") -> dict | None:
    for row in summary:
        if row["method"] == method and row["M"] == M and row["sparsity"] == sparsity and row["scope"] == scope:
            return row
    return None


def check_targets(summary: list[dict], speed: dict | None, scope: str = "layer",
                  sparsities=(0.5, 0.75, 0.9)) -> list[dict]:
    """The method's claims, each with the measured value, the bound, met or not and the margin
    (value - bound, in percentage points or in x): only those whose cells ran."""
    pp = 100.0
    out = []

    def claim(name: str, value: float, bound: float, unit: str = "pp", higher: bool = True) -> None:
        margin = value - bound if higher else bound - value
        out.append({"target": name, "value": value, "bound": bound, "unit": unit,
                    "met": bool(margin >= -1e-9), "margin": margin})

    cat = find(summary, "cat", TARGET_M, 0.0, scope)
    flt = find(summary, "float", None, 0.0, scope)
    if scope == "layer" and cat:
        if flt:
            claim(f"CAT M={TARGET_M} per layer >= float - 1.0 pp", pp * cat["accuracy_mean"],
                  pp * flt["accuracy_mean"] - 1.0)
        km = find(summary, "kmeans", TARGET_M, 0.0, scope)
        if km:
            claim(f"CAT M={TARGET_M} per layer >= k-means PTQ (M={TARGET_M}) + 5 pp", pp * cat["accuracy_mean"],
                  pp * km["accuracy_mean"] + 5.0)
        un = find(summary, "uniform", TARGET_M, 0.0, scope)
        if un:
            claim(f"CAT M={TARGET_M} per layer >= uniform {int(math.log2(TARGET_M))}-bit QAT + 1 pp",
                  pp * cat["accuracy_mean"], pp * un["accuracy_mean"] + 1.0)
    neu = find(summary, "cat", TARGET_M, 0.0, "neuron")
    if neu and flt:
        claim(f"CAT M={TARGET_M} per neuron >= float - 2.0 pp", pp * neu["accuracy_mean"],
              pp * flt["accuracy_mean"] - 2.0)
    for sp in sparsities:
        f, m = find(summary, "fsc", TARGET_M, sp, scope), find(summary, "magnitude", TARGET_M, sp, scope)
        if f and m:
            claim(f"FSC >= magnitude pruning at {100 * sp:g} % sparsity", pp * f["accuracy_mean"],
                  pp * m["accuracy_mean"])
    f90 = find(summary, "fsc", TARGET_M, 0.9, scope)
    if f90 and cat:
        claim("FSC at 90 % sparsity >= dense CAT - 3 pp", pp * f90["accuracy_mean"], pp * cat["accuracy_mean"] - 3.0)
    if scope == "layer" and cat:
        rows = [(m, find(summary, m, TARGET_M, 0.0, scope)) for m in QUANT_BASELINES]
        rows = [(m, r) for m, r in rows if r]
        if rows:
            m, best = max(rows, key=lambda mr: mr[1]["accuracy_mean"])
            claim(f"CAT M={TARGET_M} per layer >= best quantization baseline ({m}) + 1 pp",
                  pp * cat["accuracy_mean"], pp * best["accuracy_mean"] + 1.0)
    for sp in sparsities:
        f = find(summary, "fsc", TARGET_M, sp, scope)
        rows = [(m, find(summary, m, TARGET_M, sp, scope)) for m in PRUNE_BASELINES]
        rows = [(m, r) for m, r in rows if r]
        if f and rows:
            m, best = max(rows, key=lambda mr: mr[1]["accuracy_mean"])
            claim(f"FSC at {100 * sp:g} % sparsity >= best pruning baseline ({m}) + 2 pp", pp * f["accuracy_mean"],
                  pp * best["accuracy_mean"] + 2.0)
        d = find(summary, "dense", TARGET_M, sp, scope)
        if f and d:
            claim(f"FSC at {100 * sp:g} % sparsity >= dense network of equal synapses", pp * f["accuracy_mean"],
                  pp * d["accuracy_mean"])
    if speed:
        claim(f"CAT step <= {STEP_RATIO_TARGET} x float step", speed["ratio"], STEP_RATIO_TARGET, unit="x",
              higher=False)
    return out


# -- the speed figure ------------------------------------------------------------------------------

def measure_step_ratio(dataset, config, M: int = TARGET_M, steps: int = 200) -> dict:
    """CAT step time over float step time (:func:`spikefit.baselines.step_time_ratio`), one thread."""
    from ..baselines import step_time_ratio
    from ..datasets import load_dataset
    from ..trainer import steps_for

    ds = load_dataset(_data(dataset))
    r = step_time_ratio(ds, M=M, steps=steps, config=config, weight_bits=config.max_weight_bits, threads=1)
    T = steps_for(ds, config)
    return {"M": M, "steps": steps, "batch_size": config.batch_size, "time_steps": T,
            "float_step_s": r["float_step"], "cat_step_s": r["cat_step"], "ratio": r["ratio"],
            "target": STEP_RATIO_TARGET, "threads": 1}



def environment(jobs: int) -> dict:
    import torch

    return {"python": f"Python {platform.python_version()}", "torch": torch.__version__, "numpy": np.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(), "jobs": jobs, "code_sha256": code_hashes()}


def run_benchmark(dataset, methods, Ms, sparsities, seeds: int, scope: str = "layer", prune_m: int = TARGET_M,
                  jobs: int = 1, config=None, timing_steps: int = 200, cache: Path | None = None,
                  neuron_row: bool = True, log=None, allocation: str | None = None,
                  energy_targets: list[str] | None = None) -> dict:
    """Run the grid and the speed figure; return the report (cells, summary, targets, speed, energy
    per inference on ``energy_targets``: None for every chip that publishes a per-operation constant)."""
    from .compression_energy import add_energy, resolve_targets
    from ..datasets import load_dataset
    from ..trainer import FitConfig

    ds = load_dataset(_data(dataset))  # an unknown name fails here, before any process starts
    if config is not None:
        from ..devices import resolve

        resolve(config.device)  # so does a device that is not here
    config = config or FitConfig.preset("full", threads=1, deploy=False)
    if scope not in ("layer", "neuron"):
        raise BenchError(f"scope {scope!r} is not benchmarked; use 'layer' or 'neuron'")
    energy_targets = resolve_targets(None) if energy_targets is None else list(energy_targets)
    cells = plan(methods, Ms, sparsities, range(seeds), scope, prune_m, neuron_row)
    if not cells:
        raise BenchError(f"methods {', '.join(methods)} with M {Ms} make no cell to run; add methods or M values")
    t0 = time.perf_counter()
    results = run_cells(cells, dataset, config, jobs, cache, log, allocation, energy_targets)
    seconds = time.perf_counter() - t0
    speed = None
    untimed = ("the timing loop encodes static inputs, and this dataset is a sequence" if ds.layout == "sequence"
               else f"the timing loop cycles over 8 batches of {config.batch_size} training samples and this dataset "
                    f"has {len(ds.y_train)}" if len(ds.y_train) < 8 * config.batch_size else None)
    if timing_steps > 0 and untimed:
        if log:
            log(f"no step-time figure: {untimed}")
    elif timing_steps > 0 and any(m in methods for m in ("cat", "cat-hard")):
        if log:
            log(f"timing {timing_steps} float and CAT steps, one thread")
        speed = measure_step_ratio(dataset, config, TARGET_M, timing_steps)
    results = [r for _, r in sorted(zip(cells, results), key=lambda cr: _table_order(cr[0]))]
    summary = summarize(results)
    add_energy(summary, results, energy_targets)
    return {"dataset": dataset_name(dataset), "scope": scope, "allocation": allocation, "M": list(Ms), "sparsity": list(sparsities),
            "prune_m": prune_m, "seeds": list(range(seeds)), "methods": list(methods), "config": config.to_dict(),
            "cells": len(cells), "jobs": jobs, "seconds": seconds, "results": results, "summary": summary,
            "speed": speed, "targets": check_targets(summary, speed, scope, [s for s in sparsities if s > 0]),
            "energy_targets": energy_targets,
            **({"data_file": {"name": dataset.name, "sha256": dataset.sha256, "layout": ds.layout}}
               if isinstance(dataset, DataFile) else {}),
            "environment": environment(jobs)}

