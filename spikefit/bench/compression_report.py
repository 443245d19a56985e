"""Tables and plots of a ``spikefit bench compression`` report (:mod:`.compression_grid` builds it)."""
from __future__ import annotations

import json
from pathlib import Path

from .compression_grid import PRUNERS, QUANTIZERS, find

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
        if any(r["method"] == "dense" for r in summary):
            cells = [_ms(find(summary, "cat" if s == 0 else "dense", pm, s, scope)) for s in sps]
            lines.append("| dense, equal synapses (narrower) | " + " | ".join(cells) + " |")
        lines += ["", "Sparsity 0 is the dense CAT run (the same training for every pruner). \"dense, equal synapses\" "
                  "is CAT on the dense network whose hidden width keeps as many synapses as the pruned ones "
                  "(the capacity reference).", ""]
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
              "| method | M | sparsity | scope | accuracy % | seeds | measured sparsity | synapses | max distinct | "
              "step ratio (in grid) | s per run |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary:
        ratio = "-" if r["step_ratio_in_grid"] is None else f"{r['step_ratio_in_grid']:.2f}"
        syn = "-" if r.get("synapses") is None else f"{r['synapses']:,.0f}"
        lines.append(f"| {r['method']} | {r['M'] if r['M'] is not None else '-'} | {r['sparsity']:g} | "
                     f"{r['scope']} | {_ms(r)} | {r['seeds']} | {100 * r['measured_sparsity']:.1f} % | {syn} | "
                     f"{r['max_distinct'] if r['max_distinct'] is not None else '-'} | {ratio} | "
                     f"{r['seconds_mean']:.1f} |")
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    env = report["environment"]
    hidden = (report.get("config") or {}).get("hidden")
    net = f"hidden layers {' x '.join(map(str, hidden))}" if hidden else "the dataset's default network"
    if (report.get("config") or {}).get("precision", "fp32") != "fp32":
        net += ", bfloat16 training steps"
    head = [f"# Compression benchmark: {report['dataset']}, {net}", "",
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

    summary, scope, ds = report["summary"], report["scope"], stem(report)
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
    paths.append(_finish(fig, ax, out / f"{ds}_accuracy_vs_M.png"))

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
        paths.append(_finish(fig, ax, out / f"{ds}_accuracy_vs_sparsity.png"))
    paths += synapse_plots(report, out)
    from .compression_energy import plot as energy_plot

    energy = energy_plot(report, out)
    return paths + ([energy] if energy else [])



def _finish(fig, ax, path: Path) -> Path:
    """Grid, legend and layout of a one-panel plot, saved as ``path`` (100 dpi) and closed."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def stem(report: dict) -> str:
    """The report's file stem: the dataset, with ``-h<widths>`` when ``--hidden`` changed its network
    (``mnist1d-h1024``) and ``-bf16`` when its steps ran in bfloat16."""
    config = report.get("config") or {}
    hidden = config.get("hidden")
    return (report["dataset"] + (f"-h{'x'.join(str(h) for h in hidden)}" if hidden else "")
            + ("-bf16" if config.get("precision", "fp32") != "fp32" else ""))


FAMILIES = {"magnitude": ("magnitude", "gmp", "gmp-layer"), "saliency": ("snip", "fsc-point", "fsc-gmp"),
            "rewiring": ("rewire", "rigl", "fsc-regrow", "random")}   # every plot also shows FSC and the dense reference


def synapse_plots(report: dict, out: Path) -> list[Path]:
    """One PNG per pruning family: accuracy vs synapses kept, with FSC and the dense network of equal
    synapse count (what is lost to capacity) as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, scope, ds, pm = report["summary"], report["scope"], stem(report), report["prune_m"]
    dense0 = find(summary, "cat", pm, 0.0, scope)
    paths = []
    for family, members in FAMILIES.items():
        shown = [m for m in ("fsc", *members, "dense") if any(r["method"] == m for r in summary)]
        if not any(m in members for m in shown) or not dense0 or dense0.get("synapses") is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in shown:
            rows = [dense0] + sorted((r for r in summary if r["method"] == m and r["scope"] == scope
                                      and r["M"] == pm and r["sparsity"] > 0), key=lambda r: r["sparsity"])
            rows = [r for r in rows if r.get("synapses") is not None]
            ax.errorbar([r["synapses"] for r in rows], [100 * r["accuracy_mean"] for r in rows],
                        [100 * r["accuracy_std"] for r in rows], marker="s" if m == "dense" else "o", capsize=3,
                        ls="--" if m == "dense" else "-", color="k" if m == "dense" else None,
                        label="dense, equal synapses" if m == "dense" else m)
        ax.set_xscale("log")
        ax.set_xlabel("synapses kept")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{ds}: {family} pruning vs capacity (CAT M={pm})")
        paths.append(_finish(fig, ax, out / f"{ds}_synapses_{family}.png"))
    return paths


def write_outputs(report: dict, out: Path) -> list[Path]:
    """compression_<stem>.md and .json and the PNG plots in ``out`` (:func:`stem`)."""
    out.mkdir(parents=True, exist_ok=True)
    ds = stem(report)
    files = plots(report, out)
    md, js = out / f"compression_{ds}.md", out / f"compression_{ds}.json"
    md.write_text(markdown(report), encoding="utf-8")
    report["files"] = [p.name for p in (md, js, *files)]
    js.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return [md, js, *files]

