"""A regular (non-editable) install ships every subpackage of spikefit."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_for_setuptools():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "spikefit").rglob("__init__.py")
               if "__pycache__" not in p.parts}
    assert on_disk - listed == set(), f"subpackages missing from pyproject.toml: {sorted(on_disk - listed)}"
    assert "spikefit.targets" in listed   # the catalog TOMLs, mapped from targets/
