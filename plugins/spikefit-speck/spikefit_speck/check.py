"""The vendor check for Speck 2f: sinabs's own conversion and core mapping.

``SinabsCheck().check(network, spec)`` converts the network to sinabs layers (:mod:`.convert`), then
runs what sinabs runs before it writes a chip configuration, without samna:

1. ``DynapcnnNetwork(module, input_shape, discretize=True)``: groups the layers into one
   weight -> neuron -> pooling layer per core and refuses what Speck cannot run (LIF neurons,
   non-square kernels or pooling, pooling whose stride differs from its size, invalid graphs);
2. ``ChipFactory("speck2fmodule").get_config_builder().map_layers_to_cores(net.dynapcnn_layers)``:
   matches layers to the 9 cores by their kernel, neuron and bias memory ("No valid mapping found");
3. ``get_dynapcnn_layer_config_dict(layer, layer2core, destinations)`` for every layer: the per-core
   configuration sinabs hands to samna (square kernels and pooling checked again).

The verdict is ``fits=True`` with the core map, ``fits=False`` with the first line of sinabs's own
error, or ``fits=None`` when the network has no sinabs equivalent (sinabs cannot be asked).
"""
from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikefit.errors import BackendError
from spikefit.network import Network

from .convert import NoSinabsEquivalent, to_sinabs

DEVICE = "speck2fmodule"
SINABS_HINT = ("sinabs is not installed; install it without its samna dependency: "
               "pip install --no-deps sinabs==3.1.3 (make install does)")


@dataclass
class SinabsMapping:
    """What sinabs said about one network."""

    fits: bool | None
    message: str
    layer2core: dict[int, int] = field(default_factory=dict)      # sinabs layer index -> core
    memory: dict[int, dict[str, int]] = field(default_factory=dict)   # layer index -> kernel/neuron/bias entries
    destinations: dict[int, list[int]] = field(default_factory=dict)  # layer index -> destination layers (-1: exit)
    populations: dict[int, str] = field(default_factory=dict)     # layer index -> spikefit population


def dynapcnn():
    """``sinabs.backend.dynapcnn`` (imported through the samna placeholders); BackendError when missing."""
    from .shim import import_dynapcnn

    try:
        return import_dynapcnn()
    except ImportError as e:
        if getattr(e, "name", "") and not str(e.name).startswith("sinabs"):
            raise
        raise BackendError(SINABS_HINT) from None


def _first_line(e: BaseException) -> str:
    """``Type: first line of the message``; a bare ``assert`` in sinabs gets the file and line that raised."""
    text = str(e).strip().splitlines()
    if text:
        return f"{type(e).__name__}: {text[0]}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "sinabs" in f.filename]
    where = f" at {'/'.join(Path(frames[-1].filename).parts[-3:])}:{frames[-1].lineno}" if frames else ""
    return f"{type(e).__name__}{where}"


class SinabsRefused(Exception):
    """sinabs refused the network; the message is sinabs's own first line."""


@dataclass
class Mapped:
    """A network as sinabs prepared it for the chip."""

    net: object                          # sinabs DynapcnnNetwork (discretized)
    builder: object                      # the speck2f config builder
    layer2core: dict[int, int]
    configs: dict[int, dict]             # layer index -> get_dynapcnn_layer_config_dict(...)


def runnable(network: Network, batch_size: int = 1, reset: str = "zero"):
    """The converted model, once its torch module has run on a zero input (NoSinabsEquivalent otherwise)."""
    import torch

    model = to_sinabs(network, batch_size=batch_size, reset=reset)
    try:
        with torch.no_grad():     # the converted module must run before sinabs traces it
            copy.deepcopy(model.module)(torch.zeros((batch_size, *model.input_shape)))
    except Exception as e:
        raise NoSinabsEquivalent(f"the converted module does not run ({_first_line(e)})") from None
    return model


def map_model(model) -> Mapped:
    """``DynapcnnNetwork`` + ``map_layers_to_cores`` + every layer's config dict (see the module docstring);
    SinabsRefused with sinabs's own words when it refuses."""
    dc = dynapcnn()
    from .shim import SamnaMissing

    try:
        net = dc.DynapcnnNetwork(model.module, input_shape=model.input_shape, discretize=True)
        builder = dc.chip_factory.ChipFactory(DEVICE).get_config_builder()
        layers = net.dynapcnn_layers
        core_map = builder.map_layers_to_cores(layers)
        dest = net.layer_destination_map
        configs = {int(i): builder.get_dynapcnn_layer_config_dict(layer, core_map, dest[i])
                   for i, layer in layers.items()}
    except SamnaMissing:
        raise
    except Exception as e:   # sinabs's refusal: its own exception types, ValueError, TypeError, assert
        raise SinabsRefused(_first_line(e)) from e
    return Mapped(net, builder, {int(k): int(v) for k, v in core_map.items()}, configs)


def layer_populations(mapped: Mapped, model) -> dict[int, str]:
    """sinabs layer index -> the spikefit population it runs. sinabs rebuilds the neuron layers (their
    ``__deepcopy__`` keeps only constructor arguments), so a layer is recognised by its weights: sinabs
    scales and rounds them, which keeps their direction; each layer takes the unclaimed population whose
    weights of the same shape point the same way (cosine), ties going to the earlier population."""
    out: dict[int, str] = {}
    free = list(model.populations)
    for i, layer in sorted(mapped.net.dynapcnn_layers.items()):
        w = layer.conv_layer.weight.detach().cpu().numpy().astype(np.float64)
        w = w.reshape(w.shape[0], -1)
        best, score = None, -1.0
        for name in free:
            ref = model.weights[name]
            if ref.shape != w.shape:
                continue
            den = float(np.linalg.norm(ref) * np.linalg.norm(w))
            cos = abs(float((ref * w).sum())) / den if den else 1.0
            if cos > score + 1e-9:
                best, score = name, cos
        if best is not None:
            out[int(i)] = best
            free.remove(best)
    return out


def sinabs_mapping(network: Network) -> SinabsMapping:
    """Run sinabs's conversion and core mapping on ``network`` (see the module docstring)."""
    try:
        model = runnable(network)
    except NoSinabsEquivalent as e:
        return SinabsMapping(None, f"no sinabs equivalent: {e}")
    try:
        mapped = map_model(model)
    except SinabsRefused as e:
        return SinabsMapping(False, str(e))
    layers = mapped.net.dynapcnn_layers
    memory = {int(i): {k: int(v) for k, v in layer.memory_summary().items()} for i, layer in layers.items()}
    pops = layer_populations(mapped, model)
    names = {int(i): pops.get(int(i), str(i)) for i in layers}
    cores = ", ".join(f"{names[i]}->{c}" for i, c in sorted(mapped.layer2core.items()))
    dest = mapped.net.layer_destination_map
    return SinabsMapping(True, f"mapped {len(mapped.layer2core)} layers on cores ({cores})", mapped.layer2core,
                         memory, {int(k): [int(d) for d in v] for k, v in dest.items()}, names)


class SinabsCheck:
    """Speck 2f as sinabs 3.1.3 maps it (a :class:`spikefit.vendor.VendorCheck`)."""

    name = "sinabs"
    target = "speck2f"

    def check(self, network: Network, spec=None):
        from spikefit.vendor import VendorVerdict

        result = sinabs_mapping(network)
        return VendorVerdict(result.fits, result.message)

    def corpus(self):
        from .corpus import corpus

        return corpus()
