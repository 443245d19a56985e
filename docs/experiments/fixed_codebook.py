"""Fine-tuning on fixed codebook values against values still learned by gradient: an experiment.

An experiment, not part of the package. The last stage of every plan (``Settle``; the fit's
``Finetune``) fixes the codebooks (``spikefit.cat.fix_codebooks``); the ``learned`` rows undo that
for the stage, as the code before it did (the values learned by gradient until the end). Two parts:

* ``harness``: ``spikefit.baselines.run_method`` on MNIST-1D (80-256-10, CAT M = 4 per layer, the
  full schedule), CAT at sparsity 0 and FSC at 90 %, seeds 0-2;
* ``fit``: ``spikefit.fit`` of digits to ``pebble`` (the example plugin's chip: 4-bit weights, 8
  values per core) with the demo preset and two torch threads (as ``make demo`` runs it), both pruning
  orders, seeds 0-3 (the same seed on another thread count moves single spikes and gives other
  cells).

Both parts pin CAT's gradient mode (``cat_mode="hard"``) and FSC's unshrunk scores
(``fisher_shrinkage=0.0``), the defaults when the rows ran, so the script keeps its meaning under
today's defaults.

Run: ``python docs/experiments/fixed_codebook.py JOBS``; rows go to ``$OUT/fixed_codebook.json``
(``OUT`` defaults to /tmp) and the summary prints at the end; ``... --report ROWS.json`` prints the
summary of saved rows.
"""
import json
import os
import statistics as st
import sys
from concurrent.futures import ProcessPoolExecutor


def values_for(values: str) -> None:
    """``learned``: the codebook values keep learning in the last stage (the behaviour before
    ``Settle``); ``fixed``: the package as it is (a worker runs many rows: the patch is undone)."""
    from spikefit import cat as C

    C._fix_codebooks = getattr(C, "_fix_codebooks", C.fix_codebooks)
    C.fix_codebooks = (lambda model: None) if values == "learned" else C._fix_codebooks


def job(args):
    part, values, name, seed, order = args
    values_for(values)
    from spikefit.training.config import FitConfig

    if part == "harness":
        from spikefit.baselines import run_method

        method, sp = name
        r = run_method(method, "mnist1d", 4, sp, seed, FitConfig(device="cpu", cat_mode="hard", fisher_shrinkage=0.0), threads=1)
        acc = r["accuracy"]
    else:
        import spikefit

        cfg = FitConfig.preset("demo", threads=2, prune_order=order, deploy=False, seed=seed, device="cpu",
                               cat_mode="hard", fisher_shrinkage=0.0)
        acc = spikefit.fit(None, "digits", name, cfg, progress=False).accuracy["fitted"]
    return {"part": part, "values": values, "name": name, "seed": seed, "order": order, "acc": acc}


def tasks():
    out = [("harness", v, m, s, "before-cat") for m in (("cat", 0.0), ("fsc", 0.9)) for v in ("fixed", "learned")
           for s in range(3)]
    out += [("fit", v, "pebble", s, o) for o in ("before-cat", "after-cat") for v in ("fixed", "learned")
            for s in range(4)]
    return out


def report(rows):
    groups = {}
    for r in rows:
        key = (r["part"], str(r["name"]), r["order"], r["values"])
        groups.setdefault(key, []).append((r["seed"], 100 * r["acc"]))
    for key, v in sorted(groups.items()):
        accs = [a for _, a in sorted(v)]
        sd = st.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{key[0]:8s} {key[1]:14s} {key[2]:11s} {key[3]:8s} {st.mean(accs):6.2f} ± {sd:4.2f}  "
              f"seeds {[round(a, 2) for a in accs]}")


def main():
    if "--report" in sys.argv:
        report(json.load(open(sys.argv[sys.argv.index("--report") + 1])))
        return
    jobs = int(sys.argv[1])
    with ProcessPoolExecutor(jobs) as ex:
        rows = list(ex.map(job, tasks()))
    path = os.path.join(os.environ.get("OUT", "/tmp"), "fixed_codebook.json")
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    report(rows)


if __name__ == "__main__":
    main()
