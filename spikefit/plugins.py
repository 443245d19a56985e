"""The plugin manager and the registries it fills.

One :class:`pluggy.PluginManager`, built once. :func:`load_plugins` is idempotent: it registers the
built-in plugins and the entry points of group ``spikefit``; ``SPIKEFIT_LOAD_PLUGINS=""`` loads no
third-party plugin, ``SPIKEFIT_LOAD_PLUGINS="a,b"`` only those. ``SPIKEFIT_TARGETS_PATH`` (os.pathsep
separated folders) adds TOML specs. A plugin that raises while loading or registering is reported by
name and skipped; the others still load.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, SpecError, UnknownTargetError
from .spec import TargetSpec, closest, load_target

ENTRY_POINT_GROUP = "spikefit"
BUILTIN_PLUGINS = ("spikefit.builtin",)

pm = pluggy.PluginManager("spikefit")
pm.add_hookspecs(hookspecs)

_loaded = False
_registries: dict[str, dict[str, Any]] | None = None
_owners: dict[str, dict[str, str]] = {}
load_errors: list[str] = []  # one line per plugin that failed to load or register


def load_plugins() -> None:
    """Register built-in and entry-point plugins once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for modname in BUILTIN_PLUGINS:
        mod = importlib.import_module(modname)
        if not pm.is_registered(mod):
            pm.register(mod, modname)
    wanted = os.environ.get("SPIKEFIT_LOAD_PLUGINS")
    allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allow is not None and ep.name not in allow:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, ep.name)
        except Exception as e:  # a broken plugin must not take the others down
            load_errors.append(f"plugin {ep.name!r} failed to load: {type(e).__name__}: {e}")
    reset_registries()


def reset_registries() -> None:
    """Forget what hooks registered, so the next lookup calls them again (tests, new plugins)."""
    global _registries
    _registries = None


def _plugin_name(plugin: Any) -> str:
    return pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))


def _collect(hook_name: str, kind: str, check) -> tuple[dict[str, Any], dict[str, str]]:
    """Call ``hook_name`` on every plugin separately, so one failing plugin is named and skipped."""
    items: dict[str, Any] = {}
    owners: dict[str, str] = {}
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls()[::-1]:  # registration order
        owner = impl.plugin_name
        got: list[Any] = []
        try:
            impl.function(**{a: got.append for a in impl.argnames})
        except Exception as e:
            load_errors.append(f"plugin {owner!r} raised while registering {kind}s: {type(e).__name__}: {e}")
            continue
        for obj in got:
            name = check(obj, owner)
            if name in items:
                raise PluginError(f"duplicate {kind} name {name!r}: registered by plugin {owners[name]!r} and by "
                                  f"plugin {owner!r}; rename one of them or uninstall one plugin")
            items[name] = obj
            owners[name] = owner
    return items, owners


def _check_target(obj: Any, owner: str) -> str:
    if not isinstance(obj, TargetSpec):
        raise PluginError(f"plugin {owner!r} registered {obj!r} as a target; register a spikefit.TargetSpec")
    return obj.name


def _check_named(kind: str, method: str):
    def check(obj: Any, owner: str) -> str:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not callable(getattr(obj, method, None)):
            raise PluginError(f"plugin {owner!r} registered {obj!r} as {kind}; it needs a 'name' and a '{method}' method")
        return name
    return check


def registries() -> dict[str, dict[str, Any]]:
    global _registries
    load_plugins()
    if _registries is None:
        targets, towners = _collect("register_targets", "target", _check_target)
        for folder in filter(None, os.environ.get("SPIKEFIT_TARGETS_PATH", "").split(os.pathsep)):
            for path in sorted(Path(folder).glob("*.toml")):
                spec = load_target(path)
                if spec.name in targets:
                    raise PluginError(f"duplicate target name {spec.name!r}: registered by plugin "
                                      f"{towners[spec.name]!r} and by {str(path)!r} (SPIKEFIT_TARGETS_PATH); rename one")
                targets[spec.name] = spec
                towners[spec.name] = f"SPIKEFIT_TARGETS_PATH:{folder}"
        targets = {n: replace(s, plugin=towners[n]) for n, s in targets.items()}
        exporters, eowners = _collect("register_exporters", "exporter", _check_named("an exporter", "export"))
        backends, bowners = _collect("register_backends", "backend", _check_named("a backend", "run"))
        _registries = {"target": targets, "exporter": exporters, "backend": backends}
        _owners.update({"target": towners, "exporter": eowners, "backend": bowners})
    return _registries


def _lookup(kind: str, name: str, install_hint: str = "") -> Any:
    reg = registries()[kind]
    if name in reg:
        return reg[name]
    known = sorted(reg)
    near = closest(name, known)
    hint = f"; did you mean {near!r}?" if near else ""
    err = UnknownTargetError if kind == "target" else PluginError
    raise err(f"unknown {kind} {name!r}{hint} Known {kind}s: {', '.join(known) or '(none)'}{install_hint}")


def get_target(name: str) -> TargetSpec:
    """The registered target called ``name``; an unknown name lists the known ones."""
    if isinstance(name, TargetSpec):
        return name
    return _lookup("target", name)


def get_exporter(name: str):
    hint = ". The 'lava' exporter comes with the spikefit-lava plugin: pip install -e plugins/spikefit-lava" if name == "lava" else ""
    return _lookup("exporter", name, hint)


def get_backend(name: str):
    hint = ". The 'lava' backend comes with the spikefit-lava plugin: pip install -e plugins/spikefit-lava" if name == "lava" else ""
    return _lookup("backend", name, hint)


def list_targets() -> list[TargetSpec]:
    return sorted(registries()["target"].values(), key=lambda s: s.name)


def owner_of(kind: str, name: str) -> str:
    registries()
    return _owners[kind][name]


def plugin_info() -> list[dict]:
    """Loaded plugins with their hooks and versions (for ``spikefit plugins``)."""
    load_plugins()
    dists = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dists[ep.name] = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
    out = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist, version = dists.get(name, ("spikefit", _version()) if name in BUILTIN_PLUGINS else (None, None))
        out.append({"name": name, "hooks": hooks, "distribution": dist, "version": version})
    return out


def _version() -> str:
    try:
        return importlib.metadata.version("spikefit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
