"""CAT variants tried against k-means QAT on MNIST-1D (M = 4 per layer, 80-256-10, 8 seeds).

An experiment, not part of the package: it swaps the k-means QAT quantizer of the compression harness
(:mod:`spikefit.compress.quantizers_qat`) for a subclass with one change each, and trains every
variant with ``spikefit.baselines.run_method`` (same network, data, epochs and seeds as
``spikefit bench compression``). Variants:

* ``kq``: k-means QAT as the harness runs it (the reference); ``cat-lloyd`` / ``cat-hard``: CAT with
  the Lloyd codebook and with the gradient-learned one; ``float``: no quantization;
* ``kq-fisher``: Lloyd steps weighted by each weight's squared gradient (an EMA; Hessian-weighted
  k-means, Choi et al. 2017);
* ``kq-damp.1``: oscillation dampening, a pull of the latent weight towards its level of strength
  0.1 relative to the gradient's RMS (Nagel et al. 2022);
* ``kq-freeze05``: oscillation freezing, a weight whose level flips back and forth more often than
  an EMA frequency of 0.05 keeps its level (Nagel et al. 2022);
* ``kq-lr1e-3``: the compression stage at learning rate 1e-3 instead of 3e-3;
* ``fsc``, ``fsc-point``, ``gmp`` and the same with ``/hard``: the pruners after CAT in Lloyd mode
  and with ``FitConfig(cat_mode="hard")`` (the gradient-learned codebook).

Every run uses ``FitConfig(cat_mode="lloyd")`` unless its variant names another mode, FSC's unshrunk
scores (``fisher_shrinkage=0.0``) and the pruning schedule of its time (``SCHEDULE``: 3 rounds of 3
epochs after CAT). The committed rows ran
before fine-tuning fixed the codebook values (commit 58be2fe); on later code the cells differ.

Every row also records the fraction of exactly zero weights of the trained network (absent
synapses: the zero level and pruned ones).

Run: ``python docs/experiments/cat_variants.py PLAN.json JOBS``; the summary (mean, sample std,
paired difference to the first name of each group, wins) prints at the end and the rows go to
``$OUT/sweep.json`` (``OUT`` defaults to /tmp). ``... PLAN.json JOBS --report ROWS.json`` prints the
summary of saved rows without training.
"""
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

VARIANT = {}


