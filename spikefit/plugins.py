"""The plugin manager and the registries it fills.

One :class:`pluggy.PluginManager`, built once. :func:`load_plugins` is idempotent: it registers the
built-in plugins and the entry points of group ``spikefit``; ``SPIKEFIT_LOAD_PLUGINS=""`` loads no
third-party plugin, ``SPIKEFIT_LOAD_PLUGINS="a,b"`` only those. ``SPIKEFIT_TARGETS_PATH`` (os.pathsep
separated folders) adds TOML specs. A plugin that raises while loading or registering is reported by
name in :data:`load_errors` (one line each) and skipped; the others still load. Two owners of one
name are an error that names both, raised by the commands that use that name only: the name is
withdrawn from its registry, every other name still works, and listings warn about it.

Registries are filled lazily, one kind at a time, so that listing targets never imports the
exporters' or backends' modules.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, SpikefitError, UnknownTargetError
from .spec import TargetSpec, closest, load_target

ENTRY_POINT_GROUP = "spikefit"
BUILTIN_PLUGINS = ("spikefit.builtin",)
KINDS = {  # registry kind -> (hook that fills it, what the registered object must provide)
    "target": ("register_targets", None),
    "exporter": ("register_exporters", "export"),
    "backend": ("register_backends", "run"),
    "rule_set": ("register_rules", "applies_to"),
    "vendor_check": ("register_vendor_checks", "check"),
    "dataset": ("register_datasets", "load"),
}
KEY_ATTR = {"vendor_check": "target"}  # registry key of kinds not keyed by their name
DECLARING = ("exporter", "backend")  # kinds whose objects may declare inputs and neurons (spikefit.capabilities)

pm = pluggy.PluginManager("spikefit")
pm.add_hookspecs(hookspecs)

load_errors: list[str] = []  # one line per plugin (or spec file) that failed to load or register

_loaded = False
_loaded_names: list[str] = []                  # plugins load_plugins() registered (built-in + entry points)
_load_time_errors: list[str] = []              # errors found while loading entry points
_kind_errors: dict[str, list[str]] = {}        # kind (or "command") -> errors of its last registration round
_registries: dict[str, dict[str, Any]] = {}    # kind -> name -> object
_owners: dict[str, dict[str, str]] = {}        # kind -> name -> plugin name (or spec file origin)
_conflicts: dict[str, dict[str, str]] = {}     # kind -> name registered twice -> the error naming both owners


def load_plugins() -> None:
    """Register the built-in plugins and the entry points of group ``spikefit``, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for modname in BUILTIN_PLUGINS:
        mod = importlib.import_module(modname)
        if not pm.is_registered(mod):
            pm.register(mod, modname)
            _loaded_names.append(modname)
    wanted = os.environ.get("SPIKEFIT_LOAD_PLUGINS")
    allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
    seen: dict[str, str] = {}
    eps = _entry_points()
    for ep in eps:
        if allow is not None and ep.name not in allow:
            continue
        dist = ep.dist.name if ep.dist else "?"
        if ep.name in seen:
            if seen[ep.name] != dist:
                _load_time_errors.append(f"plugin {ep.name!r} is provided by two distributions, {seen[ep.name]!r} "
                                         f"and {dist!r}; only the first was loaded, uninstall one of them")
            continue
        seen[ep.name] = dist
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, ep.name)
        except Exception as e:  # a broken plugin must not take the others down
            _load_time_errors.append(f"plugin {ep.name!r} failed to load: {_one_line(e)}")
            continue
        _loaded_names.append(ep.name)
        _reject_unknown_hooks(ep.name, plugin)
    for name in sorted((allow or set()) - {ep.name for ep in eps}):
        installed = ", ".join(sorted({ep.name for ep in eps})) or "(none)"
        _load_time_errors.append(f"SPIKEFIT_LOAD_PLUGINS names {name!r}, which no installed plugin provides; "
                                 f"installed plugins: {installed}")
    reset_registries()


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of group ``spikefit``."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def reload_plugins() -> None:
    """Unregister what :func:`load_plugins` registered and load again (after changing the environment).

    Plugins registered directly with ``pm.register`` (e.g. by tests) stay registered.
    """
    global _loaded
    for name in _loaded_names:
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
    _loaded_names.clear()
    _load_time_errors.clear()
    _loaded = False
    load_plugins()


def reset_registries() -> None:
    """Forget what hooks registered, so the next lookup calls them again (tests, new plugins)."""
    _registries.clear()
    _owners.clear()
    _conflicts.clear()
    _kind_errors.clear()
    _sync_errors()


