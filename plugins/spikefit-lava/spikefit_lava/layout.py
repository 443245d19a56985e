"""Lava's layouts of spikefit's arrays: the (x, y, c) order of its Conv and LIF processes and the
kernel its ``Conv`` takes. Only the Lava exporter and backend need them, so they live in this plugin;
the core's fixed-point form (:mod:`spikefit.fixedpoint`) stays in spikefit's (c, h, w) order."""
from __future__ import annotations

import numpy as np

from spikefit.fixedpoint import FixedLayer


def whc_permutation(shape_chw: tuple[int, ...]) -> np.ndarray:
    """``perm`` with ``lava_flat = spikefit_flat[perm]``: spikefit flattens (c, h, w) in C order,
    Lava's Conv and LIF processes hold (w, h, c) = (x, y, c). Identity for 1-D shapes."""
    n = int(np.prod(shape_chw))
    if len(shape_chw) != 3:
        return np.arange(n)
    return np.arange(n).reshape(shape_chw).transpose(2, 1, 0).reshape(-1)


def conv_geometry(input_shape, output_shape, stride, padding) -> dict:
    """A convolution's geometry in spikefit's (c, h, w) and in Lava's Conv: (x, y, c) = (w, h, c) shapes,
    stride and padding as (x, y)."""
    ci, h, w = input_shape
    co, oh, ow = output_shape
    return {"input_shape": (ci, h, w), "output_shape": (co, oh, ow),
            "lava_input_shape": (w, h, ci), "lava_output_shape": (ow, oh, co),
            "lava_stride": tuple(stride[::-1]), "lava_padding": tuple(padding[::-1])}


def layer_geometry(layer: FixedLayer) -> dict:
    """:func:`conv_geometry` of a conv2d :class:`~spikefit.fixedpoint.FixedLayer`."""
    c = layer.conv
    return conv_geometry(c["input_shape"], c["output_shape"], c["stride"], c["padding"])


def lava_conv_weight(layer: FixedLayer) -> np.ndarray:
    """Integer kernel for Lava's ``Conv(weight=...)``: (c_out, kw, kh, c_in), spatially flipped
    (Lava convolves, spikefit correlates), pre-shifted by ``weight_exp`` because
    ``PyConvModelFixed`` ignores its ``weight_exp`` Var."""
    q = np.asarray(layer.weight, dtype=np.int64)
    return (q[:, :, ::-1, ::-1].transpose(0, 3, 2, 1) << layer.weight_exp).astype(np.int32)
