"""The import hook that lets lava-nc 0.10.0 import on Python 3.11: the rewrite, the finder, install."""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spikefit_lava import shim

FIXED = "field(default_factory=ByteEncoder)"


def installed_var_model() -> Path:
    """The var_model.py that lava-nc installed (located without importing lava)."""
    spec = importlib.util.find_spec("lava")
    return Path(list(spec.submodule_search_locations)[0]) / "magma" / "compiler" / "var_model.py"


@pytest.fixture
def restore_shim():
    yield
    shim.install()


def test_rewrite_of_the_installed_file_changes_exactly_the_mutable_defaults():
    source = installed_var_model().read_text(encoding="utf-8")
    fixed = shim.rewrite(source)
    before, after = source.splitlines(), fixed.splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after)
    # lava-nc 0.10.0: CoreEncoder x/y/p, ChipEncoder x/y/z, AxonEncoder hi/lo, and the import line.
    assert len(changed) == 9
    assert ("from dataclasses import dataclass, InitVar", "from dataclasses import dataclass, InitVar, field") in changed
    assert sorted(b.split(":")[0].strip() for a, b in changed if FIXED in b) == ["hi", "lo", "p", "x", "x", "y", "y", "z"]
    assert "ByteEncoder()" not in fixed
    ast.parse(fixed)
    assert shim.rewrite(fixed) == fixed  # idempotent: a fixed file is left alone


def test_rewrite_of_a_snippet_gives_each_instance_its_own_default():
    snippet = textwrap.dedent("""\
        from dataclasses import dataclass

        @dataclass
        class ByteEncoder:
            base: int = 0

        @dataclass
        class Pair:
            a: ByteEncoder = ByteEncoder()
            b : ByteEncoder  =  ByteEncoder()
            n: int = 3

        def helper():
            enc = ByteEncoder()
            return enc
        """)
    with pytest.raises(ValueError, match="mutable default"):
        exec(compile(snippet, "<snippet>", "exec"), {})
    fixed = shim.rewrite(snippet)
    assert "from dataclasses import dataclass, field\n" in fixed
    assert fixed.count(FIXED) == 2
    assert "    n: int = 3" in fixed and "    enc = ByteEncoder()" in fixed  # other lines untouched
    ns: dict = {}
    exec(compile(fixed, "<snippet>", "exec"), ns)
    one, two = ns["Pair"](), ns["Pair"]()
    assert one.a == ns["ByteEncoder"]() and one.a is not two.a


def test_rewrite_adds_the_import_when_the_module_has_none_and_leaves_clean_sources_alone():
    assert shim.rewrite("    x: ByteEncoder = ByteEncoder()\n") == "from dataclasses import field\n    x: ByteEncoder = " + FIXED + "\n"
    clean = "from dataclasses import dataclass\nx = 1\n"
    assert shim.rewrite(clean) is clean


def test_finder_handles_only_var_model_and_steps_aside_when_the_file_is_fixed(tmp_path):
    finder = shim.VarModelFinder()
    assert finder.find_spec("lava.proc.lif.process", None) is None
    folder = tmp_path / "compiler"
    folder.mkdir()
    target = folder / "var_model.py"
    target.write_text("from dataclasses import dataclass\n\n@dataclass\nclass A:\n    x: ByteEncoder = ByteEncoder()\n")
    spec = finder.find_spec(shim.TARGET, [str(folder)])
    assert spec is not None and spec.origin == str(target)
    assert FIXED in spec.loader.get_source(shim.TARGET)
    target.write_text(shim.rewrite(target.read_text()))
    assert finder.find_spec(shim.TARGET, [str(folder)]) is None  # the regular loader takes a fixed file


def test_lava_imports_after_install_and_not_without_it():
    # Fresh interpreters: this one may have imported Lava already.
    code = ("import spikefit_lava.shim as s; assert s.install(); import lava.magma.compiler.var_model as m; "
            "from lava.proc.lif.process import LIF; print(m.CoreEncoder().x is not m.CoreEncoder().x)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    plain = subprocess.run([sys.executable, "-c", "import lava.magma.compiler.var_model"], capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode != 0 and "mutable default" in plain.stderr  # the installed file is unpatched


def test_importing_the_package_installs_the_shim():
    import spikefit_lava

    assert shim.installed() and spikefit_lava.install_shim is shim.install
    assert sum(isinstance(f, shim.VarModelFinder) for f in sys.meta_path) == 1
    shim.install()
    assert sum(isinstance(f, shim.VarModelFinder) for f in sys.meta_path) == 1  # idempotent


def test_install_does_nothing_on_python_3_10(monkeypatch, restore_shim):
    shim.uninstall()
    monkeypatch.setattr(sys, "version_info", (3, 10, 13, "final", 0))
    assert shim.needed() is False
    assert shim.install() is False
    assert not shim.installed()
    monkeypatch.undo()
    assert shim.install() is True and shim.installed()
