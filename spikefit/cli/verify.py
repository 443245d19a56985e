"""``spikefit verify``: does a NIR model fit a chip? Exit 0 fits, 1 does not fit, 2 bad input."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .options import DT


@click.command()
@click.argument("model", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--target", "-t", "target", required=True,
              help="Target chip: a registered name (see `spikefit targets`) or a .toml spec file.")
@click.option("--dt", type=DT, default=None,
              help="Seconds per step used to read the NIR file (default: from the file, else 1e-3).")
@click.option("--vendor-check", is_flag=True,
              help="Also run the chip vendor's own fit check (from the chip's SDK plugin) and report it as its own row.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(model: Path, target: str, dt: float | None, vendor_check: bool, as_json: bool) -> None:
    """Check whether MODEL (a NIR file or a checkpoint of spikefit fit) fits TARGET: one row per limit the target declares, with the
    usage, the limit and where the usage is largest. Exit status 0: fits; 1: does not fit; 2: bad input."""
    from ..model_io import load_model
    from ..plugins import get_target
    from ..fitcheck import verify as check

    spec = get_target(target)
    network = load_model(model, dt=dt)
    report = check(network, spec)
    if vendor_check:
        from ..fitcheck import Row
        from ..plugins import registry
        from ..vendor import vendor_verdict

        v = vendor_verdict(network, spec)
        tool = registry("vendor_check")[spec.name].name
        report.rows.append(Row(f"vendor check ({tool})", "fits" if v.fits else "-" if v.fits is None else "does not fit",
                               "maps", v.fits is not False,
                               " ".join(v.message.split())[:70], v.message))
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "exit_code": 0 if report.ok else 1}, indent=2))
    else:
        click.echo(report.table())
        click.echo("")
        click.echo(report.verdict())
    raise SystemExit(0 if report.ok else 1)
