"""Build the Lava processes of a spikefit Lava export, and run them on Lava's CPU simulator.

This module is both ``spikefit_lava.build`` and the ``build.py`` written into every export folder;
it needs numpy, scipy and lava-nc 0.10.0 only (not spikefit). An export folder holds::

    network.json    structure: populations, connections, depths, shapes, per mode
    network.npz     arrays: integer (fixed_pt) and float (floating_pt) weights, biases, permutations
    build.py        this file;  lava_shim.py: the import fix lava-nc 0.10.0 needs on Python >= 3.11

Use::

    import build                                        # or: from spikefit_lava import build
    net = build.load("DIR", select="fixed_pt", window=32)   # processes, not running yet
    net.connect_input(my_source.s_out)                  # e.g. lava.proc.io.source.RingBuffer
    net.populations["h1"].s_out.connect(my_sink.a_in)

    spikes = build.simulate(build.read("DIR", "fixed_pt"), x)  # x: (t, b, n) 0/1 -> {population: (t, b, n)}

Timing (lava-nc 0.10.0, measured): a source sends its frame ``j`` at Lava step ``j + 1`` (steps count
from 1), and every Dense/Sparse/Conv delivers one step late, so a population of depth ``d`` processes
input frame ``j`` at step ``j + 1 + d`` (a RingBuffer sink stores it at index ``j + d``). With samples of
``window`` steps run back to back, ``LIFReset(reset_interval=window, reset_offset=(1 + d) % window)``
zeroes u and v exactly where each sample starts for that population. A recurrent connection between
populations of equal depth (e.g. a population onto itself) carries the previous step, as spikefit's
recurrence does, but also carries the last step of a sample into the first step of the next one;
:func:`simulate` zeroes its buffer there.
"""
from __future__ import annotations

import importlib
import json
import multiprocessing
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

FORMAT = "spikefit-lava/1"
GRADED_MESSAGE_BITS = 24  # num_message_bits of connections that read graded inputs (floating_pt)
LAVA_HINT = ("Lava is not installed; install it with `make install` (lava-nc 0.10.0 with the spikefit-lava "
             "plugin: see plugins/spikefit-lava/README.md)")


