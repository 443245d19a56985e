"""Shared fixtures: TOML files on disk, plugins registered for one test, plugin environment."""
from __future__ import annotations

import textwrap

import pytest

from spikefit import plugins


@pytest.fixture
def tmp_toml(tmp_path):
    """Factory: ``tmp_toml(text, name="chip.toml")`` writes dedented ``text`` and returns its path."""

    def write(text: str, name: str = "chip.toml"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def register_plugin():
    """Factory: ``register_plugin(plugin, name)`` registers ``plugin`` for this test only."""
    plugins.load_plugins()
    names: list[str] = []

    def register(plugin, name: str):
        plugins.pm.register(plugin, name=name)
        names.append(name)
        plugins.reset_registries()
        return plugin

    yield register
    for name in names:
        if plugins.pm.get_plugin(name) is not None:
            plugins.pm.unregister(name=name)
    plugins.reset_registries()


@pytest.fixture
def plugin_env(monkeypatch):
    """Factory: ``plugin_env(SPIKEFIT_LOAD_PLUGINS="", ...)`` sets (None: unsets) the variables and
    reloads the plugins; the environment and the plugins are restored after the test."""

    def apply(**env: str | None):
        for key, value in env.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        plugins.reload_plugins()

    yield apply
    monkeypatch.undo()
    plugins.reload_plugins()
