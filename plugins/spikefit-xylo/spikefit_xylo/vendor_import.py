"""Import Rockpool's Xylo Audio 2 mapper and XyloSim without samna.

``import rockpool.devices.xylo.syns61201`` fails without samna (rockpool 3.1.0): the package
``rockpool/devices/xylo/__init__.py`` imports all three chip packages, and ``syns65302``'s imports reach
``afe_samna_pdm.py``, whose first line is ``import samna``. The two modules the fit check needs,
``syns61201/xylo_mapper.py`` and ``syns61201/xylo_sim.py``, import only rockpool's graph classes,
``xylo_graph_modules.py`` and ``xylosim``.

:func:`load` therefore puts two *hollow* package modules into :data:`sys.modules`,
``rockpool.devices.xylo`` and ``rockpool.devices.xylo.syns61201``: package objects whose ``__path__`` is
the installed folder but whose ``__init__.py`` is not run. Python then imports the two submodules (and
what they import, e.g. ``syns61300``) from the installed files as usual. Nothing on disk changes. The
hollow packages carry ``__spikefit_hollow__ = True``; they export nothing themselves, so code that
later does ``from rockpool.devices.xylo.syns61201 import XyloSamna`` gets an ImportError instead of
samna's. When samna is installed, or the real packages are already imported, :func:`load` uses the
real packages and creates nothing.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

XYLO = "rockpool.devices.xylo"
XA2 = "rockpool.devices.xylo.syns61201"
HOLLOW = "__spikefit_hollow__"


def samna_available() -> bool:
    return importlib.util.find_spec("samna") is not None


def _hollow_package(name: str, folder: Path) -> types.ModuleType:
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    module.__path__ = [str(folder)]
    setattr(module, HOLLOW, True)
    module.__doc__ = f"{name} without its __init__ (spikefit_xylo.vendor_import: the real one needs samna)"
    return module


def install_hollow_packages() -> bool:
    """Put the hollow packages in place where the real ones are neither imported nor importable.
    Returns True when hollow packages are (now) in :data:`sys.modules`."""
    if XA2 in sys.modules:
        return bool(getattr(sys.modules[XA2], HOLLOW, False))
    if samna_available():
        return False
    import rockpool.devices  # rockpool's top level and ``devices`` import without samna

    folder = Path(list(rockpool.devices.__path__)[0]) / "xylo"
    if XYLO not in sys.modules:
        sys.modules[XYLO] = _hollow_package(XYLO, folder)
    sys.modules[XA2] = _hollow_package(XA2, folder / "syns61201")
    setattr(sys.modules[XYLO], "syns61201", sys.modules[XA2])
    return True


def hollow() -> bool:
    """True when this process uses the hollow packages."""
    return bool(getattr(sys.modules.get(XA2), HOLLOW, False))


def load() -> types.SimpleNamespace:
    """The vendor objects the check uses: ``mapper``, ``DRCError``, ``DRCWarning``, ``XyloSim`` and the
    rockpool graph classes ``GraphNode``, ``GraphHolder``, ``LinearWeights``, ``LIFNeuronWithSynsRealValue``."""
    install_hollow_packages()
    mapper_mod = importlib.import_module(XA2 + ".xylo_mapper")
    sim_mod = importlib.import_module(XA2 + ".xylo_sim")
    graph = importlib.import_module("rockpool.graph")
    return types.SimpleNamespace(
        mapper=mapper_mod.mapper, DRCError=mapper_mod.DRCError, DRCWarning=mapper_mod.DRCWarning,
        XyloSim=sim_mod.XyloSim, GraphNode=graph.GraphNode, GraphHolder=graph.GraphHolder,
        LinearWeights=graph.LinearWeights, LIFNeuronWithSynsRealValue=graph.LIFNeuronWithSynsRealValue)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("rockpool", "xylosim"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
