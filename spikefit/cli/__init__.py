"""The ``spikefit`` command line: thin commands over the Python API, one module per concept."""
from __future__ import annotations

import json
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


JSON_FLAG = "spikefit.json"  # ctx.meta key: --json was given, so errors print a JSON object too


def fail(ctx: click.Context, message: str, code: int = 2) -> None:
    """End the command with one line on stderr and exit ``code``; under ``--json`` also print
    ``{"ok": false, "error": ..., "exit_code": ...}`` on stdout (docs/cli.md)."""
    message = " ".join(str(message).split())
    if ctx.meta.get(JSON_FLAG):
        click.echo(json.dumps({"ok": False, "error": message, "exit_code": code}))
    click.echo(f"Error: {message}", err=True)
    ctx.exit(code)


def _usage_line(e: click.UsageError) -> str:
    where = e.ctx.command_path if e.ctx is not None else "spikefit"
    return f"{e.format_message()} (see '{where} --help')"


class SpikefitGroup(click.Group):
    """The exit-code contract (docs/cli.md): 0 ok or fits, 1 does not fit, 2 bad input. A
    SpikefitError, a usage error or an unreadable path is one line on stderr and exit 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[JSON_FLAG] = "--json" in args[:args.index("--")] if "--" in args else "--json" in args
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            fail(ctx, _usage_line(e))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SpikefitError as e:
            fail(ctx, str(e), getattr(e, "exit_code", 2))
        except click.UsageError as e:
            fail(ctx, _usage_line(e))
        except MemoryError:
            fail(ctx, "out of memory; run fewer samples or steps (docs/cli.md, input bounds)")
        except OSError as e:  # e.g. a disk that filled up while writing
            where = f" '{e.filename}'" if e.filename else ""
            fail(ctx, f"{e.strerror or type(e).__name__}{where}; check the path and free space")


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
