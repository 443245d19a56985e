"""Import hook that lets lava-nc 0.10.0 import on Python 3.11+.

``lava/magma/compiler/var_model.py`` declares dataclass fields with an instance default
(``x: ByteEncoder = ByteEncoder()``). Python 3.11 rejects such mutable defaults when the class is
created (``ValueError: mutable default ... for field x is not allowed``), so ``import lava`` fails.

:func:`install` puts a meta-path finder in front of :data:`sys.meta_path` that intercepts that one
module only: it reads the installed source, rewrites exactly those defaults to
``field(default_factory=ByteEncoder)`` (adding ``field`` to the ``dataclasses`` import), compiles and
executes it. Nothing on disk changes and no bytecode is cached. It does nothing on Python < 3.11 and
steps aside when the source needs no rewrite (a fixed Lava release).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys

TARGET = "lava.magma.compiler.var_model"

# ``    x: ByteEncoder = ByteEncoder()`` (a dataclass field whose default is a shared instance)
_DEFAULT = re.compile(r"^(?P<head>[ \t]+\w+[ \t]*:[ \t]*ByteEncoder[ \t]*=[ \t]*)ByteEncoder\(\)[ \t]*$", re.M)
_IMPORT = re.compile(r"^from dataclasses import (?P<names>[^\n(]+?)[ \t]*$", re.M)


def rewrite(source: str) -> str:
    """``source`` with every ``name: ByteEncoder = ByteEncoder()`` field default replaced by
    ``field(default_factory=ByteEncoder)``; unchanged when there is none."""
    fixed, count = _DEFAULT.subn(r"\g<head>field(default_factory=ByteEncoder)", source)
    if count == 0:
        return source
    match = _IMPORT.search(fixed)
    if match is None:
        return "from dataclasses import field\n" + fixed
    names = [n.strip() for n in match.group("names").split(",")]
    if "field" not in names:
        line = "from dataclasses import " + ", ".join(names + ["field"])
        fixed = fixed[:match.start()] + line + fixed[match.end():]
    return fixed


def needed() -> bool:
    """True on Python versions that reject mutable dataclass defaults (3.11 and later)."""
    return sys.version_info[:2] >= (3, 11)


class _RewritingLoader(importlib.abc.Loader):
    """Executes the rewritten source of one module (no bytecode cache: the cached bytecode next
    to the installed file belongs to the unrewritten source)."""

    def __init__(self, source: str, path: str):
        self.source = source
        self.path = path

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        code = compile(self.source, self.path, "exec", dont_inherit=True)
        exec(code, module.__dict__)

    def get_source(self, fullname: str) -> str:  # tracebacks and inspect show the code that ran
        return self.source


class VarModelFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`TARGET` where the regular path finder does and loads it rewritten."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        with open(spec.origin, encoding="utf-8") as f:
            source = f.read()
        fixed = rewrite(source)
        if fixed == source:
            return None  # already fixed: the regular loader (with its bytecode cache) takes it
        return importlib.util.spec_from_file_location(fullname, spec.origin,
                                                      loader=_RewritingLoader(fixed, spec.origin))


def installed() -> bool:
    return any(isinstance(f, VarModelFinder) for f in sys.meta_path)


def install() -> bool:
    """Put the finder first on :data:`sys.meta_path` (idempotent). Returns True when it is in place,
    False on Python < 3.11, where Lava imports as released."""
    if not needed():
        return False
    if not installed():
        sys.meta_path.insert(0, VarModelFinder())
    return True


def uninstall() -> None:
    """Remove the finder (modules it already loaded stay loaded)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, VarModelFinder)]
