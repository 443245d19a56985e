"""spikefit_xylo.vendor_import: Rockpool's Xylo Audio 2 mapper and XyloSim load without samna, through
hollow package modules, and only when a check runs."""
from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_plain_import_needs_samna_which_is_not_installed():
    out = run("import rockpool.devices.xylo.syns61201")
    assert out.returncode != 0 and "No module named 'samna'" in out.stderr


def test_load_imports_the_mapper_and_xylosim_without_samna():
    code = ("import sys; from spikefit_xylo import vendor_import as v; rp = v.load(); "
            "import rockpool.devices.xylo.syns61201 as xa2, rockpool.devices.xylo as xylo; "
            "print(rp.mapper.__module__, rp.XyloSim.__module__, v.hollow(), xa2.__spikefit_hollow__, "
            "xylo.syns61201 is xa2, 'samna' in sys.modules, v.load().mapper is rp.mapper)")
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["rockpool.devices.xylo.syns61201.xylo_mapper",
                                  "rockpool.devices.xylo.syns61201.xylo_sim", "True", "True", "True", "False", "True"]


def test_the_hollow_package_exports_nothing_of_its_own():
    code = ("from spikefit_xylo import vendor_import as v; v.load()\n"
            "try:\n    from rockpool.devices.xylo.syns61201 import XyloSamna\nexcept ImportError as e:\n    print('ImportError', e)")
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ImportError cannot import name 'XyloSamna'")


def test_load_uses_the_real_packages_when_samna_is_there(monkeypatch):
    from spikefit_xylo import vendor_import as v

    monkeypatch.setattr(v, "samna_available", lambda: True)
    monkeypatch.delitem(sys.modules, v.XA2, raising=False)
    monkeypatch.delitem(sys.modules, v.XYLO, raising=False)
    assert v.install_hollow_packages() is False
    assert v.XA2 not in sys.modules and v.XYLO not in sys.modules


def test_a_real_package_already_imported_is_kept(monkeypatch):
    import types

    from spikefit_xylo import vendor_import as v

    real = types.ModuleType(v.XA2)
    monkeypatch.setitem(sys.modules, v.XA2, real)
    assert v.install_hollow_packages() is False and sys.modules[v.XA2] is real and not v.hollow()


@pytest.mark.parametrize("module", ["spikefit_xylo", "spikefit_xylo.plugin", "spikefit_xylo.check",
                                    "spikefit_xylo.corpus", "spikefit.targets.xylo_audio2"])
def test_no_vendor_import_before_a_check_runs(module):
    out = run(f"import sys, {module}; print(any(m.split('.')[0] in ('rockpool', 'xylosim', 'samna') for m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_versions_are_the_pinned_ones():
    from spikefit_xylo.vendor_import import versions

    assert versions() == {"rockpool": "3.1.0", "xylosim": "0.1.3"}