def install(v):
    import spikefit.compress.stages as CS
    import spikefit.baselines as B
    from spikefit.compress.quantizers_qat import KMeansQATQuantizer
    from spikefit.quantizers import CodebookQuantizer

    class Damp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w, q, lam):
            ctx.save_for_backward(w, q)
            ctx.lam = lam
            return w.view_as(w)

        @staticmethod
        def backward(ctx, g):
            w, q = ctx.saved_tensors
            d = w - q
            rg = g.pow(2).mean().sqrt()
            rd = d.pow(2).mean().sqrt().clamp_min(1e-12)
            return g + ctx.lam * rg * d / rd, None, None

    class KQ(KMeansQATQuantizer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.fisher = v.get("fisher", False)
            self.damp = v.get("damp", 0.0)
            self.freeze_th = v.get("freeze", 0.0)
            self.imp = None
            self.prev = None
            self.dirn = None
            self.freq = None
            self.frozen = None
            self.fidx = None

        @torch.no_grad()
        def lloyd(self, w):
            if not self.fisher or self.imp is None:
                return super().lloyd(w)
            rows = w.reshape(w.shape[0], -1)
            G, M = self.codebook.centers.shape
            c = self.codebook.centers.data
            imp = self.imp + 1e-3 * self.imp.mean() + 1e-30
            for _ in range(self.iters):
                lv = c[self.groups]
                lv = torch.cat([lv, torch.zeros_like(lv[:, :1])], 1)
                idx = (rows[:, :, None] - lv[:, None, :]).abs().argmin(-1)
                flat = (self.groups[:, None] * (M + 1) + idx).reshape(-1)
                bins = torch.zeros(G * (M + 1))
                sums = bins.index_add(0, flat, (imp * rows).reshape(-1)).reshape(G, M + 1)[:, :M]
                cnt = bins.index_add(0, flat, imp.reshape(-1)).reshape(G, M + 1)[:, :M]
                c = torch.where(cnt > 0, sums / cnt.clamp_min(1e-30), c)
            self.codebook.centers.data.copy_(c)

        def forward(self, w):
            if not (self.training and self.recluster):
                return CodebookQuantizer.forward(self, w)
            self.lloyd(w.detach())
            rows = w.reshape(w.shape[0], -1)
            lv = self._group_levels()[0]
            idx = self._nearest(rows.detach(), lv.detach()[None], True)
            if self.freeze_th:
                if self.prev is None:
                    self.prev = idx.clone()
                    self.dirn = torch.zeros_like(rows)
                    self.freq = torch.zeros_like(rows)
                    self.frozen = torch.zeros_like(rows, dtype=torch.bool)
                    self.fidx = idx.clone()
                val = lv.detach()
                ch = torch.sign(val[idx] - val[self.prev]) * (idx != self.prev)
                osc = (ch != 0) & (self.dirn != 0) & (ch != self.dirn)
                self.dirn = torch.where(ch != 0, ch, self.dirn)
                self.freq.mul_(0.99).add_(0.01 * osc.float())
                newly = (self.freq > self.freeze_th) & ~self.frozen
                self.fidx = torch.where(newly, idx, self.fidx)
                self.frozen |= newly
                idx = torch.where(self.frozen, self.fidx, idx)
                self.prev = idx.clone()
            q = lv[idx]
            if self.damp:
                rows = Damp.apply(rows, q.detach(), self.damp)
            ste = rows - rows.detach()
            if self.freeze_th:
                ste = ste * (~self.frozen)
            q = q + ste
            if self.fisher:
                def hook(g):
                    g2 = g.detach() ** 2
                    self.imp = g2 if self.imp is None else 0.99 * self.imp + 0.01 * g2
                q.register_hook(hook)
            return q.reshape(w.shape)

    CS.KMeansQATQuantizer = KQ
    orig = getattr(B, "_unpatched_plan", B.plan)    # a worker runs many variants: wrap the original once
    B._unpatched_plan = orig

    def plan(method, M, sparsity, config, **kw):
        st = orig(method, M, sparsity, config, **kw)
        if "lr" in v:
            for s in st:
                if s.name == "compress":
                    s.lr = v["lr"]
        return st
    B.plan = plan


SCHEDULE = {"prune_rounds": 3, "prune_epochs": 3, "prune_order": "after-cat"}


def job(args):
    name, v, seed, ds, hidden, sp = args
    install(v)
    from spikefit import baselines as B
    from spikefit.training.config import FitConfig
    cfg = FitConfig(hidden=hidden, device="cpu", cat_mode=v.get("cat_mode", "lloyd"), fisher_shrinkage=0.0,
                    **SCHEDULE)
    t = time.time()
    r = B.run_method(v.get("method", "kmeans-qat"), ds, None if v.get("method") == "float" else 4, sp, seed, cfg,
                     threads=1, keep_network=True)
    weights = [node.dense_weight() if hasattr(node, "dense_weight") else node.weight
               for node in r["network"].nodes.values() if getattr(node, "weight", None) is not None]
    zero = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    return {"name": name, "ds": ds, "hidden": hidden, "sp": sp, "seed": seed, "acc": r["accuracy"],
            "float": r["float_accuracy"], "zero_weights": zero, "s": time.time() - t}


VARIANTS = {
    "float": {"method": "float"},
    "cat-lloyd": {"method": "cat-lloyd"},
    "kq": {},
    "kq-fisher": {"fisher": True},
    "kq-damp.1": {"damp": 0.1},
    "kq-damp.5": {"damp": 0.5},
    "kq-freeze": {"freeze": 0.02},
    "kq-lr1e-3": {"lr": 1e-3},
    "kq-fisher-damp": {"fisher": True, "damp": 0.1},
    "kq-freeze05": {"freeze": 0.05},
    "kq-fisher-freeze": {"fisher": True, "freeze": 0.02},
    "cat-hard": {"method": "cat-hard"},
    # CAT's mode under the pruners (FitConfig.cat_mode: the CAT stage of fsc, gmp, ... runs in it)
    "fsc-point": {"method": "fsc-point"}, "fsc-point/hard": {"method": "fsc-point", "cat_mode": "hard"},
    "fsc": {"method": "fsc"}, "fsc/hard": {"method": "fsc", "cat_mode": "hard"},
    "gmp": {"method": "gmp"}, "gmp/hard": {"method": "gmp", "cat_mode": "hard"},
}

def report(out, names):
    import statistics as st
    base = {r["seed"]: r["acc"] for r in out if r["name"] == names[0]}
    for n in names:
        a = [r["acc"] for r in out if r["name"] == n]
        d = [r["acc"] - base[r["seed"]] for r in out if r["name"] == n and r["seed"] in base]
        z = [r["zero_weights"] for r in out if r["name"] == n and "zero_weights" in r]
        if a:
            print(f"{n:16s} mean {100*st.mean(a):.2f} sd {100*st.stdev(a) if len(a) > 1 else 0:.2f}  vs {names[0]} "
                  f"{100*st.mean(d):+.2f} wins {sum(x > 0 for x in d)}/{len(d)}  {[round(100*x,1) for x in a]}  "
                  + (f"zero weights {100*st.mean(z):.1f} %" if z else ""), flush=True)


if __name__ == "__main__":
    groups = json.load(open(sys.argv[1]))
    jobs = int(sys.argv[2])
    tasks = []
    for g in groups:
        hidden = tuple(g["hidden"]) if g.get("hidden") else None
        tasks += [(n, VARIANTS[n], s, g["ds"], hidden, g.get("sp", 0.0)) for n in g["names"] for s in range(g["seeds"])]
    tasks.sort(key=lambda t: -(t[3] != "digits") - 3 * (t[4] is not None))   # long cells first
    if len(sys.argv) > 4 and sys.argv[3] == "--report":     # the summary of saved rows, no training
        out = json.load(open(sys.argv[4]))
    else:
        out = []
        with ProcessPoolExecutor(jobs) as ex:
            for r in ex.map(job, tasks):
                print(json.dumps(r), flush=True)
                out.append(r)
        json.dump(out, open(os.path.join(os.environ.get("OUT", "/tmp"), "sweep.json"), "w"))
    for g in groups:
        print("==", g)
        report([r for r in out if r["ds"] == g["ds"] and r["sp"] == g.get("sp", 0.0)
                and (tuple(r["hidden"]) if r["hidden"] else None) == (tuple(g["hidden"]) if g.get("hidden") else None)],
               g["names"])
