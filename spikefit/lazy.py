"""Attributes a package exports without importing their modules until first use (PEP 562)."""
from __future__ import annotations

from importlib import import_module


def lazy_attributes(module: str, names: dict[str, str], namespace: dict):
    """A module ``__getattr__`` that imports ``names[attr]`` on first access to ``attr`` and caches it
    in ``namespace`` (the package's ``globals()``)."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
