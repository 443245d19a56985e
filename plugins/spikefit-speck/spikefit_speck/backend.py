"""Backend ``speck-sim``: sinabs's discretized forward pass of the network as Speck runs it.

``SpeckSimBackend().run(network, inputs)`` converts the network for a batch of ``b`` samples
(:mod:`.convert`, the target's reset; Speck's ``floor(v / vth)`` spikes per step), builds
``DynapcnnNetwork(snn, input_shape, discretize=True)`` (int8 weights, thresholds scaled with them) and
runs its software forward pass on the inputs. Inputs are time-major spikes (t, b, n_in) with
``n_in = c * h * w``; sinabs takes (b * t, c, h, w), batch-major. The spikes of every population are
read from its layer's neurons (before pooling) and returned as spike counts (t, b, n): Speck's neurons
may spike more than once per step. Each call starts from zero state.
"""
from __future__ import annotations

import numpy as np

from spikefit.errors import BackendError
from spikefit.network import Network


class SpeckSimBackend:
    """Backend ``speck-sim`` (sinabs 3.1.3's DynapcnnNetwork forward pass, no hardware)."""

    name = "speck-sim"
    inputs = "counts"      # events per pixel and step: sinabs's forward pass adds them, no limit (spikefit.capabilities)
    neurons = ("speck-if",)

    def __init__(self, reset: str = "zero"):
        self.reset = reset

    def run(self, network: Network, inputs) -> dict[str, np.ndarray]:
        import torch

        from .check import NoSinabsEquivalent, SinabsRefused, layer_populations, map_model, runnable

        x = np.asarray(inputs)
        if x.ndim != 3:
            raise BackendError(f"inputs of shape {x.shape} must be time-major spikes (t, b, n)")
        t, b, n = x.shape
        try:
            model = runnable(network, batch_size=b, reset=self.reset)
        except NoSinabsEquivalent as e:
            raise BackendError(f"speck-sim cannot run this network: {e}") from None
        c, h, w = model.input_shape
        if n != c * h * w:
            raise BackendError(f"inputs have {n} channels, the network's input {model.input_shape} needs {c * h * w}")
        try:
            mapped = map_model(model)
        except SinabsRefused as e:
            raise BackendError(f"sinabs refused the network: {e}") from None
        pops = layer_populations(mapped, model)
        seen: dict[str, torch.Tensor] = {}
        hooks = [layer.spk_layer.register_forward_hook(
                 lambda mod, args, out, name=pops[int(i)]: seen.__setitem__(name, out.detach()))
                 for i, layer in mapped.net.dynapcnn_layers.items() if int(i) in pops]
        data = torch.as_tensor(np.ascontiguousarray(x.transpose(1, 0, 2)), dtype=torch.float32).reshape(b * t, c, h, w)
        try:
            with torch.no_grad():
                mapped.net(data)
        finally:
            for hook in hooks:
                hook.remove()
        out = {}
        for name in model.populations:
            if name not in seen:
                raise BackendError(f"sinabs ran no layer for population {name!r}")
            s = seen[name].reshape(b, t, -1).numpy()
            out[name] = np.ascontiguousarray(s.transpose(1, 0, 2)).astype(np.int32)
        return out
