"""Torch SNN modules whose dynamics equal the chip neuron of :mod:`spikefit.network`.

Tensors are time-major: ``(t, b, n)`` (or ``(t, b, c, h, w)`` for convolutions). A feed-forward
connection delivers the spikes of step ``t`` within step ``t``; a recurrent connection delivers the
spikes of step ``t - 1``. Each population is current-based LIF with one ``du``, ``dv``, ``vth``::

    u[t] = u[t-1] (1 - du) + a_in[t]
    v[t] = v[t-1] (1 - dv) + u[t] + bias
    s[t] = v[t] > vth ;  v[t] = 0 where s[t]

``du`` and ``dv`` are snapped to multiples of 1/4096, the 12-bit decays of the chips' fixed-point
neurons. Spikes are a Heaviside step with a fast-sigmoid surrogate gradient (:class:`SpikeFn`).
The readout is the output population's spike counts; the predicted class is
:func:`spikefit.datasets.predict` of the counts, as on every backend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import network as N
from .errors import ModelError
from .lifscan import lif_scan
from .quantizers import build_quantizer, resize_rows

DECAY_STEPS = 4096        # decays are k / 4096 on the chips' fixed-point neurons (12 bits)
SURROGATE_SLOPE = 5.0     # fast-sigmoid slope over (v - vth) / vth; 5 keeps gradients alive 3-4 vth away


def snap_decay(x: float) -> float:
    """The nearest decay the chips represent exactly: a multiple of 1/4096 in [0, 1]."""
    return float(min(max(round(float(x) * DECAY_STEPS), 0), DECAY_STEPS)) / DECAY_STEPS


class SpikeFn(torch.autograd.Function):
    """Heaviside spike ``x > 0`` with the fast-sigmoid surrogate ``1 / (1 + k|x|)^2`` (Zenke & Ganguli
    2018), where ``x = (v - vth) / vth`` so the slope ``k`` does not depend on the threshold's units."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * x.abs()) ** 2, None


@dataclass
class Probe:
    """What Fisher Spike Contribution needs from one forward pass (see :mod:`spikefit.fsc`).

    ``masks[pop]`` is a (b, n) all-ones tensor multiplying the population's spike trains (its
    gradient is the per-sample neuron contribution); ``records[conn]`` lists (input spikes,
    synaptic input) pairs whose gradients give per-sample synapse contributions.
    """

    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    records: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    def record(self, name: str, x: torch.Tensor, a: torch.Tensor) -> None:
        if a.requires_grad:
            a.retain_grad()
            self.records.setdefault(name, []).append((x.detach(), a))


# -- synapses ---------------------------------------------------------------------------------

