"""spikefit-speck: check spikefit networks against Speck 2f with SynSense's sinabs.

sinabs is imported only when a check runs, through :mod:`spikefit_speck.shim` (inert samna
placeholders, present in ``sys.modules`` only while sinabs is imported)::

    spikefit_speck.SinabsCheck().check(network, spec) -> VendorVerdict   (vendor check "sinabs", target "speck2f")
    spikefit_speck.sinabs_mapping(network) -> SinabsMapping               (sinabs's core map and memory)
    spikefit_speck.corpus() -> list[Case]                                 (networks around Speck's limits)
    spikefit_speck.SpeckExporter().export(network, path, target=None)     (exporter "speck": snn.pt + speck.json)
    spikefit_speck.load_speck(path) -> (DynapcnnNetwork, metadata)
    spikefit_speck.SpeckSimBackend().run(network, inputs)                 (backend "speck-sim")
"""
from __future__ import annotations

from spikefit.lazy import lazy_attributes

_LAZY = {
    "SinabsCheck": "spikefit_speck.check",
    "sinabs_mapping": "spikefit_speck.check",
    "to_sinabs": "spikefit_speck.convert",
    "corpus": "spikefit_speck.corpus",
    "SpeckExporter": "spikefit_speck.exporter",
    "load_speck": "spikefit_speck.exporter",
    "SpeckSimBackend": "spikefit_speck.backend",
}
__all__ = list(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
