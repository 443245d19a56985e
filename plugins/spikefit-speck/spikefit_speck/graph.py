"""The torch module of a non-chain network (imported with torch, only when a network is converted).

A chain becomes an ``nn.Sequential``; any other graph a :class:`Graph` that calls its layers in the
order of the spikefit graph. Every operation is a module call, so nirtorch (which sinabs uses to read
the graph) sees every edge. It is a module-level class so that an exported module can be pickled.
"""
from __future__ import annotations

from torch import nn


class Graph(nn.Module):
    """``steps``: (layer key, keys of its inputs; "" is the module input) in call order; ``outputs``:
    the keys whose values the module returns (one tensor, or a tuple for several)."""

    def __init__(self, layers: dict[str, nn.Module], steps: list[tuple[str, list[str]]], outputs: list[str]):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.steps = [(k, list(i)) for k, i in steps]
        self.outputs = list(outputs)

    def forward(self, x):
        values = {"": x}
        for key, inputs in self.steps:
            values[key] = self.layers[key](*(values[i] for i in inputs))
        outs = tuple(values[k] for k in self.outputs)
        return outs[0] if len(outs) == 1 else outs