class Synapse(nn.Module):
    """A connection: latent weight, a 0/1 pruning mask and an optional weight quantizer.

    The weight used in the forward pass is ``quant(weight) * mask``: pruned synapses are exact zeros.
    """

    kind = "synapse"

    def __init__(self, name: str, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.name = name
        self.weight = nn.Parameter(weight.float())
        self.register_buffer("mask", torch.ones_like(self.weight))
        self.bias = None if bias is None else nn.Parameter(bias.float())
        self.quant: nn.Module | None = None

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    def effective_weight(self) -> torch.Tensor:
        w = self.weight if self.quant is None else self.quant(self.weight)
        return w * self.mask

    @torch.no_grad()
    def apply_mask(self) -> None:
        """Zero the latent weights of pruned synapses (after every optimizer step)."""
        self.weight.mul_(self.mask)

    def nonzero(self) -> int:
        return int(self.mask.count_nonzero())


class Linear(Synapse):
    """Dense synapses, weight (n_out, n_in)."""

    kind = "dense"

    def __init__(self, name: str, n_in: int, n_out: int, bias: bool = False, gain: float = 1.0,
                 generator: torch.Generator | None = None):
        bound = gain / math.sqrt(n_in)
        w = (torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound
        super().__init__(name, w, torch.zeros(n_out) if bias else None)

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        a = F.linear(x, self.effective_weight(), self.bias)  # (..., b, n_out)
        if probe is not None:
            probe.record(self.name, x, a)
        return a


class Conv(Synapse):
    """2-D convolution synapses, weight (c_out, c_in, kh, kw), on time-major (t, b, c, h, w)."""

    kind = "conv2d"

    def __init__(self, name: str, input_shape: tuple[int, int, int], c_out: int, kernel: int | tuple[int, int],
                 stride=1, padding=0, bias: bool = False, gain: float = 1.0,
                 generator: torch.Generator | None = None):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        c_in = input_shape[0]
        bound = gain / math.sqrt(c_in * kh * kw)
        w = (torch.rand(c_out, c_in, kh, kw, generator=generator) * 2 - 1) * bound
        super().__init__(name, w, torch.zeros(c_out) if bias else None)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.stride = N._pair(stride)
        self.padding = N._pair(padding)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return N.Conv2d(self.name, np.zeros(tuple(self.weight.shape)), self.input_shape,
                        self.stride, self.padding).output_shape

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        t, b = x.shape[:2]
        a = F.conv2d(x.reshape(t * b, *x.shape[2:]), self.effective_weight(), self.bias,
                     self.stride, self.padding)
        a = a.reshape(t, b, *a.shape[1:])  # (t, b, c_out, oh, ow)
        if probe is not None:
            probe.record(self.name, x, a)
        return a


# -- neurons and structure --------------------------------------------------------------------

class LIF(nn.Module):
    """A current-based LIF population with per-layer du, dv, vth and an optional per-neuron bias and
    recurrent :class:`Linear` connection (spikes of step t-1 of this population)."""

    kind = "neurons"

    def __init__(self, name: str, shape, du: float = 1.0, dv: float = 0.0, vth: float = 1.0,
                 bias: bool = False, recurrent: Linear | None = None, slope: float = SURROGATE_SLOPE,
                 model: str = "lif", delay: int = 0, max_spikes: int | None = None, reset: str = "zero"):
        super().__init__()
        if model not in NEURON_DYNAMICS:
            raise ModelError(f"neuron model {model!r} of population {name!r} is not one of {', '.join(NEURON_DYNAMICS)}")
        if reset not in ("zero", "subtract"):
            raise ModelError(f"reset {reset!r} of population {name!r} must be 'zero' or 'subtract'")
        # model: "lif" (spikefit.network's neuron) or a chip's own (spikefit.chipneurons); delay: steps
        # the feed-forward input arrives late (Xylo's hidden -> hidden / output layers: 1)
        self.model, self.delay, self.max_spikes, self.reset = model, int(delay), max_spikes, reset
        self.name = name
        self.shape = N._shape(shape)
        self.du, self.dv, self.vth = snap_decay(du), snap_decay(dv), float(vth)
        if not self.vth > 0:
            raise ModelError(f"vth {vth} of population {name!r} must be a positive number")
        self.bias = nn.Parameter(torch.zeros(self.shape)) if bias else None
        self.recurrent = recurrent
        self.slope = slope

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def forward(self, a: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        """Synaptic input a (t, b, *shape) -> spikes (t, b, *shape) (spike counts with a multi-spike chip neuron)."""
        if a.dtype != torch.float32:   # a bfloat16 matmul under autocast: the membrane integrates in float32
            a = a.float()
        if self.delay:
            a = torch.cat([torch.zeros_like(a[:self.delay]), a[:-self.delay]]) if a.shape[0] > self.delay \
                else torch.zeros_like(a)
        if self.model != "lif":
            return self._chip_forward(a, probe)
        if self.recurrent is None:
            return self._scan_forward(a, probe)
        return self._step_forward(a, probe)

    def _scan_forward(self, a: torch.Tensor, probe: Probe | None) -> torch.Tensor:
        """All T steps in one operation (:func:`spikefit.lifscan.lif_scan`); same spikes and gradients
        as :meth:`_step_forward`."""
        s = lif_scan(a, self.bias, self.du, self.dv, self.vth, self.slope)
        if probe is not None:
            mask = torch.ones_like(a[0], requires_grad=True)
            probe.masks[self.name] = mask
            s = s * mask
        return s

    def _step_forward(self, a: torch.Tensor, probe: Probe | None) -> torch.Tensor:
        """Step by step (a recurrent population: each step's input depends on the last step's spikes)."""
        steps, b = a.shape[:2]
        u = torch.zeros_like(a[0])
        v = torch.zeros_like(a[0])
        s_prev = torch.zeros_like(a[0])
        mask = None
        if probe is not None:
            mask = torch.ones_like(a[0], requires_grad=True)  # (b, *shape) multiplicative spike mask
            probe.masks[self.name] = mask
        out = []
        for k in range(steps):
            a_k = a[k]
            if self.recurrent is not None:
                a_k = a_k + self.recurrent(s_prev.reshape(b, -1), probe).reshape(a_k.shape)
            u = a_k if self.du == 1.0 else u * (1.0 - self.du) + a_k
            v = v * (1.0 - self.dv) + u if self.dv else v + u
            if self.bias is not None:
                v = v + self.bias
            s = SpikeFn.apply((v - self.vth) / self.vth, self.slope)
            v = v * (1.0 - s.detach())  # reset to 0; no gradient through the reset (Zenke & Vogels 2021)
            if mask is not None:
                s = s * mask
            out.append(s)
            s_prev = s
        return torch.stack(out)  # (t, b, *shape)

    def _chip_forward(self, a: torch.Tensor, probe: Probe | None) -> torch.Tensor:
        from .chiptrain import chip_forward

        return chip_forward(self, a, probe)


NEURON_DYNAMICS = ("lif", "xylo-lif", "speck-if", "akida-act", "truenorth-lif")


class Flatten(nn.Module):
    kind = "flatten"

    def __init__(self, name: str, input_shape):
        super().__init__()
        self.name = name
        self.input_shape = N._shape(input_shape)

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], -1)


class Pool(nn.Module):
    """Sum or average pooling of spikes over windows (no delay, no synapses)."""

    kind = "pool"

    def __init__(self, name: str, kind_: str, kernel, input_shape, stride=None, padding=0):
        super().__init__()
        self.name = name
        self.node = N.Pool2d(name, kind_, kernel, input_shape, stride, padding)

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        t, b = x.shape[:2]
        y = F.avg_pool2d(x.reshape(t * b, *x.shape[2:]), self.node.kernel, self.node.stride,
                         self.node.padding, count_include_pad=True)
        if self.node.kind_ == "sum":
            y = y * (self.node.kernel[0] * self.node.kernel[1])
        return y.reshape(t, b, *y.shape[1:])


# -- the network ------------------------------------------------------------------------------

class SNN(nn.Module):
    """A feed-forward chain of synapses, LIF populations, Flatten and Pool stages (recurrence lives
    inside :class:`LIF`). ``forward(x (t, b, n_in)) -> output spikes (t, b, n_out)``."""

    def __init__(self, stages: list[nn.Module], input_shape, input_name: str = "input",
                 output_name: str = "output", dt: float = 1e-3):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.input_shape = N._shape(input_shape)
        self.input_name, self.output_name, self.dt = input_name, output_name, dt
        self.weight_scaling = "layer"  # how to_network expresses scales: "layer", "chip" or "none"
        names = [input_name, output_name] + [s.name for s in self.walk()]
        if len(set(names)) != len(names):
            raise ModelError(f"stage names must be unique, got {names}")
        if not self.populations():
            raise ModelError("an SNN needs at least one LIF population (its output)")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def mlp(cls, n_in: int, hidden: list[int], n_out: int, du: float = 1.0, dv: float = 0.0,
            vth: float = 1.0, bias: bool = False, recurrent: bool = False, gain: float = 1.0,
            seed: int = 0) -> "SNN":
        """Input -> [fc_k -> lif_k]* -> output; ``recurrent`` adds a recurrent Linear to hidden layers."""
        g = torch.Generator().manual_seed(seed)
        sizes = [n_in, *hidden, n_out]
        stages: list[nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            stages.append(Linear(f"fc{k}", a, b, gain=gain, generator=g))
            rec = Linear(f"rec{k}", b, b, gain=0.5 * gain, generator=g) if recurrent and k < len(sizes) - 1 else None
            stages.append(LIF(f"lif{k}", (b,), du, dv, vth, bias=bias, recurrent=rec))
        return cls(stages, (n_in,))

    @classmethod
    def convnet(cls, input_shape, channels: list[int], strides: list[int], n_out: int, kernel: int = 3,
                padding: int = 1, du: float = 1.0, dv: float = 0.0, vth: float = 1.0, gain: float = 1.0,
                seed: int = 0) -> "SNN":
        """Input (c, h, w) -> [conv_k (kernel, stride_k, padding) -> lif_k]* -> flatten -> fc -> output."""
        if len(channels) != len(strides) or not channels:
            raise ModelError(f"channels {list(channels)} and strides {list(strides)} must be non-empty and of one length")
        g = torch.Generator().manual_seed(seed)
        shape = tuple(int(v) for v in input_shape)
        stages: list[nn.Module] = []
        for k, (c, s) in enumerate(zip(channels, strides), start=1):
            conv = Conv(f"conv{k}", shape, int(c), kernel, s, padding, gain=gain, generator=g)
            shape = conv.output_shape
            stages += [conv, LIF(f"lif{k}", shape, du, dv, vth)]
        k = len(channels) + 1
        stages += [Flatten("flat", shape), Linear(f"fc{k}", int(np.prod(shape)), n_out, gain=gain, generator=g),
                   LIF(f"lif{k}", (n_out,), du, dv, vth)]
        return cls(stages, tuple(int(v) for v in input_shape))

    # -- queries -----------------------------------------------------------------------------
    def walk(self):
        """Every stage and every recurrent connection, in order."""
        for s in self.stages:
            yield s
            if isinstance(s, LIF) and s.recurrent is not None:
                yield s.recurrent

    def synapses(self) -> list[Synapse]:
        return [s for s in self.walk() if isinstance(s, Synapse)]

    def populations(self) -> list[LIF]:
        return [s for s in self.stages if isinstance(s, LIF)]

    def output_population(self) -> LIF:
        return self.populations()[-1]

    def stage(self, name: str) -> nn.Module:
        for s in self.walk():
            if s.name == name:
                return s
        raise ModelError(f"no stage named {name!r}; stages: {[s.name for s in self.walk()]}")

    def post_of(self, syn: Synapse) -> LIF:
        """The population a connection feeds."""
        for p in self.populations():
            if p.recurrent is syn:
                return p
        seen = False
        for s in self.stages:
            if s is syn:
                seen = True
            elif seen and isinstance(s, LIF):
                return s
        raise ModelError(f"connection {syn.name!r} feeds no population")

    def pre_of(self, syn: Synapse) -> LIF | None:
        """The population whose spikes a connection carries (None for the network input)."""
        for p in self.populations():
            if p.recurrent is syn:
                return p
        pre = None
        for s in self.stages:
            if s is syn:
                return pre
            if isinstance(s, LIF):
                pre = s
        raise ModelError(f"connection {syn.name!r} is not part of this network")

    def incoming(self, pop: LIF) -> list[Synapse]:
        return [s for s in self.synapses() if self.post_of(s) is pop]

    def outgoing(self, pop: LIF) -> list[Synapse]:
        return [s for s in self.synapses() if self.pre_of(s) is pop]

    # -- running -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        """Input spikes (t, b, *input_shape) -> output spikes (t, b, n_out)."""
        x = x.reshape(x.shape[0], x.shape[1], *self.input_shape)
        for s in self.stages:
            x = s(x, probe)
        return x.reshape(x.shape[0], x.shape[1], -1)

    @torch.no_grad()
    def apply_masks(self) -> None:
        for s in self.synapses():
            s.apply_mask()

    @torch.no_grad()
    def remove_neurons(self, pop_name: str, keep: np.ndarray) -> None:
        """Physically remove the neurons of a hidden population not listed in ``keep``: rows of its
        incoming connections, columns of its outgoing ones, its bias, rows and columns of its
        recurrent connection. Parameters are replaced, so build a new optimizer afterwards."""
        pop = self.stage(pop_name)
        keep = np.sort(np.asarray(keep, dtype=np.int64))
        if pop is self.output_population():
            raise ModelError(f"population {pop_name!r} is the readout; its neurons cannot be removed")
        if len(pop.shape) != 1 or any(isinstance(s, Conv) for s in self.incoming(pop) + self.outgoing(pop)):
            raise ModelError(f"population {pop_name!r} is convolutional; only populations between dense "
                             "connections can lose neurons")
        idx = torch.as_tensor(keep)
        for syn in self.incoming(pop):
            cols = idx if syn is pop.recurrent else slice(None)
            syn.weight = nn.Parameter(syn.weight.data[idx][:, cols].clone())
            syn.mask = syn.mask[idx][:, cols].clone()
            if syn.bias is not None:
                syn.bias = nn.Parameter(syn.bias.data[idx].clone())
            resize_rows(self, syn, keep)
        for syn in self.outgoing(pop):
            if syn is pop.recurrent:
                continue
            syn.weight = nn.Parameter(syn.weight.data[:, idx].clone())
            syn.mask = syn.mask[:, idx].clone()
        pop.shape = (len(keep),)
        if pop.bias is not None:
            pop.bias = nn.Parameter(pop.bias.data[idx].clone())

    # -- serialization -----------------------------------------------------------------------
    def arch(self) -> dict:
        """A plain (JSON-able) description of the structure, for checkpoints (weights excluded)."""
        def stage(s):
            if isinstance(s, Linear):
                d = {"kind": "dense", "name": s.name, "n_in": int(s.weight.shape[1]), "n_out": s.n_out,
                     "bias": s.bias is not None}
            elif isinstance(s, Conv):
                d = {"kind": "conv2d", "name": s.name, "input_shape": list(s.input_shape),
                     "c_out": s.n_out, "kernel": list(s.weight.shape[2:]), "stride": list(s.stride),
                     "padding": list(s.padding), "bias": s.bias is not None}
            elif isinstance(s, LIF):
                d = {"kind": "neurons", "name": s.name, "shape": list(s.shape), "du": s.du, "dv": s.dv,
                     "vth": s.vth, "bias": s.bias is not None, "slope": s.slope,
                     "recurrent": None if s.recurrent is None else stage(s.recurrent)}
                if s.model != "lif":
                    d.update(model=s.model, delay=s.delay, max_spikes=s.max_spikes, reset=s.reset)
            elif isinstance(s, Flatten):
                d = {"kind": "flatten", "name": s.name, "input_shape": list(s.input_shape)}
            else:
                n = s.node
                d = {"kind": "pool", "name": s.name, "pool": n.kind_, "kernel": list(n.kernel),
                     "input_shape": list(n.input_shape), "stride": list(n.stride), "padding": list(n.padding)}
            if isinstance(s, Synapse):
                d["quant"] = None if s.quant is None else s.quant.spec()
            return d

        return {"input_shape": list(self.input_shape), "input_name": self.input_name,
                "output_name": self.output_name, "dt": self.dt, "weight_scaling": self.weight_scaling,
                "stages": [stage(s) for s in self.stages]}

    @classmethod
    def from_arch(cls, arch: dict) -> "SNN":
        """Rebuild the structure of :meth:`arch` (then load a state dict for the weights)."""
        def stage(d):
            kind = d["kind"]
            if kind == "dense":
                s = Linear(d["name"], d["n_in"], d["n_out"], bias=d["bias"])
            elif kind == "conv2d":
                s = Conv(d["name"], tuple(d["input_shape"]), d["c_out"], tuple(d["kernel"]), tuple(d["stride"]),
                         tuple(d["padding"]), bias=d["bias"])
            elif kind == "neurons":
                rec = None if d["recurrent"] is None else stage(d["recurrent"])
                s = LIF(d["name"], tuple(d["shape"]), d["du"], d["dv"], d["vth"], d["bias"], rec, d["slope"],
                        d.get("model", "lif"), d.get("delay", 0), d.get("max_spikes"), d.get("reset", "zero"))
            elif kind == "flatten":
                s = Flatten(d["name"], tuple(d["input_shape"]))
            elif kind == "pool":
                s = Pool(d["name"], d["pool"], tuple(d["kernel"]), tuple(d["input_shape"]), tuple(d["stride"]),
                         tuple(d["padding"]))
            else:
                raise ModelError(f"unknown stage kind {kind!r} in checkpoint architecture")
            if isinstance(s, Synapse) and d.get("quant"):
                s.quant = build_quantizer(d["quant"])
            return s

        model = cls([stage(d) for d in arch["stages"]], tuple(arch["input_shape"]), arch["input_name"],
                    arch["output_name"], arch["dt"])
        model.weight_scaling = arch.get("weight_scaling", "layer")
        return model

    # -- conversion to and from the framework-neutral Network (spikefit.nn_network) ------------------
    def to_network(self, metadata: dict | None = None) -> N.Network:
        """The exact Network description (:func:`spikefit.nn_network.to_network`)."""
        from .nn_network import to_network
        return to_network(self, metadata)

    @classmethod
    def from_network(cls, net: N.Network, snap: bool = False) -> "SNN":
        """A trainable SNN from a Network, e.g. read from NIR (:func:`spikefit.nn_network.from_network`)."""
        from .nn_network import from_network
        return from_network(net, snap, cls)


# -- readout and loss -------------------------------------------------------------------------

def spike_counts(out: torch.Tensor) -> torch.Tensor:
    """Output spikes (t, b, n) -> counts (b, n)."""
    return out.sum(0)


def count_loss(out: torch.Tensor, y: torch.Tensor, scale: float, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on spike counts scaled by ``scale`` (logits = scale * counts)."""
    return F.cross_entropy(spike_counts(out) * scale, y, reduction=reduction)


from .chiptrain import MultiSpikeFn, set_neuron_model, xylo_decay  # noqa: E402  (the chip neurons)