def _sync_errors() -> None:
    load_errors[:] = [*_load_time_errors, *(e for kind in ("command", *KINDS) for e in _kind_errors.get(kind, []))]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _reject_unknown_hooks(name: str, plugin: Any) -> None:
    """A hookimpl whose name matches no hookspec (a typo) would be silently ignored: report it instead."""
    unknown = [c.name for c in pm.get_hookcallers(plugin) or [] if c.spec is None]
    if not unknown:
        return
    pm.unregister(plugin)
    for hook in unknown:  # drop the spec-less hook callers the typo created
        caller = getattr(pm.hook, hook, None)
        if caller is not None and caller.spec is None and not caller.get_hookimpls():
            delattr(pm.hook, hook)
    _loaded_names.remove(name)
    specs = [n for n in dir(hookspecs) if n.startswith("register_")]
    near = closest(unknown[0], specs)
    hint = f" (did you mean {near!r}?)" if near else ""
    _load_time_errors.append(f"plugin {name!r} implements unknown hook {unknown[0]!r}{hint}; "
                             f"known hooks: {', '.join(specs)}; the plugin was not loaded")


def register_commands(cli) -> None:
    """Call every plugin's ``register_commands`` hook on the click group ``cli``; a plugin that raises
    is named in :data:`load_errors` and the others' commands are still added."""
    load_plugins()
    errors = _kind_errors["command"] = []
    for impl in pm.hook.register_commands.get_hookimpls():
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            impl.function(**{arg: cli for arg in impl.argnames})
        except Exception as e:
            errors.append(f"plugin {impl.plugin_name!r} raised while registering commands: {_one_line(e)}")
    _sync_errors()


# -- registries ----------------------------------------------------------------------------------

