"""Hold spikefit's akida rules against akida's mapper on seeded random networks beyond the corpus:

    python -m spikefit_akida.random_check SEED COUNT [MAX_SIDE MAX_Y]

prints each disagreement and a summary line. Where a convolution's map has a chunk that does not fit a
CNP's input memory (spikefit.targets.akida.memory_cut), spikefit's CNP count is a lower bound, so a
disagreement there (akida refuses, spikefit accepts) is reported as such."""
from __future__ import annotations

import sys

import spikefit
from spikefit.targets import akida as A
from spikefit.vendor import spikefit_verdict

from .check import AkidaCheck
from .corpus import random_networks


def main(argv: list[str]) -> int:
    seed, count = int(argv[0]), int(argv[1])
    sizes = [int(v) for v in argv[2:4]]
    spec, check = spikefit.get_target("akida"), AkidaCheck()
    tally = {"agree": 0, "disagree": 0, "disagree (memory cut)": 0, "vendor checks nothing": 0}
    for i, network in enumerate(random_networks(seed, count, *sizes)):
        vendor = check.check(network, spec)
        ours, why = spikefit_verdict(network, spec)
        if vendor.fits is None:
            tally["vendor checks nothing"] += 1
        elif ours == vendor.fits:
            tally["agree"] += 1
        else:
            cut = any(A.memory_cut(la) for la in A.akida_layers(network))
            tally["disagree (memory cut)" if cut else "disagree"] += 1
            print(f"network {i}: akida {vendor.fits} ({vendor.message}); spikefit {ours} ({why})"
                  + (" [memory cut]" if cut else ""), flush=True)
    print(f"seed {seed}: {count} networks: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
    return 1 if tally["disagree"] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
