"""Entry point of the spikefit-speck plugin (group ``spikefit``, name ``speck``): registers the
``sinabs`` vendor check for target ``speck2f``, the ``speck`` exporter and the ``speck-sim`` backend.
Importing it stays cheap: sinabs and torch are imported only when one of them runs."""
from __future__ import annotations

import spikefit


@spikefit.hookimpl
def register_vendor_checks(register):
    from .check import SinabsCheck

    register(SinabsCheck())


@spikefit.hookimpl
def register_exporters(register):
    from .exporter import SpeckExporter

    register(SpeckExporter())


@spikefit.hookimpl
def register_backends(register):
    from .backend import SpeckSimBackend

    register(SpeckSimBackend())
