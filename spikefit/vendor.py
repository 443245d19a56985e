"""Vendor toolchains as ground truth: a plugin registers the vendor's own fit check for a chip.

A :class:`VendorCheck` converts a spikefit :class:`~spikefit.network.Network` into the vendor's model
and asks the vendor's tool whether it maps (Rockpool's Xylo mapper, Sinabs's Speck core mapping,
Akida's ``map(hw_only=True)``). ``spikefit verify --vendor-check`` adds the vendor's verdict as its own
row, and ``spikefit bench vendor-agreement`` holds spikefit's verdict against the vendor's over each
check's corpus of networks built around the chip's limits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .errors import SpikefitError
from .network import Network
from .spec import TargetSpec


@dataclass
class VendorVerdict:
    """The vendor tool's answer for one network."""

    fits: bool | None        # None: the vendor tool checks nothing here
    message: str             # the vendor's own words (first line of its error), or what it mapped


@dataclass
class Case:
    """One network of a vendor corpus."""

    name: str                        # e.g. "xylo/hidden-1000-output-8"
    network: Network
    expect: bool | None = None       # what the corpus author expects the vendor to say
    known_difference: str = ""       # non-empty: spikefit is expected to differ here, and why


@runtime_checkable
class VendorCheck(Protocol):
    """What a plugin registers through ``register_vendor_checks``."""

    name: str                        # the vendor tool, e.g. "rockpool"
    target: str                      # the chip, e.g. "xylo-audio2"

    def check(self, network: Network, spec: TargetSpec) -> VendorVerdict: ...

    def corpus(self) -> list[Case]: ...


def get_vendor_check(target: str) -> VendorCheck:
    """The vendor check registered for ``target``; a one-line error names the plugins to install."""
    from .errors import PluginError
    from .plugins import registry

    reg = registry("vendor_check")
    if target not in reg:
        known = ", ".join(f"{t} ({c.name})" for t, c in sorted(reg.items())) or "(none installed)"
        raise PluginError(f"no vendor check for target {target!r}; vendor checks: {known}; install the chip's "
                          f"SDK plugin (e.g. pip install -e plugins/spikefit-xylo)")
    return reg[target]


def vendor_verdict(network: Network, spec: TargetSpec) -> VendorVerdict:
    """Run the vendor's own check for ``spec``; a vendor library that raises is reported in one line."""
    check = get_vendor_check(spec.name)
    try:
        return check.check(network, spec)
    except SpikefitError:
        raise
    except Exception as e:
        msg = " ".join(str(e).split())[:200]
        from .errors import BackendError

        raise BackendError(f"the {check.name} check of {spec.name!r} failed: {type(e).__name__}: {msg}") from None


def spikefit_verdict(network: Network, spec: TargetSpec) -> tuple[bool | None, str]:
    """(fits, message) from :func:`spikefit.verify`; None with the message when spikefit refuses the graph."""
    from .fitcheck import verify

    try:
        report = verify(network, spec)
    except SpikefitError as e:
        return None, str(e)
    if report.ok:
        return True, report.verdict()
    bad = report.failures[0]
    return False, f"{bad.name}: {bad.usage} of {bad.limit}" + (f" at {bad.worst}" if bad.worst else "")
