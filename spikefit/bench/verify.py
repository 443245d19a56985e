"""``spikefit bench verify``: how long the fit check takes as networks grow.

Builds chains of sparse layers with local receptive fields (each neuron reads ``fan_in`` sources
from a window of ``2 * fan_in`` around its own index) and codebook weights (a few 8-bit integers
times 2**-7), then times :func:`spikefit.verify` alone against a chip that declares every limit.
Run it on one core for comparable figures: ``taskset -c 0 spikefit bench verify``.
"""
from __future__ import annotations

import json
import time

import click
import numpy as np
import scipy.sparse as sp

from ..network import Dense, Input, Network, Neurons, Output
from ..spec import CoreSpec, Limits, TargetSpec

# A chip that declares every limit the check knows, sized so that the benchmark networks fit:
# every row is measured, none is skipped.
BENCH_TARGET = TargetSpec(
    name="bench",
    description="synthetic chip declaring every limit (spikefit bench verify)",
    limits=Limits(neurons=1 << 21, cores=4096, neurons_per_core=1024, synapses=1 << 28,
                  synapses_per_core=1024 * 128, axons_per_core=4096, fan_in=256, fan_out=256,
                  fan_out_cores=64, weight_bits=8, unique_weights=16, unique_weights_scope="neuron",
                  inputs=1 << 20, outputs=1 << 20),
    core=CoreSpec(shared=("du", "dv", "vth"), parameter_sets=4),
)


def synthetic_network(neurons: int, fan_in: int = 100, layers: int = 10, values: int = 16, seed: int = 0) -> Network:
    """A chain Input -> (Dense, Neurons) x ``layers`` with ``neurons`` neurons in all and ``fan_in``
    non-zero synapses per neuron, stored as float32 / int32 CSR before Dense converts it."""
    n = neurons // layers
    if n < 2 * fan_in:
        raise click.BadParameter(f"{neurons} neurons in {layers} layers is {n} per layer; "
                                 f"fan-in {fan_in} needs at least {2 * fan_in}")
    rng = np.random.default_rng(seed)
    ints = rng.choice(np.r_[-127:0, 1:128], values, replace=False)
    codebook = (ints * 2.0 ** -7).astype(np.float32)           # 8-bit integers times one scale
    indptr = np.arange(0, (n + 1) * fan_in, fan_in, dtype=np.int32 if n * fan_in < 2 ** 31 else np.int64)
    offsets = 2 * np.arange(fan_in, dtype=np.int32)
    nodes: list = [Input("in", (n,))]
    for layer in range(1, layers + 1):
        start = np.clip(np.arange(n, dtype=np.int32) - fan_in, 0, n - 2 * fan_in)
        idx = start[:, None] + offsets[None, :] + rng.integers(0, 2, (n, fan_in), dtype=np.int32)  # sorted rows
        data = codebook[rng.integers(0, values, n * fan_in, dtype=np.uint8)]
        w = sp.csr_array((data, idx.reshape(-1), indptr), shape=(n, n))
        w.has_canonical_format = True                            # rows are sorted and without duplicates
        nodes += [Dense(f"fc{layer}", w), Neurons(f"lif{layer}", (n,), du=0.5, dv=0.1, vth=1.0)]
    nodes.append(Output("out", (n,)))
    return Network.sequential(*nodes)


def measure(neurons: int, fan_in: int, layers: int, target) -> dict:
    from ..fitcheck import verify as check

    t0 = time.perf_counter()
    net = synthetic_network(neurons, fan_in, layers)
    t1, c1 = time.perf_counter(), time.process_time()
    report = check(net, target)
    t2, c2 = time.perf_counter(), time.process_time()
    synapses = sum(c.weight.nnz for c in net.connections())
    return {"neurons": sum(p.size for p in net.populations()), "synapses": int(synapses),
            "cores": report.cores.cores, "build_s": round(t1 - t0, 3), "verify_s": round(t2 - t1, 3),
            "verify_cpu_s": round(c2 - c1, 3), "ns_per_synapse": round((t2 - t1) / synapses * 1e9, 2),
            "fits": report.ok}


@click.command("verify")
@click.option("--sizes", default="10000,100000,1000000", show_default=True, help="total neurons, comma-separated")
@click.option("--fan-in", default=100, show_default=True, help="non-zero synapses per neuron")
@click.option("--layers", default=10, show_default=True, help="sparse layers in the chain")
@click.option("--target", "target_name", default=None, help="a registered target (default: a synthetic chip declaring every limit)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def verify(sizes: str, fan_in: int, layers: int, target_name: str | None, as_json: bool):
    """Time the fit check on synthetic sparse networks of growing size (one row per size)."""
    try:
        sizes_ = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{sizes!r} is not a comma-separated list of integers", param_hint="--sizes") from None
    target = BENCH_TARGET
    if target_name:
        from ..plugins import get_target

        target = get_target(target_name)
    results = []
    for n in sizes_:
        results.append(measure(n, fan_in, layers, target))
        if not as_json:
            r = results[-1]
            if len(results) == 1:
                click.echo(f"target {target.name}; fan-in {fan_in}; {layers} layers; verify time excludes the build; "
                           f"cpu s = the process's CPU time (robust on a busy machine)")
                click.echo(f"{'neurons':>10} {'synapses':>12} {'cores':>6} {'build s':>8} {'verify s':>9} "
                           f"{'cpu s':>7} {'ns/synapse':>11}  fits")
            click.echo(f"{r['neurons']:>10} {r['synapses']:>12} {r['cores']:>6} {r['build_s']:>8.3f} "
                       f"{r['verify_s']:>9.3f} {r['verify_cpu_s']:>7.3f} {r['ns_per_synapse']:>11.2f}  "
                       f"{'yes' if r['fits'] else 'no'}")
    if as_json:
        click.echo(json.dumps({"target": target.name, "fan_in": fan_in, "layers": layers, "results": results}, indent=2))