def _collect(kind: str, conflicts: dict[str, str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Call the hook of ``kind`` on every plugin separately, so that one failing plugin is named and
    skipped while the others still register."""
    hook_name, method = KINDS[kind]
    items: dict[str, Any] = {}
    owners: dict[str, str] = {}
    errors: list[str] = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():  # registration order
        if impl.hookwrapper or impl.wrapper:  # wrappers register nothing themselves
            continue
        owner = impl.plugin_name
        got: list[Any] = []
        try:
            impl.function(**{arg: got.append for arg in impl.argnames})
        except Exception as e:
            errors.append(f"plugin {owner!r} raised while registering {kind}s: {_one_line(e)}")
            continue
        try:
            names = [_check(kind, method, obj) for obj in got]
        except PluginError as e:
            errors.append(f"plugin {owner!r} {e}; its {kind}s were skipped")
            continue
        for name, obj in zip(names, got):
            _add(kind, items, owners, name, obj, owner, conflicts)
    return items, owners, errors


def _check(kind: str, method: str | None, obj: Any) -> str:
    if kind == "target":
        if not isinstance(obj, TargetSpec):
            raise PluginError(f"registered {obj!r} as a target, which must be a spikefit.TargetSpec (spikefit.load_target)")
        return obj.name
    key = KEY_ATTR.get(kind, "name")
    name = getattr(obj, key, None)
    if not isinstance(name, str) or not name or not callable(getattr(obj, method, None)):
        raise PluginError(f"registered {obj!r} as {kind}, which needs a string {key!r} and a '{method}' method")
    if kind in DECLARING:
        from .capabilities import declared

        bad = declared(obj)
        if bad:
            raise PluginError(f"registered {kind} {name!r}, which {bad}")
    return name


def _add(kind: str, items: dict, owners: dict, name: str, obj: Any, owner: str, conflicts: dict[str, str]) -> None:
    """Register ``name``; a second owner withdraws the name and records the error naming both."""
    if name in conflicts:
        return
    if name in items:
        first = owners[name]
        if first == owner:
            msg = (f"duplicate {kind} name {name!r}: {_describe_owner(owner)} registered it twice; "
                   f"register each {kind} once")
        else:
            msg = (f"duplicate {kind} name {name!r}: registered by {_describe_owner(first)} and by "
                   f"{_describe_owner(owner)}; rename one of them or uninstall one plugin")
        conflicts[name] = msg
        del items[name]
        return
    items[name] = obj
    owners[name] = owner


def _describe_owner(owner: str) -> str:
    return owner[len("file:"):] if owner.startswith("file:") else f"plugin {owner!r}"


def _spec_files(items: dict, owners: dict, errors: list[str], conflicts: dict[str, str]) -> None:
    """Add the TOML specs found in the folders of ``SPIKEFIT_TARGETS_PATH``."""
    for folder in filter(None, os.environ.get("SPIKEFIT_TARGETS_PATH", "").split(os.pathsep)):
        if not Path(folder).is_dir():
            errors.append(f"SPIKEFIT_TARGETS_PATH folder {folder!r} does not exist; fix or remove it")
            continue
        for path in sorted(Path(folder).glob("*.toml")):
            try:
                spec = load_target(path)
            except SpikefitError as e:
                errors.append(f"skipped target file (SPIKEFIT_TARGETS_PATH): {e}")
                continue
            _add("target", items, owners, spec.name, spec, f"file:{str(path)!r} (SPIKEFIT_TARGETS_PATH)", conflicts)


def registry(kind: str) -> dict[str, Any]:
    """Name -> object for one kind ("target", "exporter", "backend", "rule_set", "vendor_check", "dataset"),
    filled on first use."""
    load_plugins()
    if kind not in _registries:
        conflicts: dict[str, str] = {}
        items, owners, errors = _collect(kind, conflicts)
        if kind == "target":
            _spec_files(items, owners, errors, conflicts)
            items = {n: replace(s, plugin=_plugin_label(owners[n])) for n, s in items.items()}
        errors += [f"{msg} (commands that name {name!r} fail until then)" for name, msg in conflicts.items()]
        _registries[kind], _owners[kind], _kind_errors[kind] = items, owners, errors
        _conflicts[kind] = conflicts
        _sync_errors()
    return _registries[kind]


def _plugin_label(owner: str) -> str:
    return "SPIKEFIT_TARGETS_PATH" if owner.startswith("file:") else owner


def registries() -> dict[str, dict[str, Any]]:
    """Every registry, filled."""
    return {kind: registry(kind) for kind in KINDS}


def _lookup(kind: str, name: str) -> Any:
    reg = registry(kind)
    if name in reg:
        return reg[name]
    if name in _conflicts.get(kind, {}):
        raise PluginError(_conflicts[kind][name])
    known = sorted(reg)
    near = closest(name, known)
    hint = f"; did you mean {near!r}?" if near else "."
    where = ("add one with a plugin or a TOML file in SPIKEFIT_TARGETS_PATH" if kind == "target" else
             "install a plugin that provides it (`spikefit plugins` lists the loaded ones; docs/plugins.md the "
             "plugins in this repository)")
    err = UnknownTargetError if kind == "target" else PluginError
    raise err(f"unknown {kind} {name!r}{hint} Known {kind}s: {', '.join(known) or '(none)'}; {where}")


def get_target(name: str | Path | TargetSpec) -> TargetSpec:
    """The registered target called ``name``; a path to a ``.toml`` file loads that spec instead.

    :raises UnknownTargetError: listing the known targets and the closest name.
    """
    if isinstance(name, TargetSpec):
        return name
    if isinstance(name, Path) or (isinstance(name, str) and name.endswith(".toml")):
        return load_target(name)
    return _lookup("target", name)


def get_exporter(name: str):
    """The registered exporter called ``name`` (``export(network, path, target)``)."""
    return _lookup("exporter", name)


def get_backend(name: str):
    """The registered backend called ``name`` (``run(network, inputs)``)."""
    return _lookup("backend", name)


def get_dataset(name: str):
    """The registered dataset called ``name`` (``load(root=None, steps=None) -> Dataset``).

    :raises DatasetError: an unknown name, listing the registered ones.
    """
    reg = registry("dataset")
    if name not in reg:
        from .errors import DatasetError

        raise DatasetError(f"unknown dataset {name!r}; use one of {', '.join(sorted(reg))}, or pass --data FILE "
                           "(.npz / HDF5 with x_train, y_train, x_test, y_test)")
    return reg[name]


def list_targets() -> list[TargetSpec]:
    """Every registered target, sorted by name."""
    return sorted(registry("target").values(), key=lambda s: s.name)


def conflict(kind: str, name: str) -> str | None:
    """The error naming both owners when ``name`` was registered twice, else None."""
    registry(kind)
    return _conflicts.get(kind, {}).get(name)


def owner_of(kind: str, name: str) -> str:
    """The plugin (or ``file:...`` origin) that registered ``name``."""
    registry(kind)
    return _owners[kind][name]


def plugin_info() -> list[dict]:
    """Loaded plugins with their hooks, distributions and versions (for ``spikefit plugins``)."""
    load_plugins()
    dists: dict[str, tuple[str | None, str | None]] = {}
    for ep in _entry_points():
        dists.setdefault(ep.name, (ep.dist.name, ep.dist.version) if ep.dist else (None, None))
    out = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist, version = dists.get(name, ("spikefit", _version()) if name in BUILTIN_PLUGINS else (None, None))
        out.append({"name": name, "hooks": hooks, "distribution": dist, "version": version})
    return sorted(out, key=lambda p: (p["name"] not in BUILTIN_PLUGINS, p["name"]))


def _version() -> str:
    try:
        return importlib.metadata.version("spikefit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


__all__ = ["ENTRY_POINT_GROUP", "pm", "load_plugins", "reload_plugins", "reset_registries", "register_commands", "registry",
           "registries", "get_target", "get_exporter", "get_backend", "get_dataset", "list_targets", "owner_of",
           "conflict",
           "plugin_info", "load_errors"]
