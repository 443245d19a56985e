"""``spikefit bench compression``: accuracy of every compression method in one harness.

Every cell is one :func:`spikefit.baselines.run_method` call: the dataset's default network, its
time steps, data and epochs are the same for every method; only the compression stage differs.
The grid (``plan``):

* ``float`` and ``ternary`` once per seed (neither has a codebook size);
* quantization methods (``cat``, ``cat-hard``, ``cat-soft``, ``kmeans``, ``uniform``) x ``--M`` at
  sparsity 0 (``uniform`` only where M is a power of two: ``log2(M)`` bits);
* pruning methods (``fsc``, ``magnitude``, ``random``) x the non-zero ``--sparsity`` levels at
  M = ``--prune-m``; their dense point (sparsity 0) is the ``cat`` cell at that M, which is the same
  training (a pruner differs only once it prunes);
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
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from ..errors import SpikefitError

QUANTIZERS = ("cat", "cat-hard", "cat-soft", "kmeans", "uniform")  # x M at sparsity 0
PRUNERS = ("fsc", "magnitude", "random")                            # x sparsity at M = prune_m
ONCE = ("float", "ternary")                                          # once per seed
DEFAULT_METHODS = ("float", "cat", "cat-soft", "kmeans", "uniform", "ternary", "fsc", "magnitude", "random")
TARGET_M = 4              # the method's claims are stated at M = 4 (a 2-bit codebook)
STEP_RATIO_TARGET = 1.3   # CAT step time / float step time
# The sources that decide the figures: their hashes go into the report, tying results to code.
TRAINER_SOURCES = ("baselines.py", "trainer.py", "training/engine.py", "training/stages.py", "training/loop.py",
                   "training/config.py", "training/state.py", "cat.py", "quantizers.py", "fsc.py", "nn.py",
                   "datasets.py")


class BenchError(SpikefitError):
    """A benchmark option that cannot run."""


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
    """The cells of the grid, heaviest first (neuron scope, soft assignment), then in table order."""
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
                    add(Cell(m, M, 0.0, scope, seed))
            elif m in PRUNERS:
                for sp in sparsities:
                    add(Cell("cat" if sp == 0 else m, prune_m, float(sp), scope, seed))
        if neuron_row and scope == "layer" and "cat" in methods:
            add(Cell("cat", prune_m, 0.0, "neuron", seed))
    heavy = {c: (c.scope == "neuron") * 2 + (c.method == "cat-soft") for c in cells}
    return sorted(cells, key=lambda c: -heavy[c])  # stable: table order within equal weight


def code_hashes() -> dict[str, str]:
    """Short sha256 of each source in TRAINER_SOURCES."""
    here = Path(__file__).resolve().parent.parent
    return {name: hashlib.sha256((here / name).read_bytes()).hexdigest()[:12] for name in TRAINER_SOURCES}


def config_key(dataset: str, config, allocation: str | None = None, energy_targets=()) -> str:
    """A short hash of everything that decides a cell's result besides the cell itself: the
    dataset, the config, the pruning allocation, the chips whose spike messages are counted and the
    trainer's sources (a changed trainer invalidates a cache)."""
    blob = json.dumps({"dataset": dataset, "config": config.to_dict(), "allocation": allocation,
                       "energy_targets": sorted(energy_targets), "code": code_hashes()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_cell(cell: Cell, dataset: str, config, allocation: str | None = None, energy_targets=()) -> dict:
    """Worker: one seeded run_method call on one torch thread, then the trained network's activity
    on the emulator (compression_energy.cell_activity)."""
    from ..baselines import run_method
    from .compression_energy import cell_activity

    t0 = time.perf_counter()
    r = run_method(cell.method, dataset, cell.M, cell.sparsity, cell.seed, config, scope=cell.scope,
                   weight_bits=config.max_weight_bits, threads=1, allocation=allocation, keep_network=True)
    r["seconds"] = time.perf_counter() - t0
    r["activity"] = cell_activity(r.pop("network"), dataset, config.test_limit, list(energy_targets))
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


def run_cells(cells: list[Cell], dataset: str, config, jobs: int = 1, cache: Path | None = None,
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
    if speed:
        claim(f"CAT step <= {STEP_RATIO_TARGET} x float step", speed["ratio"], STEP_RATIO_TARGET, unit="x",
              higher=False)
    return out


# -- the speed figure ------------------------------------------------------------------------------

def measure_step_ratio(dataset: str, config, M: int = TARGET_M, steps: int = 200) -> dict:
    """CAT step time over float step time (:func:`spikefit.baselines.step_time_ratio`), one thread."""
    from ..baselines import step_time_ratio
    from ..datasets import load_dataset
    from ..trainer import steps_for

    r = step_time_ratio(dataset, M=M, steps=steps, config=config, weight_bits=config.max_weight_bits, threads=1)
    T = steps_for(load_dataset(dataset), config)
    return {"M": M, "steps": steps, "batch_size": config.batch_size, "time_steps": T,
            "float_step_s": r["float_step"], "cat_step_s": r["cat_step"], "ratio": r["ratio"],
            "target": STEP_RATIO_TARGET, "threads": 1}


# -- output ------------------------------------------------------------------------------------------

def _ms(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f}"


def _row_label(method: str, scope: str, main_scope: str) -> str:
    return method if scope == main_scope else f"{method} (scope {scope})"


def tables(report: dict) -> str:
    """The Markdown body: M table, sparsity table, targets, speed and every group."""
    summary, scope = report["summary"], report["scope"]
    Ms, sps, pm = report["M"], report["sparsity"], report["prune_m"]
    lines = []
    flt = find(summary, "float", None, 0.0, scope)
    n_seeds = len(report["seeds"])
    lines += [f"### Accuracy vs M (test accuracy %, mean ± std over {n_seeds} seeds; sparsity 0)", "",
              "| method | " + " | ".join(f"M={M}" for M in Ms) + " |", "|---|" + "---:|" * len(Ms)]
    if flt:
        lines.append("| float (no quantization) | " + " | ".join(_ms(flt) for _ in Ms) + " |")
    seen = []
    for row in summary:
        if row["method"] in QUANTIZERS and row["sparsity"] == 0 and (row["method"], row["scope"]) not in seen:
            seen.append((row["method"], row["scope"]))
    seen.sort(key=lambda k: (k[1] != scope, QUANTIZERS.index(k[0])))
    for method, sc in seen:
        lines.append(f"| {_row_label(method, sc, scope)} | "
                     + " | ".join(_ms(find(summary, method, M, 0.0, sc)) for M in Ms) + " |")
    ter = find(summary, "ternary", None, 0.0, scope)
    if ter:
        lines.append("| ternary (±s and 0) | " + " | ".join(_ms(ter) if M == 2 else "-" for M in Ms) + " |")
    lines.append("")
    pruners = [m for m in PRUNERS if any(r["method"] == m for r in summary)]
    if pruners:
        lines += [f"### Accuracy vs synapse sparsity (test accuracy %, mean ± std over {n_seeds} seeds; "
                  f"CAT M={pm}, scope {scope})", "",
                  "| pruning | " + " | ".join(f"{100 * s:g} %" for s in sps) + " |", "|---|" + "---:|" * len(sps)]
        for m in pruners:
            cells = [_ms(find(summary, "cat" if s == 0 else m, pm, s, scope)) for s in sps]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "Sparsity 0 is the dense CAT run (the same training for every pruner).", ""]
    if report["targets"]:
        lines += ["### Targets", "", "| target | measured | bound | verdict |", "|---|---:|---:|---|"]
        for t in report["targets"]:
            u = " x" if t["unit"] == "x" else " %"
            fmt = ".3f" if t["unit"] == "x" else ".2f"
            verdict = (f"met (by {abs(t['margin']):{fmt}}{'' if t['unit'] == 'x' else ' pp'})" if t["met"]
                       else f"**missed by {abs(t['margin']):{fmt}}{'' if t['unit'] == 'x' else ' pp'}**")
            lines.append(f"| {t['target']} | {t['value']:{fmt}}{u} | {t['bound']:{fmt}}{u} | {verdict} |")
        lines.append("")
    sp = report.get("speed")
    if sp:
        lines += [f"Training speed: CAT (M={sp['M']}) step {1e3 * sp['cat_step_s']:.2f} ms, float step "
                  f"{1e3 * sp['float_step_s']:.2f} ms: ratio **{sp['ratio']:.3f}** (target <= {sp['target']}); "
                  f"medians of {sp['steps']} alternating steps, batch {sp['batch_size']}, "
                  f"{sp['time_steps']} time steps, 1 thread.", ""]
    from .compression_energy import table as energy_table

    lines += energy_table(report, _row_label)
    lines += ["### Every group", "",
              "| method | M | sparsity | scope | accuracy % | seeds | measured sparsity | max distinct | "
              "step ratio (in grid) | s per run |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary:
        ratio = "-" if r["step_ratio_in_grid"] is None else f"{r['step_ratio_in_grid']:.2f}"
        lines.append(f"| {r['method']} | {r['M'] if r['M'] is not None else '-'} | {r['sparsity']:g} | "
                     f"{r['scope']} | {_ms(r)} | {r['seeds']} | {100 * r['measured_sparsity']:.1f} % | "
                     f"{r['max_distinct'] if r['max_distinct'] is not None else '-'} | {ratio} | "
                     f"{r['seconds_mean']:.1f} |")
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    env = report["environment"]
    head = [f"# Compression benchmark: {report['dataset']}", "",
            f"Preset `{report['preset']}`; seeds {', '.join(map(str, report['seeds']))}; "
            f"{report['cells']} runs in {report['seconds']:.0f} s with {report['jobs']} jobs on "
            f"{env['cpus']} CPUs ({env['python']}, torch {env['torch']}, numpy {env['numpy']}); pruning allocation "
            f"{report.get('allocation') or 'per method (FSC global, magnitude and random per layer)'}.", "",
            f"Command: `{report['command']}`", ""]
    return "\n".join(head) + tables(report)


def plots(report: dict, out: Path) -> list[Path]:
    """accuracy vs M and accuracy vs sparsity, with std error bars, as PNG files in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, scope, ds = report["summary"], report["scope"], report["dataset"]
    flt = find(summary, "float", None, 0.0, scope)
    paths = []

    def reference(ax, row, label):
        if row:
            m, s = 100 * row["accuracy_mean"], 100 * row["accuracy_std"]
            ax.axhline(m, color="k", ls="--", lw=1, label=label)
            ax.axhspan(m - s, m + s, color="k", alpha=0.08, lw=0)

    fig, ax = plt.subplots(figsize=(6, 4))
    reference(ax, flt, "float")
    for method in QUANTIZERS:
        for sc in (scope, "neuron" if scope == "layer" else None):
            rows = [r for r in summary if r["method"] == method and r["scope"] == sc and r["sparsity"] == 0]
            rows.sort(key=lambda r: r["M"])
            if not rows:
                continue
            ax.errorbar([r["M"] for r in rows], [100 * r["accuracy_mean"] for r in rows],
                        [100 * r["accuracy_std"] for r in rows], marker="o" if sc == scope else "s",
                        capsize=3, label=_row_label(method, sc, scope), ls="-" if len(rows) > 1 else "none")
    ter = find(summary, "ternary", None, 0.0, scope)
    if ter:
        ax.errorbar([2], [100 * ter["accuracy_mean"]], [100 * ter["accuracy_std"]], marker="^", capsize=3,
                    ls="none", label="ternary")
    ax.set_xscale("log", base=2)
    ax.set_xticks(report["M"], [str(M) for M in report["M"]])
    ax.set_xlabel("M (codebook values per group; uniform: a log2(M)-bit grid)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{ds}: accuracy vs M (sparsity 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / f"{ds}_accuracy_vs_M.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    pruners = [m for m in PRUNERS if any(r["method"] == m for r in summary)]
    if pruners:
        fig, ax = plt.subplots(figsize=(6, 4))
        reference(ax, flt, "float (dense)")
        pm = report["prune_m"]
        for m in pruners:
            pts = [(s, find(summary, "cat" if s == 0 else m, pm, s, scope)) for s in report["sparsity"]]
            pts = [(s, r) for s, r in pts if r]
            ax.errorbar([100 * s for s, _ in pts], [100 * r["accuracy_mean"] for _, r in pts],
                        [100 * r["accuracy_std"] for _, r in pts], marker="o", capsize=3, label=m)
        ax.set_xlabel("synapse sparsity (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{ds}: accuracy vs sparsity (CAT M={pm})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / f"{ds}_accuracy_vs_sparsity.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    from .compression_energy import plot as energy_plot

    energy = energy_plot(report, out)
    return paths + ([energy] if energy else [])


# -- the command ---------------------------------------------------------------------------------------

def _ints(text: str, option: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=option) from None
    if not vals or min(vals) < 2:
        raise click.BadParameter(f"{text!r}: every M must be at least 2", param_hint=option)
    return vals


def _floats(text: str, option: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=option) from None
    if not vals or not all(0 <= v < 1 for v in vals):
        raise click.BadParameter(f"{text!r}: every sparsity must lie in [0, 1)", param_hint=option)
    return sorted(vals)


def _methods(text: str) -> list[str]:
    from ..baselines import METHODS

    vals = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in vals if m not in METHODS]
    if bad or not vals:
        raise click.BadParameter(f"unknown method {bad[0] if bad else text!r}; use some of {', '.join(METHODS)}",
                                 param_hint="--methods")
    return vals


def build_config(preset: str, epochs: int | None, train_limit: int | None, test_limit: int | None):
    from ..trainer import FitConfig

    over = {"train_limit": train_limit, "test_limit": test_limit, "threads": 1, "deploy": False}
    if epochs is not None:
        over.update(warmup_epochs=epochs, cat_epochs=epochs, prune_epochs=epochs, finetune_epochs=epochs)
    return FitConfig.preset(preset, **over)


def environment(jobs: int) -> dict:
    import torch

    return {"python": f"Python {platform.python_version()}", "torch": torch.__version__, "numpy": np.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(), "jobs": jobs, "code_sha256": code_hashes()}


def run_benchmark(dataset: str, methods, Ms, sparsities, seeds: int, scope: str = "layer", prune_m: int = TARGET_M,
                  jobs: int = 1, config=None, timing_steps: int = 200, cache: Path | None = None,
                  neuron_row: bool = True, log=None, allocation: str | None = None,
                  energy_targets: list[str] | None = None) -> dict:
    """Run the grid and the speed figure; return the report (cells, summary, targets, speed, energy
    per inference on ``energy_targets``: None for every chip that publishes a per-operation constant)."""
    from .compression_energy import add_energy, resolve_targets
    from ..datasets import load_dataset
    from ..trainer import FitConfig

    load_dataset(dataset)  # an unknown name fails here, before any process starts
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
    if timing_steps > 0 and any(m in methods for m in ("cat", "cat-hard")):
        if log:
            log(f"timing {timing_steps} float and CAT steps, one thread")
        speed = measure_step_ratio(dataset, config, TARGET_M, timing_steps)
    results = [r for _, r in sorted(zip(cells, results), key=lambda cr: _table_order(cr[0]))]
    summary = summarize(results)
    add_energy(summary, results, energy_targets)
    return {"dataset": dataset, "scope": scope, "allocation": allocation, "M": list(Ms), "sparsity": list(sparsities),
            "prune_m": prune_m, "seeds": list(range(seeds)), "methods": list(methods), "config": config.to_dict(),
            "cells": len(cells), "jobs": jobs, "seconds": seconds, "results": results, "summary": summary,
            "speed": speed, "targets": check_targets(summary, speed, scope, [s for s in sparsities if s > 0]),
            "energy_targets": energy_targets,
            "environment": environment(jobs)}


@click.command("compression")
@click.option("--dataset", type=click.Choice(["digits", "mnist1d"]), default="digits", show_default=True)
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True, help="Seeds 0..N-1 per cell.")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True, help="Comma-separated methods.")
@click.option("--M", "Ms", default="2,4,8,16", show_default=True, help="Codebook sizes of the quantization methods.")
@click.option("--sparsity", "sparsity", default="0,0.5,0.75,0.9", show_default=True,
              help="Synapse sparsity levels of the pruning methods.")
@click.option("--scope", type=click.Choice(["layer", "neuron"]), default="layer", show_default=True,
              help="Codebook scope of the grid (layer adds one per-neuron CAT row).")
@click.option("--prune-m", type=click.IntRange(2), default=TARGET_M, show_default=True,
              help="M of the pruning curves and of the per-neuron row.")
@click.option("--neuron-row/--no-neuron-row", default=True, show_default=True,
              help="With --scope layer: add CAT at M=--prune-m with one codebook per neuron.")
@click.option("--allocation", type=click.Choice(["default", "global", "layer"]), default="default", show_default=True,
              help="How pruners spread sparsity: one ranking over all layers, or the level in every layer; "
                   "default: FSC global, magnitude and random per layer.")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Parallel processes (one torch thread each); results do not depend on it.")
@click.option("--preset", type=click.Choice(["full", "demo"]), default="full", show_default=True,
              help="Training epochs (spikefit.trainer.FitConfig.preset).")
@click.option("--epochs", type=click.IntRange(0), default=None, help="Override every stage's epochs (quick runs).")
@click.option("--train-limit", type=click.IntRange(1), default=None, help="First N training samples.")
@click.option("--test-limit", type=click.IntRange(1), default=None, help="First N test samples.")
@click.option("--timing-steps", type=click.IntRange(0), default=200, show_default=True,
              help="Alternating float/CAT steps timed for the speed figure (0: skip).")
@click.option("--energy-targets", default="published", show_default=True,
              help="Chips of the energy column and plot: 'published' (every target with a per-operation energy "
                   "constant), 'none', or comma-separated names.")
@click.option("--cache", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON-lines file of finished cells: reused on a rerun with the same options, appended to.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for compression_<dataset>.md/.json and the PNG plots.")
@click.option("--from-json", "from_json", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Render a saved report (compression_<dataset>.json) instead of running; other options ignored.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the tables.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def compression(dataset, seeds, methods, Ms, sparsity, scope, prune_m, neuron_row, allocation, jobs, preset, epochs,
                train_limit, test_limit, timing_steps, energy_targets, cache, out, from_json, as_json, quiet):
    """Accuracy of compression methods (CAT, k-means, uniform, ternary; FSC, magnitude, random pruning)
    over M and sparsity in one harness, mean ± std over seeds, with the targets checked."""
    if from_json is not None:
        try:
            report = json.loads(from_json.read_text(encoding="utf-8"))
            report["summary"], report["dataset"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BenchError(f"{str(from_json)!r} is not a report of 'spikefit bench compression'; pass the "
                             "compression_<dataset>.json it wrote") from None
    else:
        config = build_config(preset, epochs, train_limit, test_limit)
        log = None if quiet else (lambda msg: click.echo(msg, err=True))
        report = run_benchmark(dataset, _methods(methods), _ints(Ms, "--M"), _floats(sparsity, "--sparsity"), seeds,
                               scope, prune_m, jobs, config, timing_steps, cache, neuron_row, log,
                               None if allocation == "default" else allocation, _energy_targets(energy_targets))
        report["preset"] = preset
        report["command"] = _command(dataset, seeds, methods, Ms, sparsity, scope, prune_m, neuron_row, allocation,
                                     jobs, preset, epochs, train_limit, test_limit)
        if energy_targets != "published":
            report["command"] += f" --energy-targets {energy_targets}"
    if out is not None:
        write_outputs(report, out)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(markdown(report), nl=False)


def _energy_targets(text: str) -> list[str]:
    from .compression_energy import resolve_targets

    return resolve_targets(text)


def write_outputs(report: dict, out: Path) -> list[Path]:
    """compression_<dataset>.md and .json and the PNG plots in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ds = report["dataset"]
    files = plots(report, out)
    md, js = out / f"compression_{ds}.md", out / f"compression_{ds}.json"
    md.write_text(markdown(report), encoding="utf-8")
    report["files"] = [p.name for p in (md, js, *files)]
    js.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return [md, js, *files]


def _command(dataset, seeds, methods, Ms, sparsity, scope, prune_m, neuron_row, allocation, jobs, preset, epochs,
             train_limit, test_limit) -> str:
    parts = [f"spikefit bench compression --dataset {dataset} --seeds {seeds} --methods {methods} --M {Ms}",
             f"--sparsity {sparsity} --scope {scope} --prune-m {prune_m} --jobs {jobs} --preset {preset}"]
    if not neuron_row:
        parts.append("--no-neuron-row")
    if allocation != "default":
        parts.append(f"--allocation {allocation}")
    for flag, v in (("--epochs", epochs), ("--train-limit", train_limit), ("--test-limit", test_limit)):
        if v is not None:
            parts.append(f"{flag} {v}")
    return " ".join(parts)
