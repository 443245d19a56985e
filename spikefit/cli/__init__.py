"""The ``spikefit`` command line: thin commands over the Python API, one module per concept."""
from __future__ import annotations

from importlib import import_module

import click

from ..errors import SpikefitError

# (module, command) pairs; each module defines one click command or group.
COMMANDS = [
    ("spikefit.cli.targets", "targets"),
    ("spikefit.cli.targets", "plugins"),
    ("spikefit.cli.verify", "verify"),
    ("spikefit.cli.fit", "fit"),
    ("spikefit.cli.export", "export"),
    ("spikefit.cli.run", "run"),
    ("spikefit.cli.bench", "bench"),
]


class SpikefitGroup(click.Group):
    """Turns SpikefitError into one line on stderr and exit code 2 (1 for "does not fit")."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpikefitError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(getattr(e, "exit_code", 2))


@click.group(cls=SpikefitGroup)
@click.version_option(package_name="spikefit")
def cli():
    """Fit spiking neural networks to neuromorphic chips: verify, train, export, run."""


def _install() -> None:
    for modname, attr in COMMANDS:
        try:
            mod = import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:  # command not built into this installation
                continue
            raise
        cli.add_command(getattr(mod, attr))
    from .. import plugins

    plugins.load_plugins()
    plugins.register_commands(cli)


_install()


def main() -> None:  # console_scripts entry point
    cli(prog_name="spikefit")


def warn_plugin_errors() -> None:
    """Print one line per plugin that failed to load (the others still work)."""
    from .. import plugins

    for line in plugins.load_errors:
        click.echo(f"Warning: {line}", err=True)
