"""Rockpool's own fit check of Xylo Audio 2: the mapper's design rules and allocation, then XyloSim.

:class:`RockpoolCheck` converts the network into Rockpool's graph (:mod:`.convert`), runs
``mapper(graph, weight_dtype="int", threshold_dtype="int")`` (its DRC list, then the allocation of
1000 hidden and 8 output neurons), puts the matrices' weight shifts into the specification and builds
``XyloSim.from_specification(**spec)``, which stores weights as int8 and thresholds and biases as int16
(a value beyond them is rejected by its constructors), and runs it for two steps of silence.
A ``DRCError`` or a rejected specification is the vendor's "does not fit", reported in its own words;
``DRCWarning`` s (more than 16 inputs, a weight layer's bias dropped) are added to a "fits" message.
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from spikefit.network import Network
from spikefit.spec import TargetSpec
from spikefit.vendor import Case, VendorVerdict


def _words(e: BaseException, lines: int = 2) -> str:
    text = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: " + " ".join(text[:lines])


def _constructor_words(e: BaseException) -> str:
    """pybind11's TypeError names the class only in its second line: keep the class and the first line."""
    text = str(e)
    cls = re.search(r"^\s*1\. ([\w.]+)\(", text, re.M)
    if "incompatible constructor arguments" in text and cls:
        return f"{type(e).__name__}: {cls.group(1)}.__init__(): incompatible constructor arguments"
    return _words(e, 1)


class RockpoolCheck:
    """The vendor check registered for ``xylo-audio2``."""

    name = "rockpool"
    target = "xylo-audio2"

    def check(self, network: Network, spec: TargetSpec | None = None) -> VendorVerdict:
        from .convert import map_converted, to_rockpool
        from .vendor_import import load

        rp = load()
        conv = to_rockpool(network, rp)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                mapped = map_converted(conv, rp)
            except rp.DRCError as e:
                return VendorVerdict(False, "mapper: " + _words(e))
            except Exception as e:  # the mapper crashes on graphs its DRC list lets through
                return VendorVerdict(False, "mapper raised " + _words(e, 1))
        notes = [_words(w.message, 1) for w in caught if issubclass(w.category, rp.DRCWarning)]
        mapped.pop("mapped_graph")
        try:
            sim = rp.XyloSim.from_specification(**mapped)
            sim.evolve(np.zeros((2, conv.n_inputs), dtype=int))
        except Exception as e:
            return VendorVerdict(False, "XyloSim rejected the specification: " + _constructor_words(e))
        n_hidden, n_out = len(mapped["threshold"]), len(mapped["threshold_out"])
        shifts = "/".join(str(conv.shifts[m]) for m in ("input", "recurrent", "output"))
        message = f"mapped {n_hidden} hidden + {n_out} output neurons, weight shifts in/rec/out {shifts}; XyloSim runs it"
        return VendorVerdict(True, message + "".join(f"; {n}" for n in dict.fromkeys(notes)))

    def corpus(self) -> list[Case]:
        from .corpus import corpus

        return corpus()
