"""The ``lava`` export format: a folder a user loads as Lava processes, with or without spikefit.

``DIR/network.json`` (structure, per mode), ``DIR/network.npz`` (integer ``fixed_pt`` and float
``floating_pt`` parameters, already in Lava's layouts), ``DIR/build.py`` (builds and runs the
processes; needs numpy, scipy and lava-nc only), ``DIR/lava_shim.py`` (the Python 3.11 import fix)
and ``DIR/README.md``. Before writing, the exporter builds the processes of both modes once, so an
export that Lava would refuse is never written.
"""
from __future__ import annotations

import json
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from spikefit.errors import BackendError, ExportError, ModelError
from spikefit.network import Network

from . import build
from .availability import require_lava
from .neurons import NEURONS, refuse_chip_neuron
from .plan import FORMAT, MODES, make_plan

README = """\
# Lava export of a spikefit network

Made by spikefit-lava {version} for lava-nc 0.10.0. Input {input!r} {input_shape}; output population {output!r};
populations (depth = Lava steps of delay): {populations}.

Modes: `fixed_pt` (integers for Lava's bit-accurate models: weights with a weight exponent, 12-bit
du/dv, 17-bit threshold mantissa, bias mantissa/exponent) and `floating_pt`. Images are in Lava's
(x, y, c) = (w, h, c) layout; `perm` arrays map spikefit's C-order (c, h, w) to it.

```python
import build                                          # this folder on sys.path (needs numpy, scipy, lava-nc)
net = build.load(".", select="fixed_pt", window=T)    # Lava processes; LIFReset every T steps per population
net.connect_input(source.s_out)                       # source: e.g. lava.proc.io.source.RingBuffer
spikes = build.simulate(build.read(".", "fixed_pt"), x)  # x: (t, b, n) 0/1 -> {{population: (t, b, n)}}
```

or `python build.py . inputs.npy fixed_pt` (writes spikes.npz). Each Lava Dense/Sparse/Conv delays by
one step; `build.py`'s docstring gives the timing and how samples are run back to back.
"""


def _version() -> str:
    try:
        return metadata.version("spikefit-lava")
    except metadata.PackageNotFoundError:
        return "unknown"


class LavaExporter:
    """Exporter ``lava``: ``export(network, path, target)`` writes the folder ``path``."""

    name = "lava"
    suffix = ""  # a folder
    neurons = NEURONS

    def export(self, network: Network, path, target=None) -> Path:
        path = Path(path)
        refuse_chip_neuron(network, target, ExportError)
        if path.exists() and not path.is_dir():
            raise ExportError(f"'{path}' exists and is not a folder; a Lava export is a folder, pass a new path")
        plans = {mode: make_plan(network, mode) for mode in MODES}  # ExportError names what Lava cannot express
        require_lava(ExportError)
        modes, arrays = {}, {}
        for mode, plan in plans.items():
            plan.metadata = {"target": getattr(target, "name", target), "dt": network.dt}
            modes[mode], arr = plan.to_meta_arrays()
            arrays.update(arr)
            try:
                build.build(build.Spec(modes[mode], arr), window=1)  # Lava checks shapes and parameters
            except Exception as e:
                raise ExportError(f"Lava refused the {mode} processes: {type(e).__name__}: {e}".splitlines()[0]) from e
        path.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "modes": modes, "spikefit_lava": _version(), "lava_nc": "0.10.0"}
        (path / "network.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        np.savez_compressed(path / "network.npz", **arrays)
        here = resources.files("spikefit_lava")
        (path / "build.py").write_text(here.joinpath("build.py").read_text(encoding="utf-8"), encoding="utf-8")
        (path / "lava_shim.py").write_text(here.joinpath("shim.py").read_text(encoding="utf-8"), encoding="utf-8")
        fixed = plans["fixed_pt"]
        (path / "README.md").write_text(README.format(
            version=_version(), input=fixed.input.name, input_shape=tuple(fixed.input.shape), output=fixed.output,
            populations=", ".join(f"{p.name} {tuple(p.shape)} depth {p.depth}" for p in fixed.populations)),
            encoding="utf-8")
        return path


def load_processes(path, select: str = "fixed_pt", window: int | None = None, graded: bool = False) -> build.LavaNetwork:
    """The Lava processes of the export folder ``path`` in mode ``select`` ("fixed_pt" or
    "floating_pt"): populations (``LIF``, or ``LIFReset`` every ``window`` steps), connections,
    depths, and ``connect_input(out_port)``. See :mod:`spikefit_lava.build`."""
    require_lava(BackendError)
    try:
        spec = build.read(path, select)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(str(e).splitlines()[0]) from None
    return build.build(spec, window, graded)
