"""spikefit-lava: export spikefit networks to Lava processes and run them on Lava's CPU simulator.

Importing this package installs :mod:`spikefit_lava.shim` (lava-nc 0.10.0 does not import on
Python >= 3.11 without it); Lava itself is imported only when a network is exported, loaded or run.

    spikefit_lava.load_processes(path, select="fixed_pt", window=None) -> build.LavaNetwork
    spikefit_lava.LavaExporter().export(network, path, target=None)       (exporter "lava")
    spikefit_lava.LavaBackend().run(network, inputs, select_tag="fixed_pt") (backend "lava")
"""
from __future__ import annotations

from spikefit.lazy import lazy_attributes

from .shim import install as install_shim

install_shim()

_LAZY = {
    "load_processes": "spikefit_lava.exporter",
    "LavaExporter": "spikefit_lava.exporter",
    "LavaBackend": "spikefit_lava.backend",
}
__all__ = ["install_shim", *_LAZY]


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
