"""The ``emulator`` backend: Lava's bit-accurate arithmetic, vectorised in torch over the batch.

Two modes of one class:

* ``EmulatorBackend()`` (name ``"emulator"``): converts the network with
  :func:`spikefit.fixedpoint.to_fixed` and runs it in int64 with exactly the operations of
  ``PyLifModelBitAcc`` and ``PyDenseModelBitAcc`` / ``PySparseModelBitAcc`` / ``PyConvModelFixed``
  (24-bit u wrap, v saturation, sign-magnitude decay shifts, ``vth << 6``, ``a_in << 6``,
  ``bias_mant << bias_exp``, weight exponent, the int32 channels between processes);
* ``EmulatorBackend(mode="float")`` (name ``"emulator-float"``): the reference discrete semantics of
  :mod:`spikefit.network` in float64, no rounding; inputs may be graded.

Timing follows :mod:`spikefit.network`, not Lava's pipeline: a feed-forward connection delivers
within the step, a recurrent one delivers the previous step's spikes. Every sample starts from zero
state. ``docs/deploy.md`` lists each operation with the Lava line it reproduces.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .errors import BackendError
from .fixedpoint import (ACT_SHIFT, DECAY_SHIFT, DECAY_UNITY, DM_OFFSET, DS_OFFSET, UV_MAX, VTH_SHIFT,
                         FixedLayer, FixedNetwork, drive_bounds, connection_matrix, structural_path, to_fixed)
from .network import Conv2d, Dense, Network, Pool2d

MODES = ("fixed", "float")


# -- Lava's integer operations (int64 tensors hold the int32 / 24-bit values) ---------------------
def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap to ``bits`` (what numpy's int32 arithmetic and Lava's
    ``signed_clamp`` do)."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def decay(x: torch.Tensor, mult: int) -> torch.Tensor:
    """``sign(x * mult) * (|x * mult| >> 12)``: Lava's decay, rounding toward zero."""
    y = x * mult
    return torch.sign(y) * (y.abs() >> DECAY_SHIFT)


def shift(x: torch.Tensor, exp: int) -> torch.Tensor:
    """``x << exp`` when exp > 0, else ``x >> -exp`` (arithmetic: rounds toward -inf)."""
    if exp == 0:
        return x
    return x << exp if exp > 0 else x >> -exp


@dataclass
class LifParams:
    """One population's bit-accurate LIF parameters."""

    du: int
    dv: int
    vth: int
    bias: torch.Tensor      # (n,) int64 effective bias: bias_mant << bias_exp (models.py:110-122)
    safe: bool = False      # |a_in| << 6 <= 2**23: no int32 sum can overflow, u stays 24-bit

    def __post_init__(self):
        self.mult_u = DECAY_UNITY - (self.du + DS_OFFSET)   # models.py:145, 149
        self.mult_v = DECAY_UNITY - (self.dv + DM_OFFSET)   # models.py:174, 180
        self.vth_eff = self.vth << VTH_SHIFT                 # models.py:273
        self.has_bias = bool(self.bias.abs().sum() > 0)


def activation(a: torch.Tensor) -> torch.Tensor:
    """``np.left_shift(a_in, 6)`` on Lava's int32 a_in (models.py:155)."""
    return wrap(a << ACT_SHIFT, 32)


def _decay(x: torch.Tensor, mult: int) -> torch.Tensor:
    if mult == 0:
        return torch.zeros_like(x)
    return x if mult == DECAY_UNITY else decay(x, mult)  # x * 4096 >> 12 == x exactly


def lif_fixed_step(u: torch.Tensor, v: torch.Tensor, act: torch.Tensor, p: LifParams):
    """One ``PyLifModelBitAcc.run_spk`` on int64 tensors (b, n) holding Lava's int32 values;
    ``act = activation(a_in)``. Returns (u, v, spikes)."""
    u = act if p.mult_u == 0 else _decay(u, p.mult_u) + act          # models.py:149-157
    if p.safe:  # |u| <= 2**24: Lava's one conditional wrap equals the modular wrap to (-2**23, 2**23]
        u = ((u + (UV_MAX - 1)) & (2 * UV_MAX - 1)) - (UV_MAX - 1)
    else:
        u = wrap(u, 32)                                                # int32 += (:157)
        u = torch.where(u > UV_MAX, u - 2 * UV_MAX,                    # :161-171
                        torch.where(u <= -UV_MAX, u + 2 * UV_MAX, u))
    v = _decay(v, p.mult_v) + u                                        # :180-185
    if p.has_bias:
        v = v + p.bias
    if not p.safe:
        v = wrap(v, 32)
    v = torch.clamp(v, -UV_MAX + 1, UV_MAX - 1)                        # :176-177, :186
    s = v > p.vth_eff                                                  # :278
    return u, v.masked_fill(s, 0), s                                   # :192