# -- Lava --------------------------------------------------------------------------------------------
def _install_shim() -> None:
    try:
        from spikefit_lava.shim import install
    except ImportError:  # an export folder used without spikefit: its own copy
        here = str(Path(__file__).resolve().parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        from lava_shim import install
    install()


def _import_lava_runtime() -> None:
    """Import Lava's message infrastructure, which calls ``multiprocessing.set_start_method('fork')``
    on import and so raises "context has already been set" in any process whose start method is set
    (a multiprocessing child, a program that chose one). The method in force is kept."""
    name = "lava.magma.runtime.message_infrastructure.multiprocessing"
    if name in sys.modules:
        return
    before = multiprocessing.get_start_method(allow_none=True)
    if before is not None:
        multiprocessing.set_start_method(None, force=True)
    try:
        importlib.import_module(name)
    finally:
        if before is not None:
            multiprocessing.set_start_method(before, force=True)


def lava() -> SimpleNamespace:
    """The Lava classes used here (imported on first use; raises ImportError when Lava is missing)."""
    _install_shim()
    try:
        import lava  # noqa: F401  (first, so that a missing Lava is reported even when submodules are cached)

        _import_lava_runtime()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import Dense
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF, LIFReset
        from lava.proc.sparse.process import Sparse
        from lava.utils.weightutils import SignMode
    except ImportError as e:
        raise ImportError(LAVA_HINT) from e
    return SimpleNamespace(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Conv=Conv, Dense=Dense, Extractor=Extractor,
                           PyLoihiExtractorModel=PyLoihiExtractorModel, Source=Source, LIF=LIF, LIFReset=LIFReset,
                           Sparse=Sparse, SignMode=SignMode)


# -- reading an export -------------------------------------------------------------------------------
@dataclass
class Spec:
    """One mode of an export: ``meta`` (the JSON structure) and the ``arrays`` it names."""

    meta: dict
    arrays: dict[str, np.ndarray]

    @property
    def select(self) -> str:
        return self.meta["mode"]

    def array(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def weight(self, conn: dict):
        w = conn["weight"]
        if isinstance(w, dict):
            return sp.csr_matrix((self.arrays[w["data"]], self.arrays[w["indices"]], self.arrays[w["indptr"]]),
                                 shape=tuple(w["shape"]))
        return self.arrays[w]


def read(path, select: str = "fixed_pt") -> Spec:
    """The ``select`` mode ("fixed_pt" or "floating_pt") of the export folder ``path``."""
    path = Path(path)
    if not (path / "network.json").is_file() or not (path / "network.npz").is_file():
        raise FileNotFoundError(f"'{path}' is not a spikefit Lava export (network.json and network.npz are missing); "
                                "write one with `spikefit export MODEL --format lava --out DIR`")
    doc = json.loads((path / "network.json").read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise ValueError(f"'{path}' has format {doc.get('format')!r}; this build.py reads {FORMAT!r}")
    if select not in doc["modes"]:
        raise ValueError(f"unknown select {select!r}; this export holds {', '.join(doc['modes'])}")
    with np.load(path / "network.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k.startswith(select + ".")}
    return Spec(doc["modes"][select], arrays)


# -- building processes ------------------------------------------------------------------------------
@dataclass
class LavaNetwork:
    """The processes of one export, connected to each other but not to any source or sink."""

    select: str                          # the mode the parameters are in: "fixed_pt" | "floating_pt"
    window: int | None                   # steps per sample (LIFReset interval); None: plain LIF, no resets
    input_name: str
    input_shape: tuple[int, ...]         # Lava layout of the input: (n,) or (x, y, c) = (w, h, c)
    populations: dict                    # name -> LIF / LIFReset
    connections: dict                    # name -> Dense / Sparse / Conv
    depth: dict[str, int]                # name -> connections from the input (steps of Lava delay)
    spec: Spec
    _input_ports: list = field(default_factory=list)  # (InPort, flatten) fed by the input

    @property
    def max_depth(self) -> int:
        return max(self.depth.values(), default=0)

    def connect_input(self, out_port) -> None:
        """Connect a source's OutPort (shape ``input_shape``) to every connection the input feeds."""
        for in_port, flatten in self._input_ports:
            (out_port.flatten() if flatten else out_port).connect(in_port)

    def recurrent(self) -> list[tuple[object, int]]:
        """(process, depth of its target) of every recurrent connection."""
        return [(self.connections[c["name"]], self.depth[c["target"]]) for c in self.spec.meta["connections"]
                if c["recurrent"]]


def reset_offset(depth: int, window: int) -> int:
    """``LIFReset``'s offset for a population of ``depth``: it zeroes u and v at the steps ``s`` with
    ``s % window == offset``, before integrating that step's input, and frame 0 of every sample
    reaches it at step ``k * window + 1 + depth`` (Lava counts steps from 1)."""
    return (1 + int(depth)) % int(window)


def build(spec: Spec, window: int | None = None, graded: bool = False) -> LavaNetwork:
    """Lava processes for ``spec``; with ``window``, ``LIFReset`` populations whose state is zeroed
    at the first step of every sample of ``window`` steps (see the module docstring)."""
    L = lava()
    meta, select = spec.meta, spec.select
    if graded and select == "fixed_pt":
        raise ValueError("Lava's fixed-point connections read binary spikes; graded inputs need select='floating_pt'")
    if window is not None and int(window) < 1:
        raise ValueError(f"window {window} must be a positive number of steps")
    shapes = {meta["input"]["name"]: tuple(meta["input"]["lava_shape"])}
    pops, depth = {}, {}
    for p in meta["populations"]:
        kw = dict(shape=tuple(p["lava_shape"]), du=p["du"], dv=p["dv"], vth=p["vth"],
                  bias_mant=spec.array(p["bias_mant"]), bias_exp=p["bias_exp"], name=p["name"])
        if window is None:
            pops[p["name"]] = L.LIF(**kw)
        else:
            pops[p["name"]] = L.LIFReset(**kw, reset_interval=int(window), reset_offset=reset_offset(p["depth"], window))
        shapes[p["name"]] = tuple(p["lava_shape"])
        depth[p["name"]] = int(p["depth"])
    conns, input_ports = {}, []
    for c in meta["connections"]:
        from_input = c["source"] == meta["input"]["name"]
        bits = GRADED_MESSAGE_BITS if graded and from_input else 0
        w = spec.weight(c)
        if c["kind"] == "conv2d":
            g = c["conv"]
            proc = L.Conv(weight=w, input_shape=tuple(g["lava_input_shape"]), stride=tuple(g["lava_stride"]),
                          padding=tuple(g["lava_padding"]), num_message_bits=bits, name=c["name"])
        else:
            cls = L.Dense if c["kind"] == "dense" else L.Sparse
            proc = cls(weights=w, weight_exp=c["weight_exp"], num_weight_bits=c["num_weight_bits"],
                       sign_mode=L.SignMode[c["sign_mode"].upper()], num_message_bits=bits, name=c["name"])
        conns[c["name"]] = proc
        flatten = c["kind"] != "conv2d" and len(shapes[c["source"]]) > 1
        if from_input:
            input_ports.append((proc.s_in, flatten))
        else:
            out = pops[c["source"]].s_out
            (out.flatten() if flatten else out).connect(proc.s_in)
        target = shapes[c["target"]]
        (proc.a_out.reshape(target) if c["kind"] != "conv2d" and len(target) > 1 else proc.a_out).connect(
            pops[c["target"]].a_in)
    return LavaNetwork(select, None if window is None else int(window), meta["input"]["name"],
                       shapes[meta["input"]["name"]], pops, conns, depth, spec, input_ports)


def load(path, select: str = "fixed_pt", window: int | None = None, graded: bool = False) -> LavaNetwork:
    """The processes of the export folder ``path`` (see :func:`build`)."""
    return build(read(path, select), window, graded)


# -- running samples ---------------------------------------------------------------------------------
def _source_data(spec: Spec, x: np.ndarray, steps: int) -> np.ndarray:
    """Input (t, b, n) in spikefit order -> RingBuffer data (lava_shape..., steps): the samples back
    to back, then zeros."""
    T, B, n = x.shape
    inp = spec.meta["input"]
    frames = np.zeros((steps, n), dtype=x.dtype)
    frames[:B * T] = x.transpose(1, 0, 2).reshape(B * T, n)[:, spec.array(inp["perm"])]
    return np.moveaxis(frames.reshape(steps, *inp["lava_shape"]), 0, -1)


def _pause_points(net: LavaNetwork, samples: int, steps: int) -> dict[int, list]:
    """Step after which each recurrent connection's buffer must be zeroed: ``k * window + d`` (the step
    before sample k reaches a population of depth d), so no spike crosses from one sample to the next."""
    points: dict[int, list] = {}
    for proc, d in net.recurrent():
        for k in range(samples):
            points.setdefault(k * net.window + d, []).append(proc)
    return {p: procs for p, procs in sorted(points.items()) if 0 < p < steps}


def _zero_buffer(proc) -> None:
    var = proc.a_buff if hasattr(proc, "a_buff") else proc.a_buf
    var.set(np.zeros(var.shape))


def chunk_steps(sizes) -> int:
    """Steps per run segment: each population's Extractor buffers that many steps (at most 16 MB of
    float64 each) until the host drains it after the segment."""
    return int(np.clip(2 ** 21 // max(max(sizes, default=1), 1), 16, 1024))


def simulate(spec: Spec, inputs, populations=None, progress=None) -> dict[str, np.ndarray]:
    """Run ``inputs`` (t, b, n) (spikefit order; 0/1 spikes, or graded values in floating_pt) on
    Lava's CPU simulator, all samples in one run; returns the spikes (t, b, n) (bool, spikefit order)
    of ``populations`` (default: all). Each sample starts from zero state, as in spikefit. The
    runtime is always stopped.

    Spikes leave Lava through ``Extractor`` processes drained after every segment of
    :func:`chunk_steps` steps: reading a sink's ``RingBuffer`` Var instead costs one channel message
    per element (``Runtime.get_var``), which took longer than the simulation itself. ``progress(done,
    total)``, when given, is called with the steps run after every segment."""
    L = lava()
    x = np.asarray(inputs)
    if x.ndim != 3:
        raise ValueError(f"inputs must have shape (t, b, n), got {x.shape}")
    T, B, _ = x.shape
    graded = bool(x.size) and not np.isin(x, (0, 1)).all()
    net = build(spec, window=T, graded=graded)
    steps = B * T + net.max_depth
    dtype = np.int32 if spec.select == "fixed_pt" else np.float64
    source = L.Source(data=_source_data(spec, x.astype(dtype), steps))
    net.connect_input(source.s_out)
    names = list(net.populations) if populations is None else list(populations)
    sizes = {name: int(np.prod(net.populations[name].s_out.shape)) for name in names}
    chunk = chunk_steps(sizes.values())
    taps = {}
    for name in names:
        out = net.populations[name].s_out
        taps[name] = L.Extractor(shape=(sizes[name],), buffer_size=chunk)
        (out.flatten() if len(out.shape) > 1 else out).connect(taps[name].in_port)
    pauses = _pause_points(net, B, steps)
    stops = sorted(set(pauses) | set(range(chunk, steps, chunk)) | {steps})
    cfg = L.Loihi2SimCfg(select_tag=spec.select, exception_proc_model_map={L.Extractor: L.PyLoihiExtractorModel})
    frames = {name: np.zeros((steps, sizes[name]), dtype=bool) for name in names}  # (step, n) Lava order
    try:
        done = 0
        for stop in stops:
            source.run(condition=L.RunSteps(num_steps=stop - done), run_cfg=cfg)
            for name, tap in taps.items():
                for i in range(done, stop):
                    frames[name][i] = tap.receive() != 0
            done = stop
            for proc in pauses.get(stop, ()):
                _zero_buffer(proc)
            if progress is not None:
                progress(done, steps)
    finally:
        source.stop()
    return {name: decode(spec, name, frames[name], T, B) for name in names}


def decode(spec: Spec, population: str, frames: np.ndarray, window: int, samples: int) -> np.ndarray:
    """Spikes (steps, n) of ``population`` as Lava emitted them (row s: Lava step s + 1, neurons in
    Lava order) -> (t, b, n) in spikefit order: each sample's window starts at the population's depth."""
    p = next(q for q in spec.meta["populations"] if q["name"] == population)
    d = int(p["depth"])
    lava_frames = np.asarray(frames)[d:d + samples * window]  # (b*t, n) Lava order
    out = np.empty_like(lava_frames)
    out[:, spec.array(p["perm"])] = lava_frames
    return out.reshape(samples, window, -1).transpose(1, 0, 2) != 0


if __name__ == "__main__":  # python build.py DIR INPUTS.npy [fixed_pt|floating_pt] -> DIR/spikes.npz
    if len(sys.argv) < 3:
        sys.exit("usage: python build.py EXPORT_DIR INPUTS.npy [fixed_pt|floating_pt]  (inputs: (t, b, n) spikes)")
    folder, mode = Path(sys.argv[1]), sys.argv[3] if len(sys.argv) > 3 else "fixed_pt"
    result = simulate(read(folder, mode), np.load(sys.argv[2]))
    np.savez_compressed(folder / "spikes.npz", **result)
    print(", ".join(f"{k}: {int(v.sum())} spikes" for k, v in result.items()), f"-> {folder / 'spikes.npz'}")
