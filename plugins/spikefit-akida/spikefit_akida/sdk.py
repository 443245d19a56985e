"""The one place the plugin imports ``akida``: a missing SDK is a one-line error saying how to install it."""
from __future__ import annotations

INSTALL = "akida is not installed; install it with `make install` (akida==2.19.3, whose only dependency is numpy)"


def require_akida(error: type[Exception]):
    """The ``akida`` module, or ``error`` (a SpikefitError subclass) naming how to install it."""
    try:
        import akida
    except ImportError:
        raise error(INSTALL) from None
    return akida
