"""Hook specifications: what a spikefit plugin may implement.

Plugins are found through the entry-point group ``spikefit``. Each hook hands the plugin a
``register`` callback; plugins call it and never build registries of their own.
"""
from __future__ import annotations

from typing import Callable

import click
from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("spikefit")
hookimpl = HookimplMarker("spikefit")


@hookspec
def register_targets(register: Callable) -> None:
    """Register chip targets.

    :param register: call ``register(spec)`` with a :class:`spikefit.TargetSpec` for each chip,
        e.g. ``register(spikefit.load_target(HERE / "chip.toml"))``. Names must be unique across plugins.
    """


@hookspec
def register_exporters(register: Callable) -> None:
    """Register export formats.

    :param register: call ``register(exporter)``; an exporter has a ``name`` (e.g. ``"nir"``) and
        ``export(network, path, target)`` that writes ``network`` for ``target`` (a TargetSpec or None).
        It may declare ``neurons``, the neuron models it expresses (see :mod:`spikefit.capabilities`).
    """


@hookspec
def register_backends(register: Callable) -> None:
    """Register simulation backends.

    :param register: call ``register(backend)``; a backend has a ``name`` (e.g. ``"emulator"``) and
        ``run(network, inputs) -> dict[str, ndarray]`` mapping population names to spikes (t, b, n)
        for time-major inputs (t, b, n). It declares what it runs (:mod:`spikefit.capabilities`):
        ``inputs`` ("spikes": 0/1; "counts": whole events per channel and step up to ``max_events``;
        "currents": any real value; default "currents") and ``neurons`` (the neuron models it runs,
        e.g. ``("cuba-lif", "lif", "if")`` or a chip's own ``("xylo-lif",)``); the runner checks inputs
        and networks against the declaration before calling ``run``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``spikefit`` command line.

    :param cli: the top-level click group; use ``@cli.command()``.
    """


@hookspec
def register_rules(register: Callable) -> None:
    """Register chip rules that a TOML spec cannot say (design rules, memory formulas).

    :param register: call ``register(rule_set)`` with a :class:`spikefit.rules.RuleSet`; it applies to
        the targets it names and to any spec with a ``[rules.<set name>]`` table. Names must be unique.
    """


@hookspec
def register_vendor_checks(register: Callable) -> None:
    """Register a vendor's own fit check for a chip (the vendor's SDK as ground truth).

    :param register: call ``register(check)``; a check has ``name`` (the vendor tool), ``target`` (the
        chip, one check per target), ``check(network, spec) -> spikefit.vendor.VendorVerdict`` and
        ``corpus() -> list[spikefit.vendor.Case]``. Import the vendor SDK inside ``check`` only.
    """


@hookspec
def register_datasets(register: Callable) -> None:
    """Register named datasets (``spikefit fit --dataset NAME``).

    :param register: call ``register(provider)``; a provider has a ``name`` (e.g. ``"shd"``), a one-line
        ``description`` and ``load(root=None, steps=None) -> spikefit.datasets.Dataset``: ``root`` is the
        local folder holding the dataset's files (None for a dataset built in memory), ``steps`` the time
        bins of event data (None: the provider's default). Names must be unique; nothing is downloaded.
    """
