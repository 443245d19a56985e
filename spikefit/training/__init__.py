"""The training engine and its parts: config, typed state, stages as objects, checkpoints, reports.

``spikefit.trainer`` (the fit) and ``spikefit.baselines`` (the compression benchmark) are plans on
:class:`spikefit.training.engine.Engine`.
"""
