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
    populations: list[str] = field(default_factory=list)          # spikefit populations in module order


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


def sinabs_mapping(network: Network) -> SinabsMapping:
    """Run sinabs's conversion and core mapping on ``network`` (see the module docstring)."""
    import torch

    try:
        model = to_sinabs(network)
    except NoSinabsEquivalent as e:
        return SinabsMapping(None, f"no sinabs equivalent: {e}")
    try:
        with torch.no_grad():     # the converted module must run before sinabs traces it
            copy.deepcopy(model.module)(torch.zeros((1, *model.input_shape)))
    except Exception as e:
        return SinabsMapping(None, f"no sinabs equivalent: the converted module does not run ({_first_line(e)})")
    dc = dynapcnn()
    from .shim import SamnaMissing

    try:
        net = dc.DynapcnnNetwork(model.module, input_shape=model.input_shape, discretize=True)
        builder = dc.chip_factory.ChipFactory(DEVICE).get_config_builder()
        layers = net.dynapcnn_layers
        core_map = builder.map_layers_to_cores(layers)
        dest = net.layer_destination_map
        for idx, layer in layers.items():
            builder.get_dynapcnn_layer_config_dict(layer, core_map, dest[idx])
    except SamnaMissing:
        raise
    except Exception as e:   # sinabs's refusal: its own exception types, ValueError and TypeError
        return SinabsMapping(False, _first_line(e), populations=model.populations)
    memory = {i: {k: int(v) for k, v in layer.memory_summary().items()} for i, layer in layers.items()}
    core_map = {int(k): int(v) for k, v in core_map.items()}
    cores = ", ".join(f"{i}->{c}" for i, c in sorted(core_map.items()))
    return SinabsMapping(True, f"mapped {len(core_map)} layers on cores ({cores})", core_map, memory,
                         {int(k): [int(d) for d in v] for k, v in dest.items()}, model.populations)


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
