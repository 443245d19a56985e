"""``spikefit export``: write a model in any registered export format (``nir`` built in, plugins' formats)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import plugins
from ..model_io import export_atomic, load_model
from ..outputs import check_output_path
from .options import DT

@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="nir", show_default=True,
              help="Export format: any registered exporter (nir is built in; `spikefit plugins` lists the others).")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Where to write the export.")
@click.option("--target", default=None, help="Target chip the export is for (recorded by the exporter).")
@click.option("--dt", type=DT, default=None,
              help="Seconds per step for a NIR model (default: detected, see docs/nir.md).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def export(model: Path, fmt: str, out: Path, target: str | None, dt: float | None, force: bool, as_json: bool) -> None:
    """Export MODEL (a NIR file, or a trainer checkpoint) in format FORMAT to OUT. With --target, the
    model is verified against the target too: exit 1 (after writing OUT) when it does not fit."""
    check_output_path(out)
    exporter = plugins.get_exporter(fmt)
    spec = plugins.get_target(target) if target else None
    network = load_model(model, dt)
    from ..capabilities import check_neuron
    from ..errors import ExportError

    check_neuron(exporter, network, spec, ExportError, "exporter")  # a chip neuron the format cannot express
    fits = None
    if spec is not None:
        from ..fitcheck import verify

        report = verify(network, spec)
        fits = bool(report.ok)
    path = export_atomic(network, exporter, out, spec, force)
    pops = network.populations()
    report_data = {"ok": fits is not False, "path": str(path), "format": fmt, "target": spec.name if spec else None,
                   "fits": fits, "dt": network.dt, "populations": len(pops), "neurons": sum(p.size for p in pops),
                   "exit_code": 1 if fits is False else 0}
    if as_json:
        click.echo(json.dumps(report_data, indent=2))
    else:
        on = f" for target {spec.name}" if spec else ""
        click.echo(f"wrote {path} ({fmt}{on}: {report_data['populations']} populations, {report_data['neurons']} "
                   f"neurons, dt={network.dt:g} s)")
    if fits is False:
        bad = report.failures[0]
        where = f" at {bad.worst}" if bad.worst else ""
        click.echo(f"Does not fit: the model does not fit target {spec.name!r}: {bad.name} uses {bad.usage} of "
                   f"{bad.limit}{where}; see `spikefit verify {model} --target {spec.name}`", err=True)
        raise SystemExit(1)
