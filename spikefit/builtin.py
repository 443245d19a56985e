"""The built-in plugin: registers the chip catalog (``targets/*.toml``, shipped as package data)
through the same hook any third-party plugin uses, plus the core exporters, backends and datasets."""
from __future__ import annotations

from importlib import resources

from .hookspecs import hookimpl
from .spec import load_target


def catalog_files():
    """The catalog's TOML files (``targets/*.toml``, installed as ``spikefit.targets``), by name."""
    folder = resources.files("spikefit.targets")
    return sorted((p for p in folder.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)


def catalog_rules():
    """The catalog's rule sets: every ``targets/*.py`` module that defines ``RULES``."""
    import importlib

    folder = resources.files("spikefit.targets")
    names = sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))
    mods = [importlib.import_module(f"spikefit.targets.{n}") for n in names]
    return [m.RULES for m in mods if hasattr(m, "RULES")]


@hookimpl
def register_targets(register):
    for path in catalog_files():
        with resources.as_file(path) as real:
            register(load_target(real))


@hookimpl
def register_rules(register):
    for rule_set in catalog_rules():
        register(rule_set)


# The exporter and backend modules import numerical libraries; the registry calls these hooks only
# when an exporter or backend is first looked up, so listing targets stays fast.
@hookimpl
def register_exporters(register):
    from .nir_io import NirExporter

    register(NirExporter())


@hookimpl
def register_backends(register):
    from .emulator import EmulatorBackend

    register(EmulatorBackend())               # bit-accurate fixed point (docs/deploy.md)
    register(EmulatorBackend(mode="float"))   # the reference discrete semantics in float64


@hookimpl
def register_datasets(register):
    from .datasets import EMBEDDED
    from .events import EVENT_DATASETS

    for provider in (*EMBEDDED, *EVENT_DATASETS):
        register(provider)
