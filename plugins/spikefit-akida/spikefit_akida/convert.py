"""spikefit Network -> ``akida.Model`` (akida 2.19.3, Akida 1.0 layers), as docs/akida.md describes.

The layer sequence and the integer weights come from spikefit's own reading of the chip
(:func:`spikefit.targets.akida.akida_layers` and :func:`~spikefit.targets.akida.integer_weights`), so the
rules and the converter share one definition; what the layers may hold is then the vendor's to judge.

* Input (n,) -> ``InputData((1, 1, n), input_bits=1)``; Input (c, h, w) -> ``InputData((h, w, c), 1)``
  (Akida's (x, y, c) is spikefit's (h, w, c)), or the first Conv2d as ``InputConvolutional`` when c is
  1 or 3.
* Conv2d (f, c, kh, kw) -> ``Convolutional`` with weights (kh, kw, c, f) flipped in both spatial axes:
  Akida's Convolutional convolves, spikefit's (NIR's) Conv2d cross-correlates. The
  InputConvolutional cross-correlates, so its kernel is not flipped. padding k // 2 -> Padding.Same,
  0 -> Padding.Valid. A following average Pool2d is the layer's pooling (PoolType.Average; a window
  smaller than the map is passed as pool_size, which Akida refuses).
* Dense (units, n) -> ``FullyConnected`` with weights (1, 1, n, units), inputs reordered from
  spikefit's (c, h, w) flattening to Akida's, which runs x fastest, then y, then c (measured with
  ``Model.forward``).
* The population after a connection is the layer's activation (act_bits = 1: a spike); its threshold
  is ``floor((vth - bias) / scale)`` in integer weight units and act_step 1, so a neuron spikes when
  its integer input sum exceeds the threshold. No population: activation off.
* weights_bits: the narrowest width holding the layer's integers (1, 2, 4; 8 for the
  InputConvolutional), else the widest, and Akida refuses the values.
"""
from __future__ import annotations

import numpy as np

from spikefit.network import Conv2d, Network
from spikefit.targets.akida import AkidaLayer, NotAkida, akida_layers, integer_weights, weight_bits

INT32 = (-(2 ** 31), 2 ** 31 - 1)


def _akida_weights(la: AkidaLayer, k: np.ndarray) -> np.ndarray:
    if isinstance(la.conn, Conv2d):
        if la.kind == "conv":
            k = k[:, :, ::-1, ::-1]                     # Convolutional convolves: flip the kernel
        return np.ascontiguousarray(k.transpose(2, 3, 1, 0))
    x, y, c = la.in_shape
    k = k.reshape(la.units, c, x, y).transpose(1, 3, 2, 0) if (x, y) != (1, 1) else k.T   # Akida: x fastest
    return np.ascontiguousarray(k.reshape(1, 1, x * y * c, la.units))


def _threshold(la: AkidaLayer, scale: float) -> np.ndarray:
    """One threshold per unit or filter (Akida holds one per filter): spatially varying biases of a
    convolution's population are averaged."""
    bias = la.post.bias.reshape(la.units, -1).mean(axis=1)
    if getattr(la.conn, "bias", None) is not None:
        bias = bias + la.conn.bias
    return np.clip(np.floor((la.post.vth - bias) / scale), *INT32).astype(np.int32)


class OutsideInt8(ValueError):
    """Integer weights that akida's int8 weight variables cannot hold."""


def _layer(akida, la: AkidaLayer, k: np.ndarray, name: str):
    bits = weight_bits(int(k.min()), int(k.max()), la.kind == "input_conv") or (8 if la.kind == "input_conv" else 4)
    act = la.post is not None
    if la.kind == "fc":
        return akida.FullyConnected(la.units, name=name, weights_bits=bits, activation=act, act_bits=1)
    pad = akida.Padding.Same if la.padding == "same" else akida.Padding.Valid
    pool_type, pool_size = akida.PoolType.NoPooling, (-1, -1)
    if la.pool is not None:
        pool_type = akida.PoolType.Average
        pool_size = (-1, -1) if la.global_pool else tuple(la.pool.kernel)
    kw = dict(kernel_size=la.kernel, filters=la.units, name=name, padding=pad, kernel_stride=tuple(la.conn.stride),
              weights_bits=bits, pool_size=pool_size, pool_type=pool_type, activation=act, act_bits=1)
    if la.kind == "input_conv":
        return akida.InputConvolutional(la.in_shape, **kw)
    return akida.Convolutional(**kw)


def to_akida(network: Network):
    """The ``akida.Model`` of ``network``. Raises spikefit.targets.akida.NotAkida when the network has no
    Akida form (a branch, recurrence, sum pooling, weights on no integer grid); an Akida layer that
    refuses its parameters or weights raises the vendor's own exception."""
    import akida  # callers check it is installed (sdk.require_akida)

    layers = akida_layers(network)
    ints = [integer_weights(la.conn) for la in layers]
    for la in layers:
        if la.padding == "other":
            raise NotAkida(f"padding {la.conn.padding} of layer {la.conn.name} is neither 0 nor k // 2; "
                           "Akida pads 'same' or 'valid'")
    model = akida.Model()
    if layers[0].kind != "input_conv":
        model.add(akida.InputData(layers[0].in_shape, input_bits=1, name=network.inputs[0].name))
    for la, (k, scale) in zip(layers, ints):
        if k.size and (k.min() < -128 or k.max() > 127):
            raise OutsideInt8(f"layer {la.conn.name} needs integer weights in [{k.min()}, {k.max()}]; akida's "
                              "Layer.set_variable('weights') takes int8 only")
        model.add(_layer(akida, la, k, la.conn.name))
        layer = model.layers[-1]
        layer.set_variable("weights", _akida_weights(la, k).astype(np.int8))
        if la.post is not None:
            layer.set_variable("threshold", _threshold(la, scale))
            layer.set_variable("act_step", np.ones(la.units, dtype=np.float32))
    return model
