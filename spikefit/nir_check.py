"""Validation of a NIR graph before spikefit converts it: every parameter a finite real number,
time constants and resistances positive, geometry in range, spikefit's own metadata of the right
types. :func:`spikefit.nir_io.nir_to_network` calls these first, so no command ever computes with a
NaN bias, a complex weight, a zero stride or a ``dt`` written as text.
"""
from __future__ import annotations

import json

import numpy as np

from .bounds import BITS_MAX, BITS_MIN
from .errors import ModelError

NEURONS_MAX = 2 ** 26   # values in one node's shape (Input, population): far beyond any chip's core or chip
ARRAY_KEYS = ("weight", "bias", "tau", "tau_mem", "tau_syn", "r", "w_in", "v_leak", "v_threshold", "v_reset",
              "kernel_size", "stride", "padding", "dilation", "groups")
POSITIVE_KEYS = ("tau", "tau_mem", "tau_syn", "r", "w_in")   # divide or multiply every weight: 0 would erase them
AT_LEAST_ONE = ("kernel_size", "stride", "dilation", "groups")
GRAPH_META = {"format": "an integer", "version": "a string", "dt": "a positive number of seconds",
              "node_order": "a JSON list of node names", "network_metadata": "a JSON object", "target": "a string"}
_FIX = "remove metadata['spikefit'] from the file (or write it again with spikefit) to read it without"


def _array(name: str, key: str, value) -> np.ndarray:
    """``value`` as a real, finite numeric array, or a ModelError naming node and field."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError):
        a = np.asarray([None], dtype=object)
    if a.dtype.kind == "c":
        raise ModelError(f"{key} of NIR node {name!r} is complex ({a.dtype}); spikefit reads real numbers only: "
                         "store the real part")
    if a.dtype.kind not in "biuf":
        raise ModelError(f"{key} of NIR node {name!r} holds {a.dtype} values, not numbers; write numeric arrays")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ModelError(f"{key} of NIR node {name!r} holds NaN or infinite values; every parameter must be a "
                         "finite number")
    return a


def check_nodes(nodes: dict, kinds: dict) -> None:
    """Every node's numeric fields, its shapes and its spikefit metadata."""
    for name, node in nodes.items():
        kind = kinds[name]
        for key in ARRAY_KEYS:
            value = getattr(node, key, None)
            if value is None or isinstance(value, (str, bytes)):
                continue  # e.g. Conv2d padding "same"
            a = _array(name, key, value)
            if key in POSITIVE_KEYS and np.any(a <= 0):
                raise ModelError(f"{key} of NIR node {name!r} ({kind}) is {float(a.min()):g}; it must be positive "
                                 f"({key} = 0 erases every weight into the node)")
            if key in AT_LEAST_ONE and np.any(a < 1):
                raise ModelError(f"{key} of NIR node {name!r} ({kind}) is {a.tolist()}; it must be at least 1")
            if key == "padding" and np.any(a < 0):
                raise ModelError(f"padding of NIR node {name!r} ({kind}) is {a.tolist()}; it must be at least 0")
        for key in ("input_type", "output_type"):
            types = getattr(node, key, None)
            if kind in ("Input", "Output") and isinstance(types, dict):
                for port, shape in types.items():
                    _check_shape(name, f"{key}[{port!r}]", shape)
        meta = node.metadata.get("spikefit") if isinstance(getattr(node, "metadata", None), dict) else None
        if meta is not None:
            _check_node_meta(name, meta)


def _check_shape(name: str, key: str, shape) -> None:
    a = _array(name, key, shape).reshape(-1)
    if a.size and (np.any(a != np.round(a)) or np.any(a < 0)):
        raise ModelError(f"{key} of NIR node {name!r} is {a.tolist()}; a shape holds non-negative integers")
    size = int(np.prod(a.astype(np.float64))) if a.size else 1
    if size > NEURONS_MAX:
        raise ModelError(f"{key} of NIR node {name!r} is {a.astype(np.int64).tolist()} ({size} values), more than "
                         f"the {NEURONS_MAX} spikefit reads per node")


def _check_node_meta(name: str, meta) -> None:
    if not isinstance(meta, dict):
        raise ModelError(f"metadata['spikefit'] of NIR node {name!r} is a {type(meta).__name__}, not a dict; {_FIX} it")
    for key in ("du", "dv", "vth"):
        if key in meta and _array(name, f"metadata['spikefit']['{key}']", meta[key]).size != 1:
            raise ModelError(f"metadata['spikefit']['{key}'] of NIR node {name!r} is not one number; {_FIX} it")
    for key in ("bias", "codebook_index"):
        if key in meta:
            _array(name, f"metadata['spikefit']['{key}']", meta[key])
    if "bias_in" in meta and not isinstance(_text(meta["bias_in"]), str):
        raise ModelError(f"metadata['spikefit']['bias_in'] of NIR node {name!r} is not a node name; {_FIX} it")
    q = meta.get("quant")
    if isinstance(q, dict) and "weight_bits" in q:
        bits = _array(name, "metadata['spikefit']['quant']['weight_bits']", q["weight_bits"]).reshape(-1)
        if bits.size != 1 or not BITS_MIN <= float(bits[0]) <= BITS_MAX:
            raise ModelError(f"metadata['spikefit']['quant']['weight_bits'] of NIR node {name!r} is {bits.tolist()}, "
                             f"outside {BITS_MIN}..{BITS_MAX}; {_FIX} its codebook")


def check_nir(graph) -> None:
    """The graph-level ``metadata["spikefit"]``: each entry of the type spikefit writes."""
    meta = getattr(graph, "metadata", None)
    own = meta.get("spikefit") if isinstance(meta, dict) else None
    if own is None:
        return
    if not isinstance(own, dict):
        raise ModelError(f"metadata['spikefit'] of the NIR graph is a {type(own).__name__}, not a dict; {_FIX} it")
    for key, what in GRAPH_META.items():
        if key in own and not _valid(key, own[key]):
            value = own[key]
            shown = repr(_text(value) if _text(value) is not None else value)[:60]
            raise ModelError(f"metadata['spikefit']['{key}'] of the NIR graph is {shown}, not {what}; {_FIX} it")


def _valid(key: str, value) -> bool:
    if key in ("version", "target"):
        return isinstance(_text(value), str)
    if key == "format":
        a = _number(value)
        return a is not None and a == int(a)
    if key == "dt":
        a = _number(value)
        return a is not None and a > 0
    try:
        parsed = json.loads(_text(value))
    except (ValueError, TypeError, RecursionError):
        return False
    if key == "node_order":
        return isinstance(parsed, list) and all(isinstance(n, str) for n in parsed)
    return isinstance(parsed, dict)


def _number(value) -> float | None:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    a = np.asarray(value)
    if a.size != 1 or a.dtype.kind not in "biuf":
        return None
    x = float(a.reshape(-1)[0])
    return x if np.isfinite(x) else None


def _text(x):
    if isinstance(x, bytes):
        try:
            return x.decode("utf8")
        except UnicodeDecodeError:
            return None
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return _text(x.item())
    return x if isinstance(x, str) else None
