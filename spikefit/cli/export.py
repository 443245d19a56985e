"""``spikefit export``: write a model in any registered export format (``nir``, ``lava``, plugins)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import plugins
from ..model_io import export_atomic, load_model

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