@dataclass
class FloatParams:
    """One population's float LIF parameters (spikefit.network.Neurons)."""

    du: float
    dv: float
    vth: float
    bias: torch.Tensor      # (n,) float64


def lif_float_step(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor, p: FloatParams):
    """The reference semantics (spikefit.network) in float64: returns (u, v, spikes)."""
    u = u * (1.0 - p.du) + a
    v = v * (1.0 - p.dv) + u + p.bias
    s = v > p.vth
    return u, v.masked_fill(s, 0.0), s


# -- a network ready to simulate ------------------------------------------------------------------
@dataclass
class _Conn:
    source: str
    recurrent: bool
    apply: Callable[[torch.Tensor], torch.Tensor]  # (m, n_src) 0/1 spikes -> (m, n_out) input of the target


@dataclass
class _Pop:
    name: str
    size: int
    conns: list[_Conn]
    params: LifParams | FloatParams


def _matmul(w, dtype=torch.float64) -> Callable[[torch.Tensor], torch.Tensor]:
    """s -> s @ w.T in floating point (exact for integer weights while sums stay below 2**24
    in float32, 2**53 in float64)."""
    if sp.issparse(w):
        w = sp.csr_array(w)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            t = torch.sparse_csr_tensor(torch.from_numpy(w.indptr.astype(np.int64)),
                                        torch.from_numpy(w.indices.astype(np.int64)),
                                        torch.from_numpy(w.data.astype(np.float64)).to(dtype), size=w.shape)
        return lambda s: (t @ s.T).T
    wt = torch.from_numpy(np.ascontiguousarray(np.asarray(w, dtype=np.float64).T)).to(dtype)
    return lambda s: s @ wt


def _conv(weight: np.ndarray, in_shape, stride, padding, dtype=torch.float64) -> Callable[[torch.Tensor], torch.Tensor]:
    k = torch.from_numpy(np.asarray(weight, dtype=np.float64)).to(dtype)
    return lambda s: F.conv2d(s.reshape(s.shape[0], *in_shape), k, stride=tuple(stride),
                              padding=tuple(padding)).reshape(s.shape[0], -1)


def _activation_bounds(layer: FixedLayer) -> tuple[np.ndarray, np.ndarray]:
    """Per target neuron, bounds on the positive and negative sum of q (binary spikes: the sum
    lies in [-neg, pos])."""
    return drive_bounds(layer.effective_weight(), layer.kind, layer.conv and layer.conv["output_shape"])


def _fixed_conn(layer: FixedLayer, dtype) -> tuple[_Conn, int]:
    """Dense/Sparse: int32 channel of (sum q s) shifted by weight_exp (dense/models.py:97-107);
    Conv: 24-bit signed clamp of conv(s, q << weight_exp) (conv/models.py:45-51, :78-79).
    Also returns a bound on |a|; wraps that cannot trigger are skipped."""
    pos, neg = _activation_bounds(layer)
    total = int(max(pos.max(initial=0), neg.max(initial=0)))
    e = layer.weight_exp
    if layer.kind == "conv2d":
        c = layer.conv
        f = _conv(layer.weight, c["input_shape"], c["stride"], c["padding"], dtype)
        bound = total << e
        if bound < 2 ** 23:
            def apply(s):
                return f(s).to(torch.int64) << e
        else:
            bound = 2 ** 23

            def apply(s):
                return wrap(f(s).to(torch.int64) << e, 24)
        return _Conn(layer.source, layer.recurrent, apply), bound
    f = _matmul(layer.effective_weight(), dtype)
    bound = total << e if e > 0 else (total >> -e) + 1
    if bound < 2 ** 31:
        def apply(s):
            return shift(f(s).to(torch.int64), e)
    else:
        bound = 2 ** 31

        def apply(s):
            return wrap(shift(f(s).to(torch.int64), e), 32)
    return _Conn(layer.source, layer.recurrent, apply), bound


