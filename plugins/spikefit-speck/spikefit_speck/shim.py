"""Inert placeholder modules for ``samna``, so that sinabs 3.1.3's ``sinabs.backend.dynapcnn`` imports
without it.

sinabs declares ``samna>=0.33`` as a dependency and imports it at module level: ``import samna`` in
``config_builder.py``, ``dynapcnn_network.py``, ``dynapcnn_visualizer.py`` and ``io.py`` (with
``import samnagui``), ``from samna.speck2e.configuration import SpeckConfiguration`` and
``from samna.speck2f.configuration import SpeckConfiguration`` in ``chips/``, and ``io.py`` evaluates the
annotation ``samna.device.DeviceInfo`` when it defines ``is_device_type``. samna itself cannot be
installed here (its package index entry downloads from a host these machines cannot reach).

What this plugin uses never calls samna: building ``DynapcnnNetwork(snn, input_shape, discretize=True)``,
its forward pass, ``ChipFactory("speck2fmodule").get_config_builder()``,
``.map_layers_to_cores(...)`` and ``.get_dynapcnn_layer_config_dict(...)``. What does call it
(``make_config``, ``validate_configuration``, ``.to("speck2f...")``, the visualizer) fails with
:class:`SamnaMissing` or an ``AttributeError`` that names the samna object it needed.

:func:`placeholders` is a context manager that puts the modules of :data:`PLACEHOLDERS` into
:data:`sys.modules` while it runs and removes them when it ends, so nothing outside an import of sinabs
ever sees a ``samna``. It does nothing when the real samna is importable. :func:`import_dynapcnn` is the
one place that uses it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from contextlib import contextmanager
from typing import Iterator

MARK = "__spikefit_placeholder__"


class SamnaMissing(RuntimeError):
    """A samna object was used: the part of sinabs that needs the real samna (hardware, make_config)."""


def _placeholder_class(qualname: str) -> type:
    """A class that stands for ``qualname`` and refuses to be instantiated."""

    def __init__(self, *args, **kwargs):
        raise SamnaMissing(f"{qualname} needs the real samna, which is not installed; spikefit-speck uses only "
                           f"the parts of sinabs that run without it (mapping, discretized forward pass)")

    module, _, name = qualname.rpartition(".")
    return type(name, (), {"__init__": __init__, "__module__": module, "__qualname__": name, MARK: True})


# module name -> the classes sinabs 3.1.3 reads from it while it is imported
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "samna": (),
    "samna.device": ("DeviceInfo",),
    "samna.speck2e": (),
    "samna.speck2e.configuration": ("SpeckConfiguration",),
    "samna.speck2f": (),
    "samna.speck2f.configuration": ("SpeckConfiguration",),
    "samnagui": (),
}


def _missing_attribute(module: str):
    def __getattr__(name: str):
        raise AttributeError(f"{module}.{name} needs the real samna, which is not installed "
                             f"(this {module!r} is spikefit-speck's placeholder)")
    return __getattr__


def build() -> dict[str, types.ModuleType]:
    """Fresh placeholder modules, submodules bound as attributes of their parents."""
    mods: dict[str, types.ModuleType] = {}
    for name, classes in PLACEHOLDERS.items():
        mod = types.ModuleType(name, f"spikefit-speck placeholder for {name} (the real samna is not installed)")
        mod.__dict__[MARK] = True
        mod.__dict__["__getattr__"] = _missing_attribute(name)
        for cls in classes:
            setattr(mod, cls, _placeholder_class(f"{name}.{cls}"))
        mods[name] = mod
    for name, mod in mods.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, mod)
    return mods


def real_samna() -> bool:
    """True when a real samna is importable (then no placeholder is ever installed)."""
    loaded = sys.modules.get("samna")
    if loaded is not None:
        return not getattr(loaded, MARK, False)
    try:
        return importlib.util.find_spec("samna") is not None
    except (ImportError, ValueError):
        return False


def is_placeholder(module: object) -> bool:
    return bool(getattr(module, MARK, False))


@contextmanager
def placeholders() -> Iterator[bool]:
    """Install the placeholders in :data:`sys.modules` for the duration of the block (yields True), or
    nothing when the real samna is importable (yields False). On exit exactly the names it added are
    removed; modules imported inside the block keep their references to the placeholders."""
    if real_samna():
        yield False
        return
    added = [name for name in PLACEHOLDERS if name not in sys.modules]
    mods = build()
    for name in added:
        sys.modules[name] = mods[name]
    try:
        yield True
    finally:
        for name in added:
            if is_placeholder(sys.modules.get(name)):
                del sys.modules[name]


def import_dynapcnn() -> types.ModuleType:
    """``sinabs.backend.dynapcnn``, imported with the placeholders in place when samna is missing.
    Raises ImportError when sinabs itself is not installed."""
    name = "sinabs.backend.dynapcnn"
    if name in sys.modules:
        return sys.modules[name]
    with placeholders():
        return importlib.import_module(name)
