"""What a fit produced (:class:`FitResult`) and its reports: ``report.json`` and ``report.md``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import chipfit
from ..network import Network
from ..nn import SNN
from .config import FitConfig


@dataclass
class FitResult:
    """What a fit produced."""

    model: SNN                             # the trained torch model
    network: Network                       # its exact Network description (what model.nir holds)
    report: object                         # spikefit.fitcheck.FitReport of network against the target
    accuracy: dict[str, float]             # float, cat, pruned, fitted (torch) and deployed (emulator)
    history: list[dict]                    # one entry per stage: epochs, loss, accuracy, seconds
    config: FitConfig
    target: str
    dataset: str
    out: Path | None = None                # output directory (None: nothing written)
    agreement: float | None = None         # emulator prediction == torch prediction, fraction of test samples
    pruning: dict = field(default_factory=dict)  # per pruning stage: budgets that bound, usage after it
    deployed_on: str | None = None         # backend of the deployed accuracy (emulator-float for current inputs)
    user: dict | None = None               # a given model: its NIR convention, decays rounded to 1/4096, encoding

    def to_dict(self) -> dict:
        return {"target": self.target, "dataset": self.dataset, "accuracy": self.accuracy,
                "agreement": self.agreement, "deployed_on": self.deployed_on, "user_model": self.user,
                "ok": bool(self.report.ok),
                "history": self.history,
                "config": self.config.to_dict(), "out": None if self.out is None else str(self.out)}


def json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# -- reports ---------------------------------------------------------------------------------------

def codebooks(model: SNN) -> dict[str, dict]:
    """Per connection: scale, scope and the integer codebook rows (or the uniform grid)."""
    out = {}
    for s in model.synapses():
        q = s.quant
        if q is None:
            continue
        ints, quant = q.export(s.weight.detach())
        entry = {"scale": quant.scale, "weight_bits": quant.weight_bits, "scope": quant.scope}
        if quant.codebook is not None:
            rows = np.rint(quant.codebook / quant.scale).astype(int)
            entry["groups"] = int(rows.shape[0])
            entry["codebook"] = rows.tolist()
        else:
            used = np.where(s.mask.numpy() > 0, ints, 0)
            entry["grid"] = [int(used.min()), int(used.max())]
        out[s.name] = entry
    return out


def network_usage(network: Network) -> dict:
    """Neurons and existing (non-zero) synapses of the exported network, and its weight sparsity."""
    nnz = total = 0
    for c in network.connections():
        w = c.weight
        n = w.nnz if hasattr(w, "nnz") else int(np.count_nonzero(w))
        nnz += n
        total += int(np.prod(w.shape))
    return {"neurons": sum(p.size for p in network.populations()), "weights_nonzero": nnz,
            "weights_total": total, "sparsity": 1.0 - nnz / max(total, 1)}


def report_dict(result: FitResult, model: SNN, target=None) -> dict:
    from ..energy import fit_energy

    return {"target": result.target, "dataset": result.dataset, "ok": bool(result.report.ok),
            "accuracy": result.accuracy, "agreement": result.agreement, "deployed_on": result.deployed_on,
            "user_model": result.user,
            "usage": {**chipfit.usage(result.report), **network_usage(result.network)},
            "energy": None if target is None else fit_energy(result.network, target, result.report, result.dataset,
                                                                 result.config.test_limit),
            "pruning": result.pruning,
            "stages": result.history, "codebooks": codebooks(model),
            "fit": result.report.to_dict(), "config": result.config.to_dict()}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def compress_rows(config: FitConfig, acc: dict, row) -> list[str]:
    """The CAT and pruning rows in the order the fit ran them (``config.prune_order``)."""
    if config.prune_order == "before-cat":
        return [row("FSC pruned (float weights)", acc.get("pruned"), "- (no budget binds)"),
                row("CAT (quantized, hard) of the pruned network", acc.get("cat"))]
    return [row("CAT (quantized, hard)", acc.get("cat")),
            row("FSC pruned (quantized weights)", acc.get("pruned"), "- (no budget binds)")]


def report_markdown(result: FitResult, data: dict) -> str:
    acc = result.accuracy
    user = acc.get("user")

    def row(label: str, value, empty: str = "-") -> str:
        shown = _pct(value) if value is not None else empty
        if user is None:
            return f"| {label} | {shown} |"
        delta = "-" if value is None else f"{100 * (value - user):+.2f} pp"
        return f"| {label} | {shown} | {delta} |"

    deployed = {"emulator": "fixed-point emulator", "emulator-float": "float emulator: current inputs"}
    head = ["| stage | test accuracy |", "|---|---|"]
    if user is not None:
        head = ["| stage | test accuracy | vs the user's model |", "|---|---|---|", row("user model (as given, before fitting)", user)]
    lines = [f"# Fit of `{result.dataset}` to `{result.target}`", "",
             f"Verdict: **{'fits' if result.report.ok else 'does not fit'}**", "", *head,
             row("float (after warm-up)", acc.get("float")),
             *compress_rows(result.config, acc, row),
             row("fitted (torch)", acc.get("fitted")),
             row(f"deployed ({deployed.get(result.deployed_on, 'fixed-point emulator')})", acc.get("deployed")), ""]
    if result.agreement is not None:
        lines += [f"Emulator and torch predictions agree on {_pct(result.agreement)} of the test samples.", ""]
    if result.user is not None:
        u = result.user
        inputs = "frames as given" if u["layout"] == "sequence" else f"static inputs as {u['encoding']}"
        lines += [f"The given model ({u['convention'] or 'spikefit'} convention, input {tuple(u['input_shape'])}, "
                  f"{inputs}) was fine-tuned from its own weights.", ""]
        lines += [f"- `{d['node']}`: {d['parameter']} {d['was']:.10g} rounded to {d['now']:.10g} (a multiple of 1/4096, "
                  "the chips' 12-bit decays)" for d in u["snapped"]]
        lines += [""] if u["snapped"] else []
    use = data["usage"]
    lines += [f"Neurons {use['neurons']}; non-zero weights {use['weights_nonzero']} of {use['weights_total']} "
              f"({100 * use['sparsity']:.1f} % zero: pruned or absent).", "",
              "## Constraints", "", "```", result.report.table(), "```", ""]
    from ..energy import markdown as energy_markdown

    lines += energy_markdown(data.get("energy")) + ["## Codebooks", ""]
    for name, cb in data["codebooks"].items():
        if "codebook" in cb:
            rows = cb["codebook"]
            shown = "; ".join(str(r) for r in rows[:4]) + (f"; ... ({len(rows)} groups)" if len(rows) > 4 else "")
            lines.append(f"- `{name}`: scope {cb['scope']}, scale {cb['scale']:.6g}, {cb['weight_bits']}-bit "
                         f"integers: {shown}")
        else:
            lines.append(f"- `{name}`: uniform {cb['weight_bits']}-bit grid, scale {cb['scale']:.6g}, "
                         f"integers in {cb['grid']}")
    lines += ["", "## Stages", "", "| stage | epochs | final loss | test accuracy | seconds |", "|---|---|---|---|---|"]
    for h in result.history:
        loss = "-" if h.get("loss") is None else f"{h['loss']:.3f}"
        lines.append(f"| {h['stage']} | {h['epochs']} | {loss} | {_pct(h.get('accuracy'))} | {h['seconds']:.1f} |")
    return "\n".join(lines) + "\n"
