"""The main job, end to end, offline, on the embedded digits dataset (`make demo`).

1. Show the chip catalog.
2. Fit the digits network to Intel Loihi 2, to IBM TrueNorth (4 distinct weights per neuron,
   fan-in 256) and to "pebble", the invented chip of the example third-party plugin (fan-in 64,
   4-bit weights, 8 values per core: here FSC has to prune): float warm-up -> CAT -> FSC pruning ->
   fine-tune -> verify.
3. Verify both fitted networks against every chip in the catalog.
4. Run the Loihi 2 fit on the fixed-point emulator and on Lava's CPU simulator, and compare trained,
   emulated and Lava accuracy and spike-by-spike agreement.

Usage: python examples/demo.py [--out runs/demo] [--preset demo|full]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import spikefit
from spikefit.cli.targets import targets as targets_command
from spikefit.runner import compare
from spikefit.trainer import FitConfig


def banner(text: str) -> None:
    print(f"\n{'=' * 8} {text} {'=' * max(0, 70 - len(text))}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo", help="output folder (overwritten)")
    ap.add_argument("--preset", default="demo", choices=["demo", "full"], help="training length")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()

    banner("chip catalog (spikefit targets)")
    targets_command.main([], standalone_mode=False)

    fits = {}
    for target in ("loihi2", "truenorth", "pebble"):
        banner(f"spikefit fit --target {target} --dataset digits")
        result = spikefit.fit(None, "digits", target, FitConfig.preset(args.preset, threads=2),
                              out=out / target, force=True)
        print((out / target / "report.md").read_text())
        fits[target] = result

    banner("spikefit verify: where would each fitted network run?")
    names = [t.name for t in spikefit.list_targets()]
    table = [["chip", *(f"{t} fit" for t in fits)]]
    for name in names:
        cells = [name]
        for result in fits.values():
            report = spikefit.verify(result.network, name)
            failed = ", ".join(r.name for r in report.failures)
            cells.append("fits" if report.ok else f"no: {failed}")
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:  # columns as wide as their widest cell, two spaces apart: cells never run together
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())

    banner("loihi2 fit: trained vs emulated vs Lava (360 digits test samples)")
    result = fits["loihi2"]
    steps = result.model.steps if hasattr(result.model, "steps") else None
    cmp = compare(result.network, ["emulator", "lava"], dataset="digits", steps=steps)
    rows = [("trained (torch, fitted)", result.accuracy["fitted"])]
    rows += [(f"{name} backend", r.accuracy) for name, r in cmp.results.items()]
    for label, acc in rows:
        print(f"  {label:<26} {100 * acc:6.2f} %")
    print(f"  output spikes identical at every step (emulator vs lava): {100 * cmp.agreement['lava']:.1f} % of samples")
    print(f"\nmodels, checkpoints and reports in {out}/ ; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
