"""Whether Lava can be imported, as the error spikefit users get when it cannot."""
from __future__ import annotations

from .build import LAVA_HINT, lava


def require_lava(error: type[Exception]) -> None:
    """Import Lava (through the shim); raise ``error`` with the install hint when it is missing."""
    try:
        lava()
    except ImportError:
        raise error(LAVA_HINT) from None
