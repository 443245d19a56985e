"""Exporter ``akida``: writes the ``akida.Model`` of a network (convert.py) with ``Model.save``, the
file BrainChip's tools load (``akida.Model(path)``), after the mapper placed it on an AKD1000 in one
hardware sequence. A network the chip cannot run is refused before ``akida`` is called: spikefit's
verdict for the ``akida`` target (its limits and the ``akida`` rules) names the layer and the rule."""
from __future__ import annotations

from pathlib import Path

from spikefit.errors import ExportError
from spikefit.network import Network


def refusal(network: Network) -> str | None:
    """Why spikefit says the AKD1000 cannot run ``network`` (first failing row), or None."""
    import spikefit

    try:
        report = spikefit.verify(network, "akida")
    except spikefit.SpikefitError as e:
        return str(e)
    if report.ok:
        return None
    row = report.failures[0]
    where = f" at {row.worst}" if row.worst else ""
    why = f": {row.detail}" if row.detail else f": {row.usage} of {row.limit}"
    return f"{row.name}{where}{why}"


class AkidaExporter:
    """``export(network, path, target)`` writes ``path`` (an ``.fbz`` file)."""

    name = "akida"
    neurons = ("akida-act",)
    suffix = ".fbz"

    def export(self, network: Network, path, target=None) -> Path:
        name = getattr(target, "name", target)
        if name not in (None, "akida"):
            raise ExportError(f"the akida format runs on the akida target only, not {name!r}; pass --target akida")
        why = refusal(network)
        if why is not None:
            raise ExportError(f"the AKD1000 cannot run this network: {why}")
        from .convert import to_akida
        from .sdk import require_akida

        akida = require_akida(ExportError)

        try:
            model = to_akida(network)
            model.map(akida.AKD1000(), hw_only=True)
        except Exception as e:  # spikefit said it fits: the vendor disagrees, say so in its own words
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ExportError(f"akida refused the network that spikefit's rules accept: {first}") from None
        path = Path(path)
        model.save(str(path))
        return path
