"""Exporter ``xylo``: Rockpool's Xylo Audio 2 specification as a ``.npz`` file (see :mod:`.specification`).

    spikefit export model.nir --format xylo --target xylo-audio2 --out model.xylo.npz

Load it with ``XyloSim.from_specification(**spikefit_xylo.load_specification(path).kwargs())``.
"""
from __future__ import annotations

from pathlib import Path

from spikefit.network import Network

from .specification import save_specification, specification


class XyloExporter:
    """Writes what Rockpool's XyloSim loads; refuses (ExportError) what Xylo Audio 2 cannot run."""

    name = "xylo"
    neurons = ("xylo-lif",)

    def export(self, network: Network, path, target=None) -> Path:
        return save_specification(specification(network, target), path)

    def __repr__(self) -> str:
        return "XyloExporter()"
