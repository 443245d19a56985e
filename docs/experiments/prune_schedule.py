"""How FSC's pruning rounds share the epochs after CAT: a schedule experiment.

An experiment, not part of the package. Every row trains one method of the compression harness
(``spikefit.baselines.run_method``: same network, data, epochs and seeds as ``spikefit bench
compression``) with one schedule of the epochs after CAT, given as ``FitConfig`` fields:

* ``3x3``: ``prune_rounds=3, prune_epochs=3, finetune_epochs=5`` (the defaults);
* ``5x2``: 5 rounds of 2 recovery epochs, 4 fine-tuning epochs;
* ``9x1``: 9 rounds of 1 recovery epoch, 5 fine-tuning epochs;
* ``9x1-adam``: ``9x1`` with one Adam for all the rounds (the engine starts a fresh one per stage);
* ``9x1-span``: ``9x1-adam`` with one cosine decay of ``prune_lr`` over all the rounds' epochs (the
  engine decays it within each stage: a round of one epoch trains at ``prune_lr`` throughout);
* ``pf-3x3``, ``pf-9x1``: the same schedules with the pruning rounds before CAT (warm-up, rounds on
  the float weights, CAT on the pruned network, fine-tuning) instead of after it.

The order is ``FitConfig.prune_order`` (``before-cat``, the default since these rows, for the
``pf-`` schedules; ``after-cat`` for the others). The committed rows ran at commit 63c518f, where
the order was a patch of this script and fine-tuning still learned the codebook values; on later
code (fixed values in fine-tuning) the cells differ. Every row pins CAT's gradient mode
(``cat_mode="hard"``) and FSC's unshrunk scores (``fisher_shrinkage=0.0``), the defaults when the
rows ran.

Each schedule trains 14 epochs after CAT. Round ``r`` of ``R`` prunes to ``1 - (1 - s)^(r/R)`` of
the synapses: more rounds, smaller cuts. SNIP runs in the same rounds, so it gets the same schedule.

A plan is a JSON list of groups ``{"ds": ..., "hidden": [1024] or null, "sp": [0.75, 0.9],
"seeds": 3, "methods": ["fsc", "snip"], "schedules": ["3x3", "9x1"]}``. Run:
``python docs/experiments/prune_schedule.py PLAN.json JOBS``. Rows go to ``$OUT/prune_schedule.json``
(``OUT`` defaults to /tmp) and the summary (mean ± sample std over seeds, the paired difference to
the group's first schedule) prints at the end; ``... PLAN.json JOBS --report ROWS.json`` prints the
summary of saved rows without training.
"""
import json
import os
import statistics as st
import sys
import time
from concurrent.futures import ProcessPoolExecutor

SCHEDULES = {
    "3x3": {"prune_rounds": 3, "prune_epochs": 3, "finetune_epochs": 5, "prune_order": "after-cat"},
    "5x2": {"prune_rounds": 5, "prune_epochs": 2, "finetune_epochs": 4, "prune_order": "after-cat"},
    "9x1": {"prune_rounds": 9, "prune_epochs": 1, "finetune_epochs": 5, "prune_order": "after-cat"},
    "9x1-adam": {"prune_rounds": 9, "prune_epochs": 1, "finetune_epochs": 5, "prune_order": "after-cat"},
    "9x1-span": {"prune_rounds": 9, "prune_epochs": 1, "finetune_epochs": 5, "prune_order": "after-cat"},
    "pf-3x3": {"prune_rounds": 3, "prune_epochs": 3, "finetune_epochs": 5, "prune_order": "before-cat"},
    "pf-9x1": {"prune_rounds": 9, "prune_epochs": 1, "finetune_epochs": 5, "prune_order": "before-cat"},
}


