"""spikefit-xylo: Rockpool's Xylo Audio 2 mapper and XyloSim as the vendor's own fit check.

Importing this package imports neither rockpool nor xylosim; they load when a network is checked.

    spikefit_xylo.RockpoolCheck().check(network, spec) -> spikefit.vendor.VendorVerdict
    spikefit_xylo.RockpoolCheck().corpus()              -> list[spikefit.vendor.Case]
    spikefit_xylo.to_rockpool(network)                   -> convert.Converted (rockpool graph + shifts)
    spikefit_xylo.vendor_import.load()                  -> the mapper and XyloSim, without samna
    spikefit_xylo.XyloExporter().export(network, path)   (exporter "xylo": Rockpool's specification, .npz)
    spikefit_xylo.load_specification(path)              -> XyloSpec; XyloSim.from_specification(**spec.kwargs())
    spikefit_xylo.XyloSimBackend().run(network, inputs) (backend "xylosim")
"""
from __future__ import annotations

from importlib import import_module

_LAZY = {
    "RockpoolCheck": "spikefit_xylo.check",
    "to_rockpool": "spikefit_xylo.convert",
    "corpus": "spikefit_xylo.corpus",
    "XyloExporter": "spikefit_xylo.exporter",
    "load_specification": "spikefit_xylo.specification",
    "specification": "spikefit_xylo.specification",
    "XyloSimBackend": "spikefit_xylo.backend",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikefit_xylo' has no attribute {name!r}")
