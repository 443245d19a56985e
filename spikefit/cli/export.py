"""``spikefit export``: write a model in any registered export format (``nir``, ``lava``, plugins)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import click

from .. import plugins
from ..errors import ExportError, ModelError
from ..network import Network

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def load_model(path, dt: float | None = None) -> Network:
    """A NIR file (:func:`spikefit.nir_io.read_nir`) or a trainer checkpoint (``.pt``), when the
    installed spikefit has ``spikefit.trainer.load_network``."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        from ..nir_io import read_nir

        return read_nir(path, dt=dt)
    try:
        from ..trainer import load_network
    except ImportError:
        raise ModelError(f"model file '{path}' is a checkpoint, but this spikefit has no trainer "
                         "(spikefit.trainer.load_network) to read it; export the model as a NIR file") from None
    network = load_network(path)
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


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="nir", show_default=True,
              help="Export format: any registered exporter (nir; lava with spikefit-lava).")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Where to write the export.")
@click.option("--target", default=None, help="Target chip the export is for (recorded by the exporter).")
@click.option("--dt", type=float, default=None,
              help="Seconds per step for a NIR model (default: detected, see docs/nir.md).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def export(model: Path, fmt: str, out: Path, target: str | None, dt: float | None, force: bool, as_json: bool) -> None:
    """Export MODEL (a NIR file, or a trainer checkpoint) in format FORMAT to OUT."""
    exporter = plugins.get_exporter(fmt)
    spec = plugins.get_target(target) if target else None
    network = load_model(model, dt)
    path = export_atomic(network, exporter, out, spec, force)
    pops = network.populations()
    report = {"path": str(path), "format": fmt, "target": spec.name if spec else None, "dt": network.dt,
              "populations": len(pops), "neurons": sum(p.size for p in pops)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        on = f" for target {spec.name}" if spec else ""
        click.echo(f"wrote {path} ({fmt}{on}: {report['populations']} populations, {report['neurons']} neurons, "
                   f"dt={network.dt:g} s)")
