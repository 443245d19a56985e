"""The main job, end to end, offline, on the embedded digits dataset (`make demo`).

1. Show the chip catalog.
2. Fit the digits network to Intel Loihi 2, to IBM TrueNorth (4 distinct weights per neuron,
   fan-in 256) and to "pebble", the invented chip of the example third-party plugin (fan-in 64,
   4-bit weights, 8 values per core: here FSC has to prune): float warm-up -> CAT -> FSC pruning ->
   fine-tune -> verify.
3. Verify both fitted networks against every chip in the catalog.
4. Run the Loihi 2 fit on the fixed-point emulator and on Lava's CPU simulator, and compare trained,
   emulated and Lava accuracy and spike-by-spike agreement.
5. Fit digits to Xylo Audio 2 (digits16: 16 channels, 8 classes), Speck 2f and Akida, each training the
   chip's own neuron; export each with its vendor SDK (rockpool specification, sinabs DynapcnnNetwork,
   akida Model), run the vendor's simulator (XyloSim, sinabs, akida) and compare with the emulator
   running the same neuron. The float reference of each chip is a float network with the chip's neuron
   trained for as many epochs as its fit trained in all (no quantization, no pruning), on the same data.

Usage: python examples/demo.py [--out runs/demo] [--preset demo|full]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import spikefit
from spikefit.cli.targets import targets as targets_command
from spikefit.plugins import get_exporter
from spikefit.runner import compare
from spikefit.trainer import FitConfig

# chip -> (embedded dataset shaped for it, SDK exporter, vendor simulator backend)
VENDOR_CHIPS = {"xylo-audio2": ("digits16", "xylo", "xylosim"), "speck2f": ("digits", "speck", "speck-sim"),
                "akida": ("digits", "akida", "akida")}


def float_reference(data: str, target: str, fitted, preset: str) -> tuple[float, int]:
    """Test accuracy of a float network with the chip's neuron, trained for as many epochs as ``fitted``
    trained over all its stages (one warm-up stage: nothing quantized, nothing pruned), and the epochs."""
    epochs = sum(h["epochs"] or 0 for h in fitted.history)
    cfg = FitConfig.preset(preset, threads=2, warmup_epochs=epochs, cat_epochs=0, prune_rounds=0, finetune_epochs=0,
                           deploy=False)
    result = spikefit.fit(None, data, target, cfg, progress=False)
    return result.accuracy["float"], epochs


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

    rows = []
    for target, (data, fmt, vendor) in VENDOR_CHIPS.items():
        banner(f"spikefit fit --target {target} --dataset {data}; export --format {fmt}; run --backend {vendor}")
        spec = spikefit.get_target(target)
        result = spikefit.fit(None, data, target, FitConfig.preset(args.preset, threads=2), out=out / target,
                              force=True)
        exporter = get_exporter(fmt)
        path = exporter.export(result.network, out / target / f"model.{fmt}{getattr(exporter, 'suffix', '.npz')}", spec)
        print(f"  neuron: {spec.neuron.chip_model}; exported with {fmt}: {path}")
        cmp = compare(result.network, ["emulator", vendor], dataset=data, target=spec)
        flt, epochs = float_reference(data, target, result, args.preset)
        rows.append((target, spec.neuron.chip_model, flt, epochs, result.accuracy["fitted"],
                     cmp.results["emulator"].accuracy, cmp.results[vendor].accuracy, vendor, cmp.agreement[vendor],
                     cmp.results[vendor].samples))
    banner("per chip: float vs trained vs emulator vs the vendor's simulator (test split)")
    print(f"  {'chip':<12} {'neuron':<10} {'float':>7} {'trained':>8} {'emulator':>9} {'vendor':>8} "
          f"{'vendor-float':>13}  {'simulator':<10} identical")
    for target, neuron, flt, epochs, trained, emu, ven, vendor, agree, n in rows:
        print(f"  {target:<12} {neuron:<10} {100 * flt:6.2f}% {100 * trained:7.2f}% {100 * emu:8.2f}% "
              f"{100 * ven:7.2f}% {100 * (ven - flt):+10.2f} pp  {vendor:<10} {100 * agree:.1f} % of {n}")
    epochs = "/".join(sorted({str(r[3]) for r in rows}))
    print(f"  float: the chip's neuron in float, trained as many epochs as its fit ({epochs} here), nothing "
          "quantized or pruned; trained: the fitted torch model; identical: emulator and vendor outputs equal at "
          "every step")
    print(f"\nmodels, checkpoints and reports in {out}/ ; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
