"""Entry point of the spikefit-akida plugin (group ``spikefit``, name ``akida``): registers Akida's own
fit check for the ``akida`` target, the ``akida`` exporter and the ``akida`` backend. Importing it
stays cheap: ``akida`` is imported only when a check, an export or a run uses it."""
from __future__ import annotations

import spikefit


@spikefit.hookimpl
def register_vendor_checks(register):
    from .check import AkidaCheck

    register(AkidaCheck())


@spikefit.hookimpl
def register_exporters(register):
    from .exporter import AkidaExporter

    register(AkidaExporter())


@spikefit.hookimpl
def register_backends(register):
    from .backend import AkidaBackend

    register(AkidaBackend())
