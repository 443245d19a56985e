"""The standard NeuroBench metrics of a spikefit network, computed by the ``neurobench`` package itself.

:func:`neurobench_metrics` builds a torch model whose connections are plain ``torch.nn.Linear`` /
``torch.nn.Conv2d`` modules (what NeuroBench's hooks look for) holding the network's exact weights,
and whose populations are :class:`StepLIF` modules with the chip neuron's dynamics, one time step per
call. It is wrapped in NeuroBench's ``SNNTorchModel`` (which resets state and steps through the time
axis) and run by NeuroBench's ``Benchmark`` with its static metrics ``Footprint`` and
``ConnectionSparsity`` and its workload metrics ``SynapticOperations`` and ``ActivationSparsity``.

How these relate to spikefit's own counts is in ``docs/energy.md``: on networks without pooling,
NeuroBench's ``Effective_ACs`` equals spikefit's synaptic operations per sample.

``neurobench`` is an optional dependency: install it without its dependencies so that the pinned
torch stays; of those, the metrics used here need only snntorch (and tqdm, which spikefit already
requires): ``pip install -c constraints.txt snntorch==1.0.0`` then
``pip install -c constraints.txt --no-deps neurobench==2.3.0``.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch import nn

from .errors import BackendError, ModelError
from .network import Network

INSTALL = "pip install -c constraints.txt snntorch==1.0.0 && pip install -c constraints.txt --no-deps neurobench==2.3.0"


class StepLIF(nn.Module):
    """One population of spikefit's current-based LIF, advanced one step per call:
    ``u = u (1 - du) + a``, ``v = v (1 - dv) + u + bias``, spike when ``v > vth``, then ``v = 0``."""

    def __init__(self, name: str, size: int, du: float, dv: float, vth: float, bias: np.ndarray | None,
                 recurrent: nn.Linear | None = None):
        super().__init__()
        self.name, self.size, self.du, self.dv, self.vth = name, size, du, dv, vth
        self.register_buffer("bias", torch.as_tensor(np.zeros(size) if bias is None else bias, dtype=torch.float32))
        self.recurrent = recurrent
        self.reset()

    def reset(self) -> None:
        self.u = self.v = self.s = None

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # (b, n) -> spikes (b, n)
        if self.u is None:
            self.u, self.v, self.s = (torch.zeros_like(a) for _ in range(3))
        if self.recurrent is not None:
            a = a + self.recurrent(self.s)  # spikes of the previous step (NeuroBench's hook sees them)
        self.u = self.u * (1.0 - self.du) + a
        self.v = self.v * (1.0 - self.dv) + self.u + self.bias
        self.s = (self.v > self.vth).to(a.dtype)
        self.v = self.v * (1.0 - self.s)
        return self.s


class StepNet(nn.Module):
    """A spikefit network as a chain of torch modules, one time step per call: ``(b, n_in) ->
    (output spikes, None)``, the tuple that NeuroBench's ``SNNTorchModel`` unpacks."""

    def __init__(self, stages: list[nn.Module], input_shape: tuple[int, ...]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.input_shape = input_shape

    def reset(self) -> None:
        for s in self.stages:
            if isinstance(s, StepLIF):
                s.reset()

    def forward(self, x: torch.Tensor):
        x = x.reshape(x.shape[0], *self.input_shape)
        for s in self.stages:
            if isinstance(s, StepLIF):
                shape = x.shape
                x = s(x.reshape(shape[0], -1)).reshape(shape)
            else:
                x = s(x)
        return x.reshape(x.shape[0], -1), None


class _SumPool(nn.Module):
    def __init__(self, node):
        super().__init__()
        self.node = node

    def forward(self, x):
        y = nn.functional.avg_pool2d(x, self.node.kernel, self.node.stride, self.node.padding, count_include_pad=True)
        return y * (self.node.kernel[0] * self.node.kernel[1]) if self.node.kind_ == "sum" else y


def step_net(network: Network) -> StepNet:
    """The torch model of ``network`` (float32 weights; pruned synapses are zeros)."""
    from . import network as N
    from .nn import SNN

    SNN.from_network(network)  # the same structural checks as the trainer (a chain, one input)
    back = network.back_edges()
    rec_of = {}
    for a, b in back:
        conn = a if isinstance(network.nodes[a], N.Dense) else b
        pop = b if isinstance(network.nodes[b], N.Neurons) else a
        rec_of[pop] = network.nodes[conn]
    rec_names = {c.name for c in rec_of.values()}
    stages: list[nn.Module] = []
    for name in network.topological_order():
        node = network.nodes[name]
        if name in rec_names or isinstance(node, (N.Input, N.Output)):
            continue
        if isinstance(node, N.Dense):
            stages.append(_linear(node))
        elif isinstance(node, N.Conv2d):
            w = np.asarray(node.weight, dtype=np.float64)
            conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], node.stride, node.padding,
                             bias=node.bias is not None, dtype=torch.float32)
            with torch.no_grad():
                conv.weight.copy_(torch.as_tensor(w))
                if node.bias is not None:  # added every step; NeuroBench counts no operation for it
                    conv.bias.copy_(torch.as_tensor(np.asarray(node.bias).reshape(-1)))
            stages.append(conv)
        elif isinstance(node, N.Neurons):
            rec = rec_of.get(name)
            bias = None if node.bias is None else np.asarray(node.bias, dtype=np.float64).reshape(-1)
            stages.append(StepLIF(name, node.size, node.du, node.dv, node.vth, bias,
                                  None if rec is None else _linear(rec)))
        elif isinstance(node, N.Flatten):
            stages.append(nn.Flatten())
        elif isinstance(node, N.Pool2d):
            stages.append(_SumPool(node))
        else:
            raise ModelError(f"node {name!r} of type {type(node).__name__} has no NeuroBench equivalent")
    return StepNet(stages, tuple(network.inputs[0].shape))


