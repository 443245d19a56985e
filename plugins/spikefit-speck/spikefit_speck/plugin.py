"""Entry point of the spikefit-speck plugin (group ``spikefit``, name ``speck``): registers the
``sinabs`` vendor check for target ``speck2f``. Importing it stays cheap: sinabs is imported only
when a check runs."""
from __future__ import annotations

import spikefit


@spikefit.hookimpl
def register_vendor_checks(register):
    from .check import SinabsCheck

    register(SinabsCheck())
