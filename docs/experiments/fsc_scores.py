"""FSC's synapse scores: the per-synapse estimate, a per-connection shrinkage of it, and labels drawn
from the model: an experiment.

An experiment, not part of the package. FSC scores a synapse by ``F_ij = w_ij^2 * h_ij`` with
``h_ij = (1/2N) sum_n (dL_n/dw_ij)^2`` (docs/method.md, section 4), an estimate from the 1,024
Fisher samples. The variants change only that score; the neuron scores, the rounds, the averaging
over training and the rest of the harness stay as they are:

* ``data``: F_ij as estimated (labels from the data; ``FitConfig(fisher_shrinkage=0.0)``, the package's
  default when the rows ran);
* ``shrink``: ``w_ij^2 * hbar``, ``hbar`` the mean of ``h`` over the connection's unpruned synapses
  (within a connection: magnitude; across connections and against whole neurons: Fisher units);
* ``blend:L``: ``w_ij^2 * (L * h_ij + (1 - L) * hbar)``, a shrinkage of each synapse's estimate
  towards its connection's mean (``blend`` is ``blend:0.5``, the same arithmetic as the package's
  default since these rows, ``FitConfig(fisher_shrinkage=0.5)``; ``blend:L`` is ``fisher_shrinkage = 1 - L``);
* ``true``: the labels of the Fisher samples drawn from the model's own output distribution
  (``softmax`` of the scaled counts, one draw per sample, seeded): the Fisher information proper
  instead of the empirical Fisher (Kunstner et al. 2019).

Every row is one ``spikefit.baselines.run_method`` run (CAT M = 4 per layer, the grid's schedule and
CAT mode, ``fisher_shrinkage=0.0``) with ``spikefit.fsc.fisher_scores`` wrapped for the variant;
``gmp`` and ``snip`` rows are the grid's baselines in the same run. A plan is a JSON list of groups ``{"m": "fsc", "v": "blend",
"ds": "mnist1d", "sp": [0.75, 0.9], "seeds": 3}``. Run: ``python docs/experiments/fsc_scores.py
PLAN.json JOBS``; rows go to ``$OUT/fsc_scores.json`` (``OUT`` defaults to /tmp) and the summary
prints at the end; ``... --report ROWS.json`` prints the summary of saved rows.
"""
import json
import multiprocessing as mp
import os
import statistics as st
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def install(variant: str) -> None:
    """Wrap ``spikefit.fsc.fisher_scores`` for ``variant`` (a worker runs many rows: the package's
    function is kept and rewrapped for every row)."""
    import numpy as np
    import torch

    import spikefit.fsc as fsc
    from spikefit.nn import spike_counts

    orig = fsc.__dict__.setdefault("_package_fisher_scores", fsc.fisher_scores)
    fsc.fisher_scores = orig
    if variant == "true":
        def model_labels(model, x, y, logit_scale, batch_size=256, device=None, shrinkage=0.0):
            g = torch.Generator().manual_seed(1234 + int(x.shape[1]))
            home = next(model.parameters()).device
            ys = []
            with torch.no_grad():
                for i in range(0, x.shape[1], batch_size):
                    p = torch.softmax(spike_counts(model(x[:, i:i + batch_size].to(home))).float().cpu() * logit_scale, -1)
                    ys.append(torch.multinomial(p, 1, generator=g)[:, 0])
            return orig(model, x, torch.cat(ys).to(y.device), logit_scale, batch_size, device, 0.0)
        fsc.fisher_scores = model_labels
    elif variant != "data":
        lam = 0.0 if variant == "shrink" else 0.5 if variant == "blend" else float(variant.split(":")[1])

        def shrunk(model, x, y, logit_scale, batch_size=256, device=None, shrinkage=0.0):
            neuron, synapse = orig(model, x, y, logit_scale, batch_size, device, 0.0)
            syns = {s.name: s for s in model.synapses()}
            out = {}
            for k, F in synapse.items():
                w2 = syns[k].effective_weight().detach().double().cpu().numpy() ** 2
                live = np.isfinite(F) & (w2 > 0)
                h = np.where(live, F / np.where(w2 > 0, w2, 1), 0.0)
                hbar = h[live].mean() if live.any() else 0.0
                out[k] = np.where(np.isfinite(F), w2 * (lam * h + (1 - lam) * hbar), -np.inf)
            return neuron, out
        fsc.fisher_scores = shrunk


def job(args):
    method, variant, ds, sp, seed = args
    install(variant)
    from spikefit.baselines import run_method
    from spikefit.training.config import FitConfig

    t = time.time()
    r = run_method(method, ds, 4, sp, seed, FitConfig(device="cpu", fisher_shrinkage=0.0), threads=1)
    return {"method": method, "variant": variant, "ds": ds, "sp": sp, "seed": seed, "acc": r["accuracy"],
            "seconds": round(time.time() - t, 1)}


def tasks(plan):
    return [(g["m"], g.get("v", "data"), g["ds"], sp, s) for g in plan for sp in g["sp"]
            for s in range(g.get("seeds", 3))]


def report(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["ds"], r["sp"], r["method"], r["variant"]), []).append((r["seed"], 100 * r["acc"]))
    for key, v in sorted(groups.items()):
        accs = [a for _, a in sorted(v)]
        sd = st.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{key[0]:13s} {key[1]:4.2f} {key[2]:5s} {key[3]:10s} {st.mean(accs):6.2f} ± {sd:4.2f}  "
              f"seeds {[round(a, 1) for a in accs]}")


def main():
    if "--report" in sys.argv:
        report(json.load(open(sys.argv[sys.argv.index("--report") + 1])))
        return
    plan, jobs = json.load(open(sys.argv[1])), int(sys.argv[2])
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
        rows = list(ex.map(job, tasks(plan)))
    path = os.path.join(os.environ.get("OUT", "/tmp"), "fsc_scores.json")
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    report(rows)


if __name__ == "__main__":
    main()
