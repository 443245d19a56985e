"""The ``lava`` backend: a network on Lava's CPU simulator (``Loihi2SimCfg``), all samples in one run.

Lava compiles and starts its processes for every run (about 0.2 s) and then runs about a thousand
steps per second, so the samples run back to back, ``window = t`` steps each, with per-population
resets and read-outs shifted by the population's depth (:mod:`spikefit_lava.build`). The spikes
equal spikefit's per-sample semantics, and in ``fixed_pt`` the ``emulator`` backend's, at every step.
"""
from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager

import numpy as np

from spikefit.errors import BackendError
from spikefit.network import Network

from . import build
from .availability import require_lava
from .neurons import NEURONS, refuse_chip_neuron
from .plan import MODES, make_plan
from .worker import run_supervised


def _inputs(network: Network, inputs, select_tag: str) -> np.ndarray:
    x = inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else np.asarray(inputs)
    size = sum(i.size for i in network.inputs)
    if x.ndim > 3 and int(np.prod(x.shape[2:])) == size:
        x = x.reshape(*x.shape[:2], size)  # (t, b, c, h, w) -> (t, b, n)
    if x.ndim != 3:
        raise BackendError(f"inputs must be spikes of shape (t, b, n), got shape {tuple(x.shape)}")
    if x.shape[2] != size:
        raise BackendError(f"inputs have {x.shape[2]} channels per step but the network's input has {size}; "
                           "pass inputs that match the model")
    if not np.isfinite(x).all():
        raise BackendError("inputs hold NaN or infinite values; pass finite spikes")
    if select_tag == "fixed_pt" and x.size and not np.isin(x, (0, 1)).all():
        raise BackendError(f"Lava's fixed-point connections read binary spikes, but the inputs hold values in "
                           f"[{float(x.min()):g}, {float(x.max()):g}]; encode them as 0/1 spikes (e.g. 'rate') or "
                           "run with select_tag='floating_pt'")
    return x


@contextmanager
def _progress_bar(samples: int, steps: int, show: bool):
    """A ``report(done_steps, total_steps)`` callback drawing samples done and time left, or None."""
    if not show:
        yield None
        return
    from tqdm import tqdm

    size = shutil.get_terminal_size()  # a terminal that reports 0 x 0 gets 80 x 24 (tqdm would hide the bar)
    bar = tqdm(total=samples, desc="lava", unit="sample", file=sys.stderr, leave=False, mininterval=0,
               ncols=min(size.columns, 100), nrows=size.lines)

    def report(done: int, total: int) -> None:
        bar.update(min(samples, done // max(steps, 1)) - bar.n)

    try:
        yield report
    finally:
        bar.close()


class LavaBackend:
    """Backend ``lava``: ``run(network, inputs) -> {population: spikes (t, b, n)}``."""

    name = "lava"
    inputs = "spikes"      # fixed_pt reads 0/1 spikes (Dense's boolean s_in); floating_pt (Python API) takes currents
    neurons = NEURONS

    def run(self, network: Network, inputs, *, select_tag: str = "fixed_pt",
            timeout: float | None = None, progress: bool | None = None) -> dict[str, np.ndarray]:
        """Spikes (t, b, n) (bool) of every population for ``inputs`` (t, b, n): 0/1 spikes, or
        graded values with ``select_tag="floating_pt"``. ``timeout`` (seconds) bounds the Lava run;
        on any error, timeout or Ctrl-C, Lava's processes are stopped and none is left behind, and
        if the calling process is killed its Lava processes die with it. ``progress`` shows samples
        done and time left on stderr (default: when stderr is a terminal)."""
        if select_tag not in MODES:
            raise BackendError(f"unknown select_tag {select_tag!r}; use one of {', '.join(MODES)}")
        refuse_chip_neuron(network, None, BackendError)
        require_lava(BackendError)
        x = _inputs(network, inputs, select_tag)
        plan = make_plan(network, select_tag)  # ExportError: what Lava cannot express, and why
        T, B, _ = x.shape
        if T == 0 or B == 0:
            return {p.name: np.zeros((T, B, p.size), dtype=bool) for p in plan.populations}
        meta, arrays = plan.to_meta_arrays()
        dtype = np.int32 if select_tag == "fixed_pt" else np.float64
        if progress is None:
            progress = sys.stderr.isatty()
        with _progress_bar(B, T, progress) as report:
            return run_supervised(build.simulate, (build.Spec(meta, arrays), x.astype(dtype)), timeout=timeout,
                                  what=f"Lava run ({B} samples x {T} steps, {select_tag})", progress=report)

    def __repr__(self) -> str:
        return "LavaBackend()"
