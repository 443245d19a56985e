"""spikefit-speck's samna placeholders: present only while sinabs is imported, never over a real samna."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from spikefit_speck import shim


def run(code: str, **kw) -> subprocess.CompletedProcess:
    """A fresh interpreter (this one may have imported sinabs already)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=180, **kw)


def test_placeholders_are_in_sys_modules_only_inside_the_block():
    assert "samna" not in sys.modules and not shim.real_samna()
    with shim.placeholders() as installed:
        assert installed is True
        assert set(shim.PLACEHOLDERS) <= set(sys.modules)
        import samna
        from samna.speck2f.configuration import SpeckConfiguration

        assert shim.is_placeholder(samna) and samna.speck2f.configuration.SpeckConfiguration is SpeckConfiguration
    assert not any(name in sys.modules for name in shim.PLACEHOLDERS)
    with pytest.raises(ImportError):
        import samna  # noqa: F401  (the real one is not installed)


def test_placeholder_classes_refuse_to_be_used_and_name_what_needed_samna():
    mods = shim.build()
    with pytest.raises(shim.SamnaMissing, match=r"samna\.speck2f\.configuration\.SpeckConfiguration needs the real samna"):
        mods["samna.speck2f.configuration"].SpeckConfiguration()
    with pytest.raises(AttributeError, match=r"samna\.graph needs the real samna"):
        mods["samna"].graph
    with pytest.raises(AttributeError, match=r"samnagui\.run_visualizer needs the real samna"):
        mods["samnagui"].run_visualizer
    assert mods["samna"].speck2e.configuration is mods["samna.speck2e.configuration"]
    assert not hasattr(mods["samna.device"], "get_all_devices")


def test_sinabs_dynapcnn_imports_and_maps_without_samna_and_leaves_no_samna_behind():
    out = run("""
        import sys
        from spikefit_speck.shim import import_dynapcnn, SamnaMissing
        dc = import_dynapcnn()
        assert "samna" not in sys.modules and "samnagui" not in sys.modules
        import torch.nn as nn, sinabs.layers as sl
        snn = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), sl.IAFSqueeze(batch_size=1), sl.SumPool2d(2),
                            nn.Conv2d(4, 8, 3, bias=False), sl.IAFSqueeze(batch_size=1))
        net = dc.DynapcnnNetwork(snn, input_shape=(1, 12, 12), discretize=True)
        builder = dc.chip_factory.ChipFactory("speck2fmodule").get_config_builder()
        print(builder.map_layers_to_cores(net.dynapcnn_layers))
        try:
            net.make_config(device="speck2fmodule")
        except SamnaMissing as e:
            print("make_config:", e)
        """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "{0: 0, 1: 1}"
    assert lines[1].startswith("make_config: samna.speck2f.configuration.SpeckConfiguration needs the real samna")


def test_without_the_shim_sinabs_dynapcnn_does_not_import():
    out = run("import sinabs.backend.dynapcnn")
    assert out.returncode != 0 and "No module named 'samna'" in out.stderr


def test_a_real_samna_is_never_shadowed(tmp_path):
    fake = tmp_path / "samna"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL = True\n")
    out = run("""
        import sys
        from spikefit_speck import shim
        assert shim.real_samna()
        with shim.placeholders() as installed:
            import samna
            print(installed, getattr(samna, "REAL", False), shim.is_placeholder(samna))
        """, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "False"]


def test_placeholders_leave_a_module_that_was_already_imported_alone(monkeypatch):
    import types

    other = types.ModuleType("samnagui")
    monkeypatch.setitem(sys.modules, "samnagui", other)
    with shim.placeholders():
        assert sys.modules["samnagui"] is other and shim.is_placeholder(sys.modules["samna"])
    assert sys.modules["samnagui"] is other and "samna" not in sys.modules


def test_loading_the_plugin_imports_neither_sinabs_nor_torch():
    out = run("""
        import sys
        from spikefit.plugins import registry
        checks, exporters = registry("vendor_check"), registry("exporter")
        assert checks["speck2f"].name == "sinabs" and "speck" in exporters
        import spikefit_speck.check, spikefit_speck.corpus, spikefit_speck.exporter, spikefit_speck.backend
        print(sorted(m for m in ("torch", "sinabs", "samna") if m in sys.modules))
        """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
