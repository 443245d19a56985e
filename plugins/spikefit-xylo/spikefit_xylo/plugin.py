"""The plugin's hooks: Rockpool's Xylo check of xylo-audio2, the exporter "xylo" and the backend "xylosim"
(rockpool and xylosim load only when one of them runs)."""
from __future__ import annotations

import spikefit


@spikefit.hookimpl
def register_vendor_checks(register):
    from .check import RockpoolCheck

    register(RockpoolCheck())


@spikefit.hookimpl
def register_exporters(register):
    from .exporter import XyloExporter

    register(XyloExporter())


@spikefit.hookimpl
def register_backends(register):
    from .backend import XyloSimBackend

    register(XyloSimBackend())
