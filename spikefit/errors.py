"""Error types. Every library error derives from :class:`SpikefitError`.

The CLI prints a ``SpikefitError`` as one line and exits 2 (``DoesNotFitError``: 1, as for a model
that does not fit). Messages follow one format: what failed, the offending value, and how to fix it.
"""
from __future__ import annotations


class SpikefitError(Exception):
    """Base class of every error spikefit raises on purpose."""


class SpecError(SpikefitError, ValueError):
    """A target spec (TOML) is malformed or violates the schema."""


class UnknownTargetError(SpikefitError, KeyError):
    """A target name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginError(SpikefitError):
    """A plugin failed to load or registered something invalid (e.g. a duplicate name)."""


class ModelError(SpikefitError, ValueError):
    """A model file or network description is missing, corrupt or unsupported."""


class DatasetError(SpikefitError, ValueError):
    """An unknown dataset or inputs that do not match the model."""


class TrainingError(SpikefitError):
    """The trainer cannot meet a target or cannot resume."""


class DoesNotFitError(TrainingError):
    """The target cannot be met: before training (not even the smallest network of the model's shape
    fits; ``result`` is None) or after it (the fitted network fails verify; ``result`` is the
    :class:`spikefit.trainer.FitResult`, its files written). The CLI exits 1, as verify does."""

    exit_code = 1  # the CLI's "does not fit", not "bad input"

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class ExportError(SpikefitError):
    """A network cannot be expressed in an export format or backend."""


class BackendError(SpikefitError):
    """A backend is unavailable or failed while running."""


class DeviceError(SpikefitError, ValueError):
    """A ``--device`` that is not visible here, or a step that ran out of the device's memory."""
