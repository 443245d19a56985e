"""Entry point of the spikefit-akida plugin (group ``spikefit``, name ``akida``): registers Akida's own
fit check for the ``akida`` target. Importing it stays cheap: ``akida`` is imported only by a check."""
from __future__ import annotations

import spikefit


@spikefit.hookimpl
def register_vendor_checks(register):
    from .check import AkidaCheck

    register(AkidaCheck())
