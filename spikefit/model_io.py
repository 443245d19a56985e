"""Reading models from files and writing exports without leaving partial files."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import ExportError, ModelError
from .network import Network, check_graph

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def load_model(path, dt: float | None = None) -> Network:
    """``path`` as a Network: a Network itself, a NIR file (:func:`spikefit.nir_io.read_nir`) or a
    checkpoint of ``spikefit fit`` (``.pt``: :func:`spikefit.trainer.load_network`)."""
    if isinstance(path, Network):
        return path
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        from .nir_io import read_nir

        return read_nir(path, dt=dt)
    from .trainer import load_network

    network = load_network(path)
    check_graph(network)
    if dt is not None:
        network.dt = float(dt)
    return network


def export_atomic(network: Network, exporter, out, target=None, force: bool = False) -> Path:
    """Run ``exporter`` into a temporary folder beside ``out``, then rename the result onto ``out``:
    ``out`` is either the complete export or untouched, never a partial file."""
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not force:
        raise ExportError(f"output '{out}' already exists; pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = exporter.export(network, work / out.name, target)
        written = Path(written) if written is not None else work / out.name
        if not written.exists():
            raise ExportError(f"exporter {exporter.name!r} wrote nothing at '{written}'; it must write the path it returns")
        if out.is_dir() and not out.is_symlink():
            os.replace(out, work / ".replaced")  # a folder cannot be renamed over; keep it until the new one is in place
        os.replace(written, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
