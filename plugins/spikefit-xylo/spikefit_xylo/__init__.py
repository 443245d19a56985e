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

from spikefit.lazy import lazy_attributes

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


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
