"""``spikefit targets`` (list, ``show NAME``, ``check FILE``) and ``spikefit plugins``."""
from __future__ import annotations

import json
import warnings
from dataclasses import fields

import click

from .. import plugins as registry
from ..errors import PluginError
from ..spec import TargetSpec, load_target

UNCONSTRAINED = "-"


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def targets(ctx: click.Context, as_json: bool) -> None:
    """List the chip targets that spikefit knows (built-in catalog, plugins, SPIKEFIT_TARGETS_PATH).

    Values marked * are unverified: no primary source confirms them (see `spikefit targets show NAME`).
    """
    if ctx.invoked_subcommand is not None:
        return
    specs = registry.list_targets()
    _warn_plugin_errors()
    if as_json:
        click.echo(json.dumps({"ok": True, "targets": [s.to_dict() for s in specs], "exit_code": 0}, indent=2))
        return
    click.echo(targets_table(specs))
    click.echo(f"'{UNCONSTRAINED}' = unconstrained; * = unverified value (`spikefit targets show NAME` lists the sources)")


@targets.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(name: str, as_json: bool) -> None:
    """Show every field of target NAME (or of a .toml file), with its sources; unverified values are flagged."""
    spec = registry.get_target(name)
    _warn_plugin_errors()
    if as_json:
        click.echo(json.dumps(spec.to_dict(), indent=2))
    else:
        click.echo(describe(spec))


@targets.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def check(path: str, as_json: bool) -> None:
    """Validate the target spec in PATH (a TOML file): exit 0 when valid, 2 with the first error otherwise."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = load_target(path)
    notes = [str(w.message) for w in caught]
    clash = _registered_elsewhere(spec)
    if clash:
        notes.append(clash)
    for note in notes:
        click.echo(f"Warning: {note}", err=True)
    if as_json:
        click.echo(json.dumps({"ok": True, "path": path, "name": spec.name, "warnings": notes,
                               "spec": spec.to_dict()}, indent=2))
        return
    flagged = f"; unverified: {', '.join(spec.unverified)}" if spec.unverified else ""
    click.echo(f"ok: {path} defines target {spec.name!r} ({len(_set_limits(spec))} limits set{flagged})")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List the loaded plugins with their distributions, versions and hooks."""
    infos = registry.plugin_info()
    for kind in registry.KINDS:  # surface registration errors too
        try:
            registry.registry(kind)
        except PluginError as e:
            click.echo(f"Warning: {e}", err=True)
    _warn_plugin_errors()
    if as_json:
        click.echo(json.dumps({"ok": True, "plugins": infos, "exit_code": 0}, indent=2))
        return
    rows = [[p["name"], p["distribution"] or UNCONSTRAINED, p["version"] or UNCONSTRAINED,
             ", ".join(p["hooks"]) or "(none)"] for p in infos]
    click.echo(table(["name", "distribution", "version", "hooks"], rows))


# -- formatting ----------------------------------------------------------------------------------

def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def targets_table(specs: list[TargetSpec]) -> str:
    """The `spikefit targets` table: one row per target."""
    headers = ["name", "vendor", "neurons", "cores", "fan_in", "weight_bits", "M/scope", "models", "plugin"]
    rows = []
    for s in specs:
        lim = s.limits
        m = UNCONSTRAINED if lim.unique_weights is None else f"{lim.unique_weights}/{lim.unique_weights_scope}"
        rows.append([
            s.name, s.vendor or UNCONSTRAINED,
            _value(s, "limits.neurons"), _value(s, "limits.cores"), _value(s, "limits.fan_in"),
            _value(s, "limits.weight_bits"), m + ("*" if s.is_unverified("limits.unique_weights") else ""),
            ",".join(s.neuron.models), s.plugin or UNCONSTRAINED,
        ])
    return table(headers, rows)


def _value(spec: TargetSpec, key: str) -> str:
    section, leaf = key.split(".")
    val = getattr(getattr(spec, section), leaf)
    return _fmt(val) + ("*" if spec.is_unverified(key) else "")


def _fmt(val) -> str:
    if val is None:
        return UNCONSTRAINED
    if isinstance(val, bool):
        return str(val).lower()
    if isinstance(val, int):
        return f"{val:,}"
    if isinstance(val, (list, tuple)):
        return ", ".join(map(str, val)) if val else "[]"
    return str(val)


def describe(spec: TargetSpec) -> str:
    """Every field of ``spec``, grouped by section; unverified values are flagged."""
    lines = [f"{spec.name} ({spec.vendor or 'unknown vendor'})"]
    if spec.description:
        lines.append(f"  {spec.description}")
    lines += [f"plugin: {spec.plugin or UNCONSTRAINED}", f"file:   {spec.path or UNCONSTRAINED}"]
    for section in ("limits", "neuron", "core", "layers", "energy"):
        lines.append(f"[{section}]")
        part = getattr(spec, section)
        for f in fields(part):
            key = f"{section}.{f.name}"
            flag = "  (unverified)" if spec.is_unverified(key) else ""
            lines.append(f"  {f.name:<22}{_fmt(getattr(part, f.name))}{flag}")
    lines.append("sources:")
    lines += [f"  - {s}" for s in spec.sources] or ["  (none given)"]
    lines.append(f"unverified: {', '.join(spec.unverified) or '(none)'}")
    lines.append(f"'{UNCONSTRAINED}' = unconstrained")
    return "\n".join(lines)


def _set_limits(spec: TargetSpec) -> list[str]:
    return [f.name for f in fields(spec.limits) if f.type.startswith("int") and getattr(spec.limits, f.name) is not None]


def _registered_elsewhere(spec: TargetSpec) -> str | None:
    """A note when another registered target already uses this spec's name."""
    try:
        other = registry.registry("target").get(spec.name)
        clash = registry.conflict("target", spec.name)
    except PluginError:
        return None
    if clash:
        return clash
    if other is None or (other.path and spec.path and _same_file(other.path, spec.path)):
        return None
    return (f"target name {spec.name!r} is already registered by {other.plugin or 'another plugin'}; "
            f"rename it before installing it next to that one")


def _same_file(a: str, b: str) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _warn_plugin_errors() -> None:
    from . import warn_plugin_errors  # spikefit.cli imports this module while it is being built

    warn_plugin_errors()
