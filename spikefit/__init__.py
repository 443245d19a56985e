"""spikefit: fit spiking neural networks to neuromorphic chips.

Public API (imported lazily so that ``import spikefit`` and the CLI stay fast without torch)::

    spikefit.load_target(path) -> TargetSpec          spikefit.get_target(name) -> TargetSpec
    spikefit.verify(network, target) -> FitReport     spikefit.read_nir(path) / write_nir(net, path)
    spikefit.fit(model, data, target) -> FitResult    spikefit.hookimpl (for plugins)
"""
from __future__ import annotations

from .lazy import lazy_attributes

from .errors import (BackendError, DatasetError, DoesNotFitError, ExportError, ModelError, PluginError, SpecError,
                     SpikefitError, TrainingError, UnknownTargetError)
from .hookspecs import hookimpl
from .network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d, Quantization
from .spec import TargetSpec, load_target
from .fitcheck import FitReport, verify

_LAZY = {
    "get_target": "spikefit.plugins",
    "list_targets": "spikefit.plugins",
    "get_exporter": "spikefit.plugins",
    "get_backend": "spikefit.plugins",
    "load_plugins": "spikefit.plugins",
    "read_nir": "spikefit.nir_io",
    "write_nir": "spikefit.nir_io",
    "fit": "spikefit.trainer",
    "FitConfig": "spikefit.trainer",
    "FitResult": "spikefit.trainer",
    "run": "spikefit.runner",
}

__all__ = sorted([
    "BackendError", "DatasetError", "DoesNotFitError", "ExportError", "ModelError", "PluginError", "SpecError",
    "SpikefitError", "TrainingError", "UnknownTargetError", "hookimpl", "Conv2d", "Dense", "Flatten",
    "Input", "Network", "Neurons", "Output", "Pool2d", "Quantization", "TargetSpec", "load_target",
    "FitReport", "verify",
    *_LAZY,
])


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


def __dir__():
    return __all__
