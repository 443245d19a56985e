"""The networks ``spikefit bench train`` times, built three ways on one architecture: spikefit's
:class:`~spikefit.nn.SNN`, snnTorch and SpikingJelly (each where installed).

Workloads (time-major inputs ``(t, b, *shape)``):

* ``mlp-W``: the default MNIST-1D network, 80 inputs -> W LIF -> 10 LIF, T = 20, batch 64; a full
  training step (forward, count loss, backward, Adam, masks).
* ``conv``: event frames 2x128x128 -> conv 3x3 (64 ch) -> LIF (1,048,576 neurons) -> sum-pool 4 ->
  conv 3x3 (32 ch) -> LIF (32,768) -> sum-pool 2 -> dense (8,192 -> 10) -> 10 LIF; T = 8, batch 16;
  a full step.
* ``lif-N``: one Linear(N, N) + LIF, batch 10, T = 500, forward + backward (no optimizer): the shape
  SpikingJelly's LIF kernel is usually quoted on.

Neurons: current-based LIF with du = 1 (no synaptic current), ``dv`` the leak, threshold 1, reset to
0 without gradient through the reset. snnTorch: ``Leaky(beta=1 - dv, reset_mechanism="zero")``;
SpikingJelly: ``LIFNode(tau=1 / dv, decay_input=False, v_reset=0, detach_reset=True, step_mode="m")``.
The synapses of the peers run over all T steps at once (the fastest way to use them); their
neurons step as the library does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import LIF, SNN, Conv, Flatten, Linear, Pool


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str                   # "mlp", "conv", "lif"
    input_shape: tuple
    steps: int
    batch: int
    width: int = 0
    dv: float = 0.125
    full_step: bool = True      # a training step (loss, backward, Adam) or forward + backward only
    classes: int = 10

    @property
    def neurons(self) -> int:
        return sum(p.size for p in spikefit_model(self).populations())


def mlp(width: int) -> Workload:
    return Workload(f"mlp-{width}", "mlp", (80,), 20, 64, width)


def conv(size: int = 128, batch: int = 16, steps: int = 8, channels: int = 64) -> Workload:
    return Workload("conv" if size == 128 else f"conv-{size}", "conv", (2, size, size), steps, batch, channels)


def lif(n: int) -> Workload:
    return Workload(f"lif-{n}", "lif", (n,), 500, 10, n, dv=0.5, full_step=False)


def spikefit_model(w: Workload, seed: int = 0) -> SNN:
    """The workload's network as a spikefit SNN (seeded init)."""
    g = torch.Generator().manual_seed(seed)
    if w.kind == "mlp":
        return SNN([Linear("fc1", w.input_shape[0], w.width, gain=3.0, generator=g),
                    LIF("lif1", (w.width,), 1.0, w.dv),
                    Linear("fc2", w.width, w.classes, gain=3.0, generator=g), LIF("lif2", (w.classes,), 1.0, w.dv)],
                   w.input_shape)
    if w.kind == "lif":
        return SNN([Linear("fc", w.width, w.width, gain=3.0, generator=g), LIF("lif", (w.width,), 1.0, w.dv)],
                   w.input_shape)
    c, size = w.width, w.input_shape[1]
    c2, s2, s3 = c // 2, size // 4, size // 8
    return SNN([Conv("conv1", w.input_shape, c, 3, padding=1, gain=3.0, generator=g), LIF("lif1", (c, size, size), 1.0, w.dv),
                Pool("pool1", "sum", 4, (c, size, size)),
                Conv("conv2", (c, s2, s2), c2, 3, padding=1, generator=g), LIF("lif2", (c2, s2, s2), 1.0, w.dv),
                Pool("pool2", "sum", 2, (c2, s2, s2)), Flatten("flat", (c2, s3, s3)),
                Linear("fc", c2 * s3 * s3, w.classes, generator=g), LIF("out", (w.classes,), 1.0, w.dv)],
               w.input_shape)


def torch_layers(model: SNN) -> list:
    """The SNN's stages as plain torch modules (same weights) plus ("neurons", shape) markers."""
    out: list = []
    for s in model.stages:
        if isinstance(s, Linear):
            m = nn.Linear(s.weight.shape[1], s.n_out, bias=False)
        elif isinstance(s, Conv):
            m = nn.Conv2d(s.weight.shape[1], s.n_out, tuple(s.weight.shape[2:]), s.stride, s.padding, bias=False)
        elif isinstance(s, Pool):
            k = s.node.kernel
            out.append(("pool", nn.AvgPool2d(k, s.node.stride), k[0] * k[1]))
            continue
        elif isinstance(s, Flatten):
            out.append(("flatten", None, None))
            continue
        else:
            out.append(("neurons", None, None))
            continue
        with torch.no_grad():
            m.weight.copy_(s.weight)
        out.append(("synapse", m, None))
    return out


class PeerNet(nn.Module):
    """The workload's network with a peer library's neurons: synapses over all steps at once,
    ``make_neuron()`` stepping as its library does (``step(neuron, a) -> spikes``)."""

    def __init__(self, model: SNN, make_neuron, step):
        super().__init__()
        self.plan = torch_layers(model)
        self.mods = nn.ModuleList([m for kind, m, _ in self.plan if m is not None])
        self.neurons = nn.ModuleList([make_neuron() for kind, _, _ in self.plan if kind == "neurons"])
        self.step = step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        h = x
        neurons = iter(self.neurons)
        for kind, m, k in self.plan:
            if kind == "synapse" or kind == "pool":
                y = m(h.reshape(t * b, *h.shape[2:]))
                h = y.reshape(t, b, *y.shape[1:]) * (k if kind == "pool" else 1)
            elif kind == "flatten":
                h = h.reshape(t, b, -1)
            else:
                h = self.step(next(neurons), h)
        return h.reshape(t, b, -1)


def snntorch_model(model: SNN, dv: float):
    """snnTorch's Leaky neurons on the workload's architecture (None if snnTorch is missing)."""
    try:
        import snntorch as snn
        from snntorch import surrogate
    except ImportError:
        return None

    def make():
        return snn.Leaky(beta=1.0 - dv, threshold=1.0, reset_mechanism="zero",
                         spike_grad=surrogate.fast_sigmoid(slope=5.0))

    def step(neuron, a):
        mem = neuron.init_leaky()
        out = []
        for k in range(a.shape[0]):
            spk, mem = neuron(a[k], mem)
            out.append(spk)
        return torch.stack(out)

    return PeerNet(model, make, step)


def spikingjelly_model(model: SNN, dv: float):
    """SpikingJelly's multi-step LIFNode (its fastest kernel for the device) on the architecture,
    or None if SpikingJelly is missing."""
    try:
        from spikingjelly.activation_based import functional, neuron
    except Exception:
        return None

    def make():
        return neuron.LIFNode(tau=1.0 / dv, decay_input=False, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                              step_mode="m")

    def step(node, a):
        functional.reset_net(node)
        return node(a)

    return PeerNet(model, make, step)