def fixed_plan(fixed: FixedNetwork) -> tuple[str, list[_Pop], torch.dtype]:
    """Populations ready to simulate, and the float dtype whose sums of q are exact."""
    sums = [int(abs(la.effective_weight()).reshape(la.weight.shape[0], -1).sum(axis=1).max(initial=0))
            if la.kind == "conv2d" else int(np.asarray(abs(la.effective_weight()).sum(axis=1)).max(initial=0))
            for la in fixed.layers]
    dtype = torch.float32 if max(sums, default=0) < 2 ** 24 else torch.float64
    pops = []
    for name in fixed.populations():
        layers = fixed.layers_of(name)
        first = layers[0]
        bias = torch.from_numpy(np.asarray(first.bias_mant, dtype=np.int64))
        bias = bias << first.bias_exp if first.bias_exp >= 0 else bias >> -first.bias_exp  # models.py:110-122
        conns, bounds = zip(*(_fixed_conn(la, dtype) for la in layers))
        bound = sum(bounds)
        safe = bound << ACT_SHIFT <= UV_MAX and (int(bias.abs().max()) < 2 ** 30 if bias.numel() else True)
        params = LifParams(int(first.du), int(first.dv), int(first.vth), bias, safe)
        pops.append(_Pop(name, int(np.prod(fixed.shapes[name])), list(conns), params))
    return fixed.input_name, pops, dtype


def float_plan(network: Network) -> tuple[str, list[_Pop]]:
    if len(network.inputs) != 1:
        raise BackendError(f"network has {len(network.inputs)} inputs; the emulator takes exactly one Input node")
    by_pop: dict[str, list[_Conn]] = {}
    for sl in network.synapse_layers():
        conn = sl.conn
        pooled = any(isinstance(n, Pool2d) for n in structural_path(network, conn.name))
        if isinstance(conn, Conv2d) and not pooled:
            f = _conv(conn.weight, conn.input_shape, conn.stride, conn.padding)
        else:
            w = connection_matrix(network, conn)  # Flatten/Pool2d folded in
            dense = isinstance(conn, Dense) and not conn.sparse and not pooled
            f = _matmul(w.toarray() if dense else w)
        bias = None
        if conn.bias is not None:
            per = 1 if not isinstance(conn, Conv2d) else int(np.prod(conn.output_shape[1:]))
            bias = torch.from_numpy(np.repeat(conn.bias, per))
        apply = f if bias is None else (lambda s, f=f, b=bias: f(s) + b)
        by_pop.setdefault(sl.post.name, []).append(_Conn(sl.pre.name, sl.recurrent, apply))
    pops = []
    for name, conns in by_pop.items():
        n = network.nodes[name]
        pops.append(_Pop(name, n.size, conns, FloatParams(n.du, n.dv, n.vth, torch.from_numpy(n.bias))))
    return network.inputs[0].name, pops


# -- simulation -------------------------------------------------------------------------------------
def simulate(input_name: str, pops: list[_Pop], x: torch.Tensor, fixed: bool) -> dict[str, torch.Tensor]:
    """Spikes (t, b, n) as 0/1 in x's dtype of every population for inputs ``x`` (t, b, n_in)."""
    T, B, _ = x.shape
    step = lif_fixed_step if fixed else lif_float_step
    dtype = torch.int64 if fixed else torch.float64
    spikes = {input_name: x}

    def lif_input(pop: _Pop, parts: list[torch.Tensor]) -> torch.Tensor:
        """Sum of the population's ports (LIF a_in: int32 adds), then ``<< 6`` in fixed point."""
        total = parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])
        if not fixed:
            return total
        return total << ACT_SHIFT if pop.params.safe else activation(wrap(total, 32))

    if not any(c.recurrent for p in pops for c in p.conns):
        # Feed-forward: each population's input for all steps in one batched product.
        for pop in pops:
            parts = [c.apply(spikes[c.source].reshape(T * B, -1)).reshape(T, B, -1) for c in pop.conns]
            a = lif_input(pop, parts).expand(T, B, pop.size)
            u = torch.zeros(B, pop.size, dtype=dtype)
            v = torch.zeros(B, pop.size, dtype=dtype)
            out = torch.empty(T, B, pop.size, dtype=x.dtype)
            for t in range(T):
                u, v, s = step(u, v, a[t], pop.params)
                out[t] = s
            spikes[pop.name] = out
        return spikes
    # Recurrent: every population advances one step at a time; recurrent edges read step t - 1.
    state = {p.name: (torch.zeros(B, p.size, dtype=dtype), torch.zeros(B, p.size, dtype=dtype)) for p in pops}
    for p in pops:
        spikes[p.name] = torch.zeros(T, B, p.size, dtype=x.dtype)
    for t in range(T):
        for pop in pops:
            parts = []
            for c in pop.conns:
                if c.recurrent:
                    src = spikes[c.source][t - 1] if t > 0 else torch.zeros_like(spikes[c.source][0])
                else:
                    src = spikes[c.source][t]
                parts.append(c.apply(src))
            u, v = state[pop.name]
            u, v, s = step(u, v, lif_input(pop, parts).expand(B, pop.size), pop.params)
            state[pop.name] = (u, v)
            spikes[pop.name][t] = s
    return spikes


