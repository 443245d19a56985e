"""Entry point of the spikefit-lava plugin (group ``spikefit``, name ``lava``): registers the ``lava``
exporter and backend. Importing it stays cheap: Lava is imported only when one of them is used."""
from __future__ import annotations

import spikefit


@spikefit.hookimpl
def register_exporters(register):
    from .exporter import LavaExporter

    register(LavaExporter())


@spikefit.hookimpl
def register_backends(register):
    from .backend import LavaBackend

    register(LavaBackend())
