"""Exporter ``speck``: what sinabs loads and what it would hand to samna for Speck 2f.

``SpeckExporter().export(network, path, target)`` first checks the network against the target
(``speck2f`` unless another target with the ``speck`` rules is given) with :func:`spikefit.verify`, and
refuses, before sinabs is called, what the chip cannot run: ``ExportError`` naming the failing rule or
limit and the layer. It then writes the folder ``path``:

* ``snn.pt``: the torch module of sinabs layers (``torch.save``; an ``nn.Sequential`` of torch and
  sinabs layers for a chain), the network ``DynapcnnNetwork(snn, input_shape, discretize=True)`` takes;
* ``speck.json``: the input shape, the device, sinabs's layer-to-core map, each layer's destinations
  and population, and per core the configuration sinabs builds for samna
  (``get_dynapcnn_layer_config_dict``: dimensions, int8 weights and biases, thresholds, reset,
  destinations with their pooling);
* ``README.md``: how to load it (:func:`load_speck`, or torch + sinabs + samna to deploy).

A refusal by sinabs itself is reported in one line with sinabs's own words.
"""
from __future__ import annotations

import json
from pathlib import Path

from spikefit.errors import ExportError, SpikefitError
from spikefit.network import Network

FORMAT = "spikefit-speck/1"
README = """# Speck 2f export of spikefit ({populations})

Files: `snn.pt` (torch module of sinabs layers), `speck.json` (layer -> core map and per-core config).

    import json, torch
    from sinabs.backend.dynapcnn import DynapcnnNetwork        # needs samna (or spikefit_speck.shim)
    meta = json.load(open("speck.json"))
    snn = torch.load("snn.pt", weights_only=False)
    net = DynapcnnNetwork(snn, input_shape=tuple(meta["input_shape"]), discretize=True)
    net.to("speck2fmodule", layer2core_map={{int(k): v for k, v in meta["layer2core"].items()}})  # with samna and a board

or `spikefit_speck.load_speck(folder)` (returns the DynapcnnNetwork and the metadata, without samna).
Input: {input_shape} (channels, height, width). Layer -> core: {cores}.
"""


def _jsonable(value):
    """Config values as JSON: tensors, numpy scalars and nested containers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def refuse_unfit(network: Network, target) -> object:
    """The target spec; ExportError naming the first failing row when the network does not fit it."""
    import spikefit

    from spikefit.rules import rule_sets_for

    spec = target if target is not None else spikefit.get_target("speck2f")
    if isinstance(spec, str):
        spec = spikefit.get_target(spec)
    if "speck" not in {rs.name for rs in rule_sets_for(spec)}:
        raise ExportError(f"the speck format is for Speck chips (target speck2f, or a spec with a [rules.speck] "
                          f"table); target {spec.name!r} is not one; drop --target or pass --target speck2f")
    report = spikefit.verify(network, spec)
    if not report.ok:
        bad = report.failures[0]
        where = f" at {bad.worst}" if bad.worst else ""
        why = f": {bad.detail}" if bad.detail else ""
        raise ExportError(f"Speck cannot run this network: {bad.name} uses {bad.usage} of {bad.limit}{where}{why}")
    return spec


class SpeckExporter:
    """Exporter ``speck``: ``export(network, path, target)`` writes the folder ``path``."""

    name = "speck"
    neurons = ("speck-if",)
    suffix = ""  # a folder

    def export(self, network: Network, path, target=None) -> Path:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ExportError(f"'{path}' exists and is not a folder; a Speck export is a folder, pass a new path")
        spec = refuse_unfit(network, target)
        from .check import NoSinabsEquivalent, SinabsRefused, layer_populations, map_model, runnable

        try:
            model = runnable(network, reset=spec.neuron.reset)
        except NoSinabsEquivalent as e:
            raise ExportError(f"Speck cannot run this network: {e}") from None
        try:
            mapped = map_model(model)
        except SinabsRefused as e:
            raise ExportError(f"sinabs refused the network: {e}") from None
        import torch

        pops = layer_populations(mapped, model)
        dest = mapped.net.layer_destination_map
        meta = {
            "format": FORMAT, "sinabs": _version("sinabs"), "device": "speck2fmodule", "target": spec.name,
            "input_shape": list(model.input_shape), "dt": network.dt,
            "layer2core": {str(i): c for i, c in sorted(mapped.layer2core.items())},
            "layers": {str(i): {"population": pops.get(i, ""), "core": mapped.layer2core[i],
                                "destinations": [int(d) for d in dest[i]]} for i in sorted(mapped.layer2core)},
            "cores": {str(mapped.layer2core[i]): _jsonable(cfg) for i, cfg in sorted(mapped.configs.items())},
        }
        path.mkdir(parents=True, exist_ok=True)
        torch.save(model.module, path / "snn.pt")
        (path / "speck.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        cores = ", ".join(f"{pops.get(i, i)} -> {c}" for i, c in sorted(mapped.layer2core.items()))
        (path / "README.md").write_text(README.format(populations=", ".join(model.populations),
                                                      input_shape=tuple(model.input_shape), cores=cores),
                                        encoding="utf-8")
        return path


def load_speck(path):
    """``(DynapcnnNetwork, metadata)`` of an export folder, built by sinabs (through the samna placeholders)."""
    import torch

    from .check import dynapcnn

    path = Path(path)
    try:
        meta = json.loads((path / "speck.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"'{path}' is not a Speck export (speck.json: {e}); write one with "
                          f"spikefit export --format speck") from None
    if meta.get("format") != FORMAT:
        raise ExportError(f"'{path}' holds format {meta.get('format')!r}, not {FORMAT!r}; re-export it")
    dc = dynapcnn()
    snn = torch.load(path / "snn.pt", weights_only=False)
    try:
        net = dc.DynapcnnNetwork(snn, input_shape=tuple(meta["input_shape"]), discretize=True)
    except SpikefitError:
        raise
    except Exception as e:
        raise ExportError(f"sinabs could not load '{path}': {type(e).__name__}: {e}".splitlines()[0]) from None
    return net, meta


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
