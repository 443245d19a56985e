"""Energy per inference of every ``bench compression`` cell on each chip (:mod:`spikefit.energy`).

A cell's trained network runs on the fixed-point emulator over the same test spikes its accuracy was
measured on; the chip-independent counts (synaptic operations, neuron updates, spikes) and, per chip,
the spike messages between cores under that chip's packing are stored with the cell (``activity``).
Energies are computed from them and the chips' ``[energy]`` constants when the report is built, so a
corrected constant needs no retraining.
"""
from __future__ import annotations

import statistics
from pathlib import Path

DEFAULT = "published"   # --energy-targets default: every registered target with a per-operation constant


def resolve_targets(text: str | None) -> list[str]:
    """Target names from ``--energy-targets``: "published" (default), "none", or a comma-separated list."""
    from ..energy import has_constants
    from ..plugins import get_target, list_targets

    text = (text or DEFAULT).strip()
    if text == "none":
        return []
    if text == DEFAULT:
        return [s.name for s in list_targets() if has_constants(s)]
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        get_target(n)  # an unknown name fails here with the registry's one-line error
    return names


def cell_activity(network, dataset: str, samples: int | None, targets: list[str]) -> dict:
    """Per-inference counts of ``network`` on the emulator, with spike messages per target."""
    from ..energy import activity
    from ..errors import SpikefitError
    from ..plugins import get_target
    from ..runner import run
    from ..fitcheck import verify

    res = run(network, "emulator", dataset=dataset, samples=samples)
    act = activity(network, res).to_dict()
    act.pop("messages")
    act["messages"] = {}
    for t in targets:
        try:
            act["messages"][t] = activity(network, res, verify(network, get_target(t))).messages
        except SpikefitError:  # a network verify cannot place on this chip: its messages stay uncounted
            act["messages"][t] = None
    return act


def energy_uj(act: dict, target) -> float | None:
    """Energy per inference (uJ) of a stored cell activity on ``target`` (a TargetSpec)."""
    from ..energy import Activity, estimate

    fields = {k: v for k, v in act.items() if k != "messages"}
    return estimate(Activity(**fields, messages=act["messages"].get(target.name)), target).energy_uj


def add_energy(summary: list[dict], results: list[dict], targets: list[str]) -> None:
    """Each summary row gains ``synops_mean`` and ``energy_uj`` {target: mean over seeds (None: no figure)}."""
    from ..plugins import get_target

    specs = {t: get_target(t) for t in targets}
    for row in summary:
        rs = [r for r in results if (r["method"], r["M"], r["sparsity"], r["scope"]) ==
              (row["method"], row["M"], row["sparsity"], row["scope"]) and r.get("activity")]
        row["synops_mean"] = statistics.fmean(r["activity"]["synops"] for r in rs) if rs else None
        row["energy_uj"] = {}
        for t, spec in specs.items():
            vals = [energy_uj(r["activity"], spec) for r in rs]
            row["energy_uj"][t] = statistics.fmean(vals) if vals and None not in vals else None


def table(report: dict, label) -> list[str]:
    """Markdown: accuracy, synaptic operations and energy per inference on each chip, every group."""
    targets = report.get("energy_targets") or []
    if not targets:
        return []
    lines = ["### Energy per inference (uJ, mean over seeds; `spikefit.energy`, docs/energy.md)", "",
             "| method | M | sparsity | accuracy % | synops | " + " | ".join(targets) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(targets)]
    for r in report["summary"]:
        e = r.get("energy_uj") or {}
        syn = "-" if r.get("synops_mean") is None else f"{r['synops_mean']:,.0f}"
        cells = ["-" if e.get(t) is None else f"{e[t]:.4g}" for t in targets]
        lines.append(f"| {label(r['method'], r['scope'], report['scope'])} | "
                     f"{r['M'] if r['M'] is not None else '-'} | {r['sparsity']:g} | {100 * r['accuracy_mean']:.1f} | "
                     f"{syn} | " + " | ".join(cells) + " |")
    lines += ["", "Energy = synaptic operations x synop_pj + neuron updates x neuron_update_pj + spike messages "
              "x spike_pj (+ static power x latency) with each chip's published constants (`spikefit targets show "
              "NAME`); the synaptic operations are counted on the fixed-point emulator over the test split.", ""]
    return lines


def plot(report: dict, out: Path) -> Path | None:
    """``<dataset>_accuracy_vs_energy.png``: one panel per chip, accuracy against energy per inference;
    quantizers are labelled with M, pruners with their sparsity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in report.get("energy_targets") or []
               if any((r.get("energy_uj") or {}).get(t) is not None for r in report["summary"])]
    if not targets:
        return None
    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 4), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in report["summary"]))
    colors = {m: f"C{k % 10}" for k, m in enumerate(methods)}
    for ax, t in zip(axes[0], targets):
        for r in report["summary"]:
            e = (r.get("energy_uj") or {}).get(t)
            if e is None:
                continue
            marker = "s" if r["scope"] == "neuron" else "o"
            ax.errorbar([e], [100 * r["accuracy_mean"]], [100 * r["accuracy_std"]], marker=marker, capsize=2,
                        color=colors[r["method"]], ls="none")
            tag = f"M{r['M']}" if r["M"] is not None else ""
            tag += f" {100 * r['sparsity']:g}%" if r["sparsity"] else ""
            if tag:
                ax.annotate(tag.strip(), (e, 100 * r["accuracy_mean"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel(f"energy per inference on {t} (uJ)")
        ax.set_title(t)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    handles = [plt.Line2D([], [], color=colors[m], marker="o", ls="none", label=m) for m in methods]
    axes[0][-1].legend(handles=handles, fontsize=7)
    from .compression_report import stem

    fig.suptitle(f"{stem(report)}: accuracy vs energy per inference")
    fig.tight_layout()
    path = out / f"{stem(report)}_accuracy_vs_energy.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
