"""Hold spikefit's akida rules against akida's mapper on seeded random networks beyond the corpus:

    python -m spikefit_akida.random_check SEED COUNT [MAX_SIDE MAX_Y]     # verdicts of random networks
    python -m spikefit_akida.random_check --layers SEED COUNT           # CNP counts of random convolutions

prints each disagreement and a summary line; exit status 1 when there is one. ``--layers`` compares
spikefit's CNP count (spatial_split x filter groups) with the mapper's (``MapMode.Minimal``, the
default split) on single convolutions of random x, y, c, kernel, width and filters."""
from __future__ import annotations

import sys

import spikefit
from spikefit.vendor import spikefit_verdict

from .check import AkidaCheck
from .corpus import random_networks


def layer_counts(seed: int, count: int) -> int:
    import math

    import numpy as np

    from spikefit.targets import akida as A

    from .convert import to_akida
    from .corpus import FOUR, ONE, TWO, net
    from .sdk import require_akida

    akida = require_akida(SystemExit)
    rng = np.random.default_rng(seed)
    checked = wrong = 0
    for _ in range(count):
        x, y = int(rng.choice([4, 8, 20, 32, 33, 40, 64, 100])), int(rng.choice([5, 8, 30, 57, 100, 200, 256, 300, 600]))
        c = int(rng.choice([2, 4, 16, 50, 100, 200, 300, 505, 700, 896]))
        k, bits = int(rng.choice([1, 3, 5, 7])), int(rng.choice([1, 2, 4]))
        f = int(rng.choice([8, 16, 100, 504, 600]))
        per = A.filters_per_np(c, k, bits)
        if per == 0:
            continue
        network = net((c, x, y), ("conv", f, k, {1: ONE, 2: TWO, 4: FOUR}[bits], 1, None))
        layer = A.akida_layers(network)[0]
        ours = A.spatial_split(layer) * math.ceil(f / per)
        if ours > 150:
            continue
        model = to_akida(network)
        try:
            model.map(akida.AKD1000(), hw_only=True, mode=akida.MapMode.Minimal)
            theirs = len(model.layers[1].mapping.nps)
        except RuntimeError as e:              # "Not enough hardware components ... N are needed"
            words = str(e).split(" are needed")[0].split()
            theirs = int(words[-1]) if words and words[-1].isdigit() else None
        checked += 1
        if theirs != ours:
            wrong += 1
            print(f"x={x} y={y} c={c} k={k} bits={bits} filters={f}: akida {theirs} CNPs, spikefit {ours}", flush=True)
    print(f"seed {seed}: {checked} convolutions: {checked - wrong} exact, {wrong} wrong")
    return 1 if wrong else 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--layers":
        return layer_counts(int(argv[1]), int(argv[2]))
    seed, count = int(argv[0]), int(argv[1])
    sizes = [int(v) for v in argv[2:4]]
    spec, check = spikefit.get_target("akida"), AkidaCheck()
    tally = {"agree": 0, "disagree": 0, "vendor checks nothing": 0}
    for i, network in enumerate(random_networks(seed, count, *sizes)):
        vendor = check.check(network, spec)
        ours, why = spikefit_verdict(network, spec)
        if vendor.fits is None:
            tally["vendor checks nothing"] += 1
        elif ours == vendor.fits:
            tally["agree"] += 1
        else:
            tally["disagree"] += 1
            print(f"network {i}: akida {vendor.fits} ({vendor.message}); spikefit {ours} ({why})", flush=True)
    print(f"seed {seed}: {count} networks: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
    return 1 if tally["disagree"] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
