"""spikefit-akida: BrainChip Akida's own fit check for the ``akida`` target (AKD1000).

``akida`` is imported only when a network is converted or checked, never when the plugin loads, so
``spikefit targets`` stays fast and works without it.

    spikefit_akida.to_akida(network) -> akida.Model          (convert.py)
    spikefit_akida.AkidaCheck().check(network, spec)          (vendor check "akida", target "akida")
    spikefit_akida.AkidaCheck().corpus() -> list[Case]        (networks around AKD1000's limits)
"""
from __future__ import annotations

from spikefit.lazy import lazy_attributes

_LAZY = {
    "to_akida": "spikefit_akida.convert",
    "AkidaCheck": "spikefit_akida.check",
    "corpus": "spikefit_akida.corpus",
}
__all__ = list(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