class _threads:
    """Run torch on one thread: the per-step tensors are small, and on a busy machine thread
    hand-offs cost more than they save."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


def _inputs(x, size: int, binary: bool, dtype: torch.dtype) -> torch.Tensor:
    x = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 3:
        raise BackendError(f"inputs must be spikes of shape (t, b, n), got shape {tuple(x.shape)}")
    if x.shape[2] != size:
        raise BackendError(f"inputs have {x.shape[2]} channels per step but the network's input has {size}; "
                           "pass inputs that match the model")
    if binary and x.size and not ((x == 0) | (x == 1)).all():
        raise BackendError(f"the fixed-point emulator takes binary spikes (Lava's Dense reads booleans); inputs hold "
                           f"values in [{float(x.min()):g}, {float(x.max()):g}]; encode with 'rate' or use 'emulator-float'")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32 if dtype == torch.float32 else np.float64))


def _spikes(out: dict[str, torch.Tensor], pops: list[_Pop]) -> dict[str, np.ndarray]:
    return {p.name: out[p.name].numpy() != 0 for p in pops}


def run_fixed(fixed: FixedNetwork, inputs) -> dict[str, np.ndarray]:
    """Simulate a :class:`FixedNetwork` (e.g. one built by hand) bit-accurately."""
    name, pops, dtype = fixed_plan(fixed)
    x = _inputs(inputs, fixed.input_size, True, dtype)
    with torch.no_grad(), _threads():
        return _spikes(simulate(name, pops, x, fixed=True), pops)


def run_float(network: Network, inputs) -> dict[str, np.ndarray]:
    """Simulate ``network`` with the reference float64 semantics."""
    name, pops = float_plan(network)
    x = _inputs(inputs, network.inputs[0].size, False, torch.float64)
    with torch.no_grad(), _threads():
        return _spikes(simulate(name, pops, x, fixed=False), pops)


class EmulatorBackend:
    """Backend ``"emulator"`` (Lava bit-accurate fixed point) or ``"emulator-float"`` (float64)."""

    def __init__(self, mode: str = "fixed", neuron: str | None = None, reset: str = "zero"):
        if mode not in MODES:
            raise BackendError(f"unknown emulator mode {mode!r}; use 'fixed' or 'float'")
        from .spec import CHIP_MODELS

        if neuron is not None and neuron not in CHIP_MODELS:
            raise BackendError(f"unknown chip neuron model {neuron!r}; use one of {', '.join(CHIP_MODELS)}")
        if neuron is not None and mode != "fixed":
            raise BackendError(f"the chip neuron {neuron!r} runs in the fixed-point emulator, not 'emulator-float'")
        self.mode, self.neuron, self.reset = mode, neuron, reset
        self.name = "emulator" if mode == "fixed" else "emulator-float"
        # the declaration the runner checks (spikefit.capabilities): float64 takes currents; the fixed
        # point takes 0/1 spikes, a chip neuron what that chip takes (chipneurons.CHIP_INPUTS)
        from .chipneurons import CHIP_INPUTS
        from .spec import GENERIC_MODELS

        self.inputs, self.max_events = ("currents", None) if mode == "float" else CHIP_INPUTS.get(neuron, ("spikes", None))
        self.neurons = (neuron,) if neuron is not None else GENERIC_MODELS

    @classmethod
    def for_target(cls, spec, mode: str = "fixed") -> "EmulatorBackend":
        """The emulator running ``spec``'s chip neuron (``[neuron] models``), Lava's LIF when it names none."""
        neuron = spec.neuron.chip_model if mode == "fixed" else None
        return cls(mode, neuron, spec.neuron.reset)

    def run(self, network: Network, inputs) -> dict[str, np.ndarray]:
        """Spikes (t, b, n) of every population for input spikes ``inputs`` (t, b, n_in): booleans with
        Lava's LIF, spike counts with a chip neuron (spikefit.chipneurons)."""
        if self.mode == "float":
            return run_float(network, inputs)
        if self.neuron is not None:
            from .chipneurons import run_chip

            with torch.no_grad(), _threads():
                return run_chip(self.neuron, network, inputs, self.reset)
        return run_fixed(to_fixed(network), inputs)

    def __repr__(self) -> str:
        extra = f", neuron={self.neuron!r}" if self.neuron else ""
        return f"EmulatorBackend(mode={self.mode!r}{extra})"
