"""Backend ``xylosim``: run a network on XyloSim, Rockpool's bit-exact simulator of the Xylo Audio 2 core.

    spikefit run model.nir --backend xylosim --inputs spikes.npy

The network goes through the same specification as the ``xylo`` exporter (refused when it does not
fit), XyloSim is built once, and every sample runs from a reset state. Inputs (t, b, n) are spike
counts per channel and step (XyloSim takes up to 15 events per step). The result maps every
population to its spikes (t, b, n): hidden neurons may spike up to 31 times a step, so the values are
counts (int16), not booleans. The neuron is Xylo's (bit-shift decays, subtractive reset), not
spikefit's emulator neuron: see docs/xylo.md.
"""
from __future__ import annotations

import numpy as np

from spikefit.errors import BackendError
from spikefit.network import Network

from .specification import XyloSpec, specification


def simulate(spec: XyloSpec, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XyloSim's hidden and output spikes, (t, b, n_hidden) and (t, b, n_out), for inputs x (t, b, n_in)."""
    from .vendor_import import load

    rp = load()
    try:
        sim = rp.XyloSim.from_specification(**spec.kwargs())
    except Exception as e:
        raise BackendError(f"XyloSim rejected the specification: {type(e).__name__}: "
                           f"{' '.join(str(e).split())[:160]}") from None
    T, B, _ = x.shape
    hidden = np.zeros((T, B, len(spec.arrays["threshold"])), dtype=np.int16)
    out = np.zeros((T, B, len(spec.arrays["threshold_out"])), dtype=np.int16)
    raster = np.clip(np.rint(x), 0, None).astype(np.int64)
    for b in range(B):
        sim.reset_state()
        spikes, _, rec = sim.evolve(raster[:, b, :], record=True)
        out[:, b] = np.asarray(spikes).reshape(T, -1)
        hidden[:, b] = np.asarray(rec["Spikes"]).reshape(T, -1)
    return hidden, out


class XyloSimBackend:
    """Backend ``xylosim``: ``run(network, inputs) -> {population: spike counts (t, b, n)}``."""

    name = "xylosim"
    inputs = "counts"      # input events per channel and step (spikefit.capabilities)
    max_events = 15        # XyloSim's MAX_NUM_INP_SPIKES: Xylo takes up to 15 input events per channel and step
    neurons = ("xylo-lif",)

    def run(self, network: Network, inputs, target=None) -> dict[str, np.ndarray]:
        from spikefit.errors import SpikefitError

        x = np.asarray(inputs)
        if x.ndim != 3:
            raise BackendError(f"inputs must be spikes (t, b, n), got shape {x.shape}")
        try:
            spec = specification(network, target)
        except SpikefitError as e:
            raise BackendError(str(e)) from None
        if x.shape[2] != spec.n_inputs:
            raise BackendError(f"the network has {spec.n_inputs} inputs, the spikes {x.shape[2]} channels; "
                               f"pass {spec.n_inputs} channels per step")
        if x.shape[0] == 0 or x.shape[1] == 0:
            return {p.name: np.zeros((x.shape[0], x.shape[1], p.size), dtype=np.int16) for p in network.populations()}
        if np.any(x < 0) or np.any(x > 15):
            raise BackendError(f"input events per step must lie in 0..15 (Xylo's input limit); got "
                               f"{x.min():g}..{x.max():g}")
        hidden, out = simulate(spec, x)
        layers = {"hidden": hidden, "output": out}
        return {name: layers[p["layer"]][:, :, p["ids"]] for name, p in spec.populations.items()}

    def __repr__(self) -> str:
        return "XyloSimBackend()"
