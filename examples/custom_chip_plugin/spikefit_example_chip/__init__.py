"""spikefit-example-chip: a complete third-party spikefit plugin.

It registers one invented chip, "pebble", through the ``register_targets`` hook. spikefit finds
this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.spikefit]
    example_chip = "spikefit_example_chip"
"""
from __future__ import annotations

from pathlib import Path

import spikefit

HERE = Path(__file__).parent


@spikefit.hookimpl
def register_targets(register):
    """Register the pebble chip, loaded (and validated) from the TOML file next to this module."""
    register(spikefit.load_target(HERE / "pebble.toml"))