class StepNetBackend:
    """Runs :func:`step_net` (the model NeuroBench measures) as a spikefit backend, so that
    :func:`spikefit.runner.execute` counts spikefit's synaptic operations on exactly the spikes
    NeuroBench sees: ``execute(network, StepNetBackend(), x)``."""

    name = "torch-step"

    @torch.no_grad()
    def run(self, network: Network, x: np.ndarray) -> dict[str, np.ndarray]:
        net = step_net(network)
        pops = [s for s in net.stages if isinstance(s, StepLIF)]
        out: dict[str, list[torch.Tensor]] = {p.name: [] for p in pops}
        hooks = [p.register_forward_hook(lambda m, _i, o: out[m.name].append(o.clone())) for p in pops]
        net.reset()
        for k in range(x.shape[0]):
            net(torch.as_tensor(np.asarray(x[k]), dtype=torch.float32))
        for h in hooks:
            h.remove()
        return {k: torch.stack(v).numpy() for k, v in out.items()}  # (t, b, n) per population


def _linear(node) -> nn.Linear:
    w = node.weight.toarray() if hasattr(node.weight, "toarray") else np.asarray(node.weight)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=node.bias is not None, dtype=torch.float32)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        if node.bias is not None:  # added every step; NeuroBench counts no operation for it
            lin.bias.copy_(torch.as_tensor(np.asarray(node.bias, dtype=np.float32).reshape(-1)))
    return lin


def neurobench_metrics(network: Network, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 64) -> dict:
    """NeuroBench's Footprint, ConnectionSparsity, SynapticOperations and ActivationSparsity of
    ``network`` on input spikes ``x`` (t, b, n); per-sample averages as NeuroBench computes them.

    :raises BackendError: ``neurobench`` is not installed, or one of its metrics failed.
    """
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
        from neurobench.models import SNNTorchModel
    except ImportError as e:
        raise BackendError(f"the NeuroBench metrics need the neurobench package ({e}); install it with "
                           f"`{INSTALL}`") from None
    from neurobench import __version__

    net = step_net(network)
    model = SNNTorchModel(net)
    model.add_activation_module(StepLIF)  # before Benchmark registers its hooks
    xb = torch.as_tensor(np.ascontiguousarray(np.swapaxes(np.asarray(x), 0, 1)), dtype=torch.float32)  # (b, t, n)
    yb = torch.as_tensor(np.zeros(xb.shape[0], dtype=np.int64) if y is None else np.asarray(y, dtype=np.int64))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xb, yb), batch_size=batch_size)
    metrics = [[Footprint, ConnectionSparsity], [SynapticOperations, ActivationSparsity]]
    log = io.StringIO()
    with torch.no_grad(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(io.StringIO()):
        bench = Benchmark(model, loader, [], [], metrics)
        results = bench.run(quiet=False)
        model.cleanup_hooks()
    failed = [line for line in log.getvalue().splitlines() if line.startswith("Error running")]
    if failed or not isinstance(results.get("SynapticOperations"), dict):
        raise BackendError(f"NeuroBench {__version__} failed on this network: "
                           f"{failed[0] if failed else results}; report the network's layers")
    ops = results["SynapticOperations"]
    return {"neurobench_version": __version__, "samples": int(xb.shape[0]), "steps": int(xb.shape[1]),
            "footprint_bytes": int(results["Footprint"]), "connection_sparsity": float(results["ConnectionSparsity"]),
            "activation_sparsity": float(results["ActivationSparsity"]),
            "synops": {"effective_macs": float(ops["Effective_MACs"]), "effective_acs": float(ops["Effective_ACs"]),
                       "dense": float(ops["Dense"])}}


__all__ = ["neurobench_metrics", "step_net", "StepLIF", "StepNet", "StepNetBackend", "INSTALL"]
