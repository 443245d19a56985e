"""``spikefit bench ...``: benchmark commands that print the figures the project promises."""
from __future__ import annotations

from importlib import import_module

import click

# Each module defines one click command named like the module's last part.
BENCHMARKS = ["spikefit.bench.verify", "spikefit.bench.compression", "spikefit.bench.backends",
              "spikefit.bench.vendor_agreement", "spikefit.bench.train"]


@click.group()
def bench():
    """Benchmarks: verify speed, compression accuracy, backend throughput, agreement with vendor tools."""


for _mod in BENCHMARKS:
    try:
        _m = import_module(_mod)
    except ModuleNotFoundError as _e:
        if _e.name != _mod:
            raise
        continue
    bench.add_command(getattr(_m, _mod.rsplit(".", 1)[1]))  # e.g. vendor_agreement -> "vendor-agreement"
