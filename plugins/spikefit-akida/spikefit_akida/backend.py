"""Backend ``akida``: runs a network on akida's software engine (``Model.forward``, the vendor's own
inference path when no device is attached).

Akida's layers are stateless: every time step is an independent inference of the whole layer
sequence, and a layer's 1-bit activation fires where its integer input sum exceeds its threshold
(convert.py). There is no membrane, leak or reset carried between steps, so this backend runs
Akida's semantics, which equal spikefit's IF populations only for one step from rest. Each
population's spikes are read from the prefix model that ends at its layer; a population whose layer
pools is not observable (Akida pools inside the layer, before the activation) and is refused."""
from __future__ import annotations

import numpy as np

from spikefit.errors import BackendError
from spikefit.network import Network


class AkidaBackend:
    """``run(network, inputs) -> {population: (t, b, n) bool}`` for time-major inputs (t, b, n_in)."""

    name = "akida"
    inputs = "spikes"      # Akida's 1-bit input layer: one spike per channel and step (spikefit.capabilities)
    neurons = ("akida-act",)

    def run(self, network: Network, inputs) -> dict[str, np.ndarray]:
        from spikefit.targets.akida import runnable_layers

        layers = runnable_layers(network, "the akida backend")
        from .convert import OutsideInt8, to_akida
        from .sdk import require_akida

        akida = require_akida(BackendError)

        try:
            model = to_akida(network)
        except (OutsideInt8, ValueError, RuntimeError) as e:
            raise BackendError(f"akida refused the network: {str(e).splitlines()[0]}") from None
        x = np.asarray(inputs)
        if x.ndim != 3:
            raise BackendError(f"inputs must be time-major spikes (t, b, n), got shape {x.shape}")
        t, b, n = x.shape
        shape = network.inputs[0].shape
        if n != int(np.prod(shape)):
            raise BackendError(f"inputs have {n} channels, the network's input {network.inputs[0].name} has "
                               f"{int(np.prod(shape))}")
        flat = (x.reshape(t * b, n) != 0).astype(np.uint8)
        if len(shape) == 1:
            feed = flat.reshape(t * b, 1, 1, n)
        else:
            feed = flat.reshape(t * b, *shape).transpose(0, 2, 3, 1)          # (N, x=h, y=w, c)
        feed = np.ascontiguousarray(feed)
        first = 0 if layers[0].kind == "input_conv" else 1                     # InputData is layer 0
        out = {}
        for i, la in enumerate(layers):
            if la.post is None:
                continue
            prefix = akida.Model(layers=model.layers[:first + i + 1])
            y = prefix.forward(feed)                                           # (N, x, y, c) uint8
            spikes = y.transpose(0, 3, 1, 2) if len(la.post.shape) == 3 else y.reshape(t * b, -1)
            out[la.post.name] = spikes.reshape(t, b, -1) > 0
        return out
