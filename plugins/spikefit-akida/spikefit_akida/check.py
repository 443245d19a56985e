"""Akida's own fit check: convert the network (convert.py) and ask the vendor's mapper,
``model.map(akida.AKD1000(), hw_only=True)`` (one hardware sequence on the AKD1000's 78 neural
processors, the default mapping mode). The verdict carries the first line of akida's own message."""
from __future__ import annotations

from collections import Counter

from spikefit.errors import PluginError
from spikefit.network import Network
from spikefit.spec import TargetSpec
from spikefit.vendor import VendorVerdict


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def mapped_processors(model) -> Counter:
    """NP components of a mapped model by type ("CNP1", "FNP3", "FNP2", "HRC", ...)."""
    return Counter(str(n.type).split(".")[-1] for layer in model.layers if layer.mapping is not None
                   for n in layer.mapping.nps)


class AkidaCheck:
    """Vendor check "akida" for the target "akida" (AKD1000)."""

    name = "akida"
    target = "akida"

    def check(self, network: Network, spec: TargetSpec | None = None) -> VendorVerdict:
        from spikefit.targets.akida import NotAkida

        from .convert import OutsideInt8, to_akida
        from .sdk import require_akida

        akida = require_akida(PluginError)

        try:
            model = to_akida(network)
        except NotAkida as e:
            return VendorVerdict(None, f"no akida.Model expresses this network: {e}")
        except OutsideInt8 as e:
            return VendorVerdict(False, str(e))
        except (ValueError, RuntimeError) as e:     # a layer refused its parameters or weights
            return VendorVerdict(False, _first_line(e))
        try:
            model.map(akida.AKD1000(), hw_only=True)
        except (ValueError, RuntimeError) as e:
            return VendorVerdict(False, _first_line(e))
        nps = mapped_processors(model)
        used = ", ".join(f"{n} {t}" for t, n in sorted(nps.items()))
        return VendorVerdict(True, f"mapped on AKD1000 in one sequence ({used or 'no NP'})")

    def corpus(self):
        from .corpus import corpus

        return corpus()
