"""The plugin's hooks: Rockpool's Xylo check for target xylo-audio2 (rockpool loads only when it runs)."""
from __future__ import annotations

import spikefit


@spikefit.hookimpl
def register_vendor_checks(register):
    from .check import RockpoolCheck

    register(RockpoolCheck())