def patch(schedule):
    """``-adam``: a pruning round after the first keeps the optimizer of the round before it;
    ``-span``: besides, the learning rate of the rounds decays along one cosine over all of them."""
    from spikefit.training import distributed
    from spikefit.training import engine as E
    from spikefit.training.loop import set_lr, stage_lr

    E.Engine.begin_stage = getattr(E.Engine, "_begin_stage", E.Engine.begin_stage)   # a worker runs many rows
    E.Engine.run_epoch = getattr(E.Engine, "_run_epoch", E.Engine.run_epoch)
    E.Engine._begin_stage, E.Engine._run_epoch = E.Engine.begin_stage, E.Engine.run_epoch
    if not schedule.endswith(("-adam", "-span")):
        return
    begin, run_epoch = E.Engine.begin_stage, E.Engine.run_epoch

    def rounds(engine):
        return [s for s in engine.plan if s.name.startswith("prune")]

    def begin_stage(self, lr):
        stage = self.plan[self.state.stage]
        if stage.name.startswith("prune") and stage is not rounds(self)[0] and self.opt is not None:
            self.model.to(self.device)
            self.step_model = distributed.wrap(self.model, self.world, self.device)
            return
        begin(self, lr)

    def epoch(self, stage, ep, epochs):
        if schedule.endswith("-span") and stage.name.startswith("prune"):
            rs = rounds(self)
            done = sum(s.epochs for s in rs[:rs.index(stage)])
            lr = stage_lr(stage.lr, done + ep, sum(s.epochs for s in rs))
            orig = E.set_lr
            E.set_lr = lambda opt, _lr: set_lr(opt, lr)      # run_epoch's own setting, replaced
            try:
                return run_epoch(self, stage, ep, epochs)
            finally:
                E.set_lr = orig
        return run_epoch(self, stage, ep, epochs)

    E.Engine.begin_stage, E.Engine.run_epoch = begin_stage, epoch


def job(args):
    method, schedule, ds, hidden, sp, seed = args
    from spikefit.baselines import run_method
    from spikefit.training.config import FitConfig

    patch(schedule)
    cfg = FitConfig(hidden=hidden, device="cpu", cat_mode="hard", fisher_shrinkage=0.0, **SCHEDULES[schedule])
    t = time.time()
    r = run_method(method, ds, 4, sp, seed, cfg, threads=1)
    return {"method": method, "schedule": schedule, "ds": ds, "hidden": hidden, "sp": sp, "seed": seed,
            "acc": r["accuracy"], "synapses": r["synapses"], "s": round(time.time() - t, 1)}


def tasks(groups):
    out = []
    for g in groups:
        hidden = list(g["hidden"]) if g.get("hidden") else None
        out += [(m, sch, g["ds"], hidden, sp, s) for m in g["methods"] for sch in g["schedules"]
                for sp in g["sp"] for s in range(g["seeds"])]
    return sorted(out, key=lambda t: -(t[3] is not None))   # the wide network's long runs first


def report(rows, groups):
    for g in groups:
        hidden = list(g["hidden"]) if g.get("hidden") else None
        for sp in g["sp"]:
            print(f"== {g['ds']} hidden {hidden or 'default'} sparsity {sp}")
            for m in g["methods"]:
                sel = [r for r in rows if r["ds"] == g["ds"] and r["hidden"] == hidden and r["sp"] == sp
                       and r["method"] == m]
                base = {r["seed"]: r["acc"] for r in sel if r["schedule"] == g["schedules"][0]}
                for sch in g["schedules"]:
                    a = sorted((r for r in sel if r["schedule"] == sch), key=lambda r: r["seed"])
                    if not a:
                        continue
                    acc = [100 * r["acc"] for r in a]
                    d = [100 * (r["acc"] - base[r["seed"]]) for r in a if r["seed"] in base]
                    print(f"  {m:8s} {sch}: {st.mean(acc):6.2f} ± {st.stdev(acc) if len(acc) > 1 else 0:4.2f}  "
                          f"vs {g['schedules'][0]} {st.mean(d):+6.2f}  seeds {[round(x, 1) for x in acc]}", flush=True)


if __name__ == "__main__":
    groups = json.load(open(sys.argv[1]))
    if len(sys.argv) > 4 and sys.argv[3] == "--report":
        rows = json.load(open(sys.argv[4]))
    else:
        rows = []
        with ProcessPoolExecutor(int(sys.argv[2])) as ex:
            for r in ex.map(job, tasks(groups)):
                print(json.dumps(r), flush=True)
                rows.append(r)
        json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "prune_schedule.json"), "w"), indent=0)
    report(rows, groups)
