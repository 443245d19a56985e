"""Run a network on a backend: accuracy, spikes per layer, synaptic operations, throughput.

``run(network, dataset="digits")`` turns the dataset's test split into time-major inputs
(:func:`spikefit.datasets.time_major`: static values encoded, sequences as given), runs the backend (``spikefit.get_backend``) and reads out the output population with the
rule every backend shares (:func:`spikefit.datasets.predict`). ``compare`` runs the same samples on
several backends and reports how often their output spikes are identical.

Defaults come from the network's metadata when a trainer stored them (``metadata["steps"]``,
``metadata["encoding"]``, ``metadata["seed"]``), else 32 steps of rate-coded spikes with seed 0.

Every backend declares the inputs it takes and the neuron models it runs (:mod:`spikefit.capabilities`):
0/1 spikes, input event counts up to a maximum (Xylo: 15 per channel and step) or currents. The runner
checks the inputs and the network against that declaration before a backend runs, and names the value,
the limit and the fix. ``emulator`` runs the chip neuron of the target given, else of the target the
network's metadata names (``[neuron] models``), else spikefit's LIF. Without a backend named, :func:`run`
runs currents on ``emulator-float`` (float64, the reference semantics) and spikes or counts on
``emulator``; :func:`compare` without backends compares the emulator with the first registered backend
that runs the network's neuron.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .bounds import SEED_MAX, STEPS_MAX, check_memory
from .capabilities import REFERENCE, check_inputs, check_neuron, input_kind, network_neuron, pair
from .datasets import predict, time_major
from .errors import BackendError, DatasetError, SpikefitError
from .fixedpoint import connection_matrix, output_population
from .network import Network

DEFAULT_STEPS = 32
CURRENT_BACKEND = "emulator-float"      # the core's backend that takes currents


@dataclass
class RunResult:
    """What one backend did with one set of samples."""

    backend: str
    samples: int
    steps: int
    output: str                             # population read out
    accuracy: float | None                  # fraction of correct predictions; None without labels
    predictions: np.ndarray                 # (b,) predicted class of every sample
    labels: np.ndarray | None               # (b,)
    input_spikes: int                       # spikes (non-zero input values) fed in
    spikes: dict[str, int]                  # population -> spikes over all samples and steps
    synops: dict[str, int]                  # connection -> synaptic operations (spike x fan-out)
    seconds: float                          # wall time of the backend's run
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # population -> (t, b, n)
    input_counts: np.ndarray | None = field(default=None, repr=False)  # (n_in,) input spikes per channel

    @property
    def spikes_per_sample(self) -> dict[str, float]:
        return {k: v / self.samples for k, v in self.spikes.items()}

    @property
    def synops_total(self) -> int:
        return int(sum(self.synops.values()))

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return {
            "backend": self.backend, "samples": self.samples, "steps": self.steps, "output": self.output,
            "accuracy": self.accuracy,
            "correct": None if self.labels is None else int((self.predictions == self.labels).sum()),
            "input_spikes": self.input_spikes,
            "spikes": dict(self.spikes), "spikes_per_sample": self.spikes_per_sample,
            "synops": dict(self.synops), "synops_total": self.synops_total,
            "synops_per_sample": self.synops_total / self.samples,
            "seconds": self.seconds, "samples_per_s": self.samples_per_s,
        }


@dataclass
class CompareResult:
    """The same samples on several backends; ``agreement[b]``: fraction of samples whose output
    spikes on backend ``b`` equal the first backend's at every step."""

    results: dict[str, RunResult]
    agreement: dict[str, float]

    def to_dict(self) -> dict:
        return {"reference": next(iter(self.results)), "agreement": dict(self.agreement),
                "results": {k: r.to_dict() for k, r in self.results.items()}}


def load_network(model) -> Network:
    """A Network, a NIR file (read with its own step size) or a checkpoint of ``spikefit fit``."""
    from .model_io import load_model

    return load_model(model)


def prepare_inputs(network: Network, inputs=None, labels=None, dataset=None,
                   samples: int | None = None, steps: int | None = None, seed: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Input spikes (t, b, n) and labels (b,) or None, from ``inputs`` or a dataset's test split.

    ``inputs`` is (t, b, n) or (t, b, *input shape), or (b, n) or (b, *input shape) (e.g. (b, C, H, W)
    for a conv model) held for ``steps`` steps; ``samples`` keeps the first ones. Labels are integers
    in 0..classes-1. Sizes are checked against the memory available before anything is allocated.
    ``dataset`` is a registered name, an .npz / HDF5 path or a :class:`~spikefit.datasets.Dataset`.
    """
    n_in = network.inputs[0].size if len(network.inputs) == 1 else None
    in_shape = network.inputs[0].shape if len(network.inputs) == 1 else None
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1):
        raise DatasetError(f"samples {samples!r} must be an integer of at least 1")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise DatasetError(f"steps {steps!r} must be an integer of at least 1")
    meta_steps = network.metadata.get("steps")
    if steps is None and meta_steps is not None:
        if isinstance(meta_steps, bool) or not isinstance(meta_steps, int) or not 1 <= meta_steps <= STEPS_MAX:
            raise DatasetError(f"the model's metadata gives steps {meta_steps!r}, not an integer in 1..{STEPS_MAX}; "
                               "pass --steps")
        steps = meta_steps
    if inputs is not None:
        x = _input_array(inputs, in_shape, steps)
        if n_in is not None and x.shape[2] != n_in:
            raise DatasetError(f"model input size {n_in} does not match the inputs ({x.shape[2]} channels); "
                               f"pass inputs with {n_in} channels per step")
        y = None if labels is None else _labels(labels, network)
        if y is not None and y.size != x.shape[1]:
            raise DatasetError(f"{y.size} labels for {x.shape[1]} input samples; pass one label per sample")
        if samples is not None:
            x, y = x[:, :samples], None if y is None else y[:samples]
        _check_run_memory(network, x.shape[0], x.shape[1])
        return np.ascontiguousarray(x, dtype=np.float32), y
    if dataset is None:
        raise DatasetError("no inputs: pass a dataset name (e.g. 'digits') or input spikes")
    from .datafiles import resolve

    ds = resolve(dataset)
    if n_in is not None:
        if ds.n_inputs != n_in and ds.layout == "static" and ds.x_train.ndim > 2:
            ds = ds.conform(network.inputs[0].shape, network.inputs[0].name)  # may be a sequence instead
        if ds.n_inputs != n_in:
            raise DatasetError(f"model input size {n_in} does not match dataset {ds.name!r} ({ds.n_inputs} features); use a model trained on {ds.name!r} or pass inputs with "
                               f"{n_in} channels")
    encoding = network.metadata.get("encoding", "rate")
    seed = seed if seed is not None else network.metadata.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise DatasetError(f"seed {seed!r} must be an integer in 0..{SEED_MAX}")
    steps = steps or (ds.steps if ds.layout == "sequence" else DEFAULT_STEPS)
    _check_run_memory(network, steps, min(samples or len(ds.x_test), len(ds.x_test)))
    x, y = time_major(ds, "test", steps, encoding, int(seed) * 2 + 1, limit=samples)
    return np.ascontiguousarray(x.reshape(x.shape[0], x.shape[1], -1)), y


def check_backends(backends, network: Network, x: np.ndarray | None, spec=None) -> None:
    """Each backend's declaration against the network's neuron and the inputs (``x``; None: the neurons
    only): one line on the first mismatch (:mod:`spikefit.capabilities`)."""
    for be in backends:
        check_neuron(be, network, spec)
    for be in backends if x is not None else ():
        check_inputs(be, x)


def _input_array(inputs, in_shape, steps: int | None) -> np.ndarray:
    """``inputs`` as (t, b, n): numeric, real, finite, at least one sample and one step."""
    x = np.asarray(inputs)
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"inputs hold {x.dtype} values; pass a numeric (0/1 or real) array")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DatasetError("inputs hold NaN or infinite values; pass finite numbers")
    extra = len(in_shape) if in_shape is not None and len(in_shape) > 1 else 1
    if x.ndim == 1 + extra:      # (b, n) or (b, *shape): held for `steps` steps
        if x.shape[0] == 0:
            raise DatasetError("inputs hold no samples (batch of 0); pass at least one sample")
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
        x = np.broadcast_to(x, (steps or DEFAULT_STEPS, *x.shape))
    elif x.ndim == 2 + extra:    # (t, b, n) or (t, b, *shape)
        x = x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise DatasetError(f"inputs of shape {x.shape} hold no samples or no steps; pass at least one of each")
        if steps is not None and steps > x.shape[0]:
            raise DatasetError(f"steps {steps} exceed the {x.shape[0]} steps of the inputs; pass fewer steps")
        x = x[:steps] if steps is not None else x
    else:
        shape = "n" if extra == 1 else ", ".join(map(str, in_shape))
        raise DatasetError(f"inputs must be (t, b, {shape}) spikes or (b, {shape}) values, got shape {x.shape}")
    return x


def _labels(labels, network: Network) -> np.ndarray:
    """Integer class labels in 0..classes-1 (classes: the output population's size)."""
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise DatasetError(f"labels hold {y.dtype} values; pass integer class labels (numpy int array)")
    y = y.reshape(-1).astype(np.int64)
    try:
        classes = network.nodes[output_population(network)].size
    except SpikefitError:
        classes = None
    if y.size and (y.min() < 0 or (classes is not None and y.max() >= classes)):
        top = "" if classes is None else f"..{classes - 1}"
        raise DatasetError(f"labels range over {int(y.min())}..{int(y.max())}, outside the model's classes 0{top}; "
                           "pass one class index per sample")
    return y


def _check_run_memory(network: Network, steps: int, samples: int) -> None:
    """Inputs and every population's spikes, (t, b, n) each, in a few copies, must fit in memory."""
    neurons = sum(p.size for p in network.populations()) + sum(i.size for i in network.inputs)
    check_memory(4 * 3 * float(steps) * samples * neurons, f"a run of {samples} samples x {steps} steps",
                 "pass fewer --samples or --steps")


def synaptic_operations(network: Network, x: np.ndarray, outputs: dict[str, np.ndarray]) -> dict[str, int]:
    """Per connection: sum over source spikes of the spiking neuron's non-zero synapses (fan-out).
    A recurrent connection delivers a step later, so its last step's spikes are not counted."""
    ops = {}
    for sl in network.synapse_layers():
        mat = connection_matrix(network, sl.conn)
        mat.eliminate_zeros()
        fanout = np.bincount(mat.indices, minlength=mat.shape[1])  # (n_src,) synapses per source neuron
        src = x if sl.pre.name == network.inputs[0].name else outputs[sl.pre.name]
        src = src[:-1] if sl.recurrent else src
        counts = (np.asarray(src) != 0).reshape(-1, fanout.size).sum(axis=0)
        ops[sl.conn.name] = int(counts @ fanout)
    return ops


def resolve_backend(backend, network: Network, spec=None):
    """A backend object: a registered name, or ``emulator`` running the network's chip neuron (the
    target ``spec``'s, else the one its metadata names; spikefit's LIF without one)."""
    if not isinstance(backend, str):
        return backend
    if backend == REFERENCE:
        model, target, _ = network_neuron(network, spec)
        if model is not None:
            from .emulator import EmulatorBackend

            return EmulatorBackend.for_target(target)
    from .plugins import get_backend

    return get_backend(backend)


def _backend(backend):
    if isinstance(backend, str):
        from .plugins import get_backend

        return get_backend(backend)
    return backend


def execute(network: Network, backend, x: np.ndarray, y: np.ndarray | None = None) -> RunResult:
    """Run prepared inputs x (t, b, n) on a backend (name or object) and measure the result."""
    be = _backend(backend)
    t0 = time.perf_counter()
    outputs = be.run(network, x)
    seconds = time.perf_counter() - t0
    out = output_population(network)
    T, B = x.shape[:2]
    outputs = {k: np.asarray(v).reshape(T, B, -1) for k, v in outputs.items()}
    missing = [p.name for p in network.populations() if p.name not in outputs]
    if missing:
        raise BackendError(f"backend {be.name!r} returned no spikes for population {missing[0]!r}; a backend "
                           "returns the spikes (t, b, n) of every population")
    counts = outputs[out].sum(axis=0)  # (b, classes)
    pred = predict(counts)
    return RunResult(
        backend=be.name, samples=int(x.shape[1]), steps=int(x.shape[0]), output=out,
        accuracy=None if y is None else float((pred == y).mean()), predictions=pred, labels=y,
        input_spikes=int(np.count_nonzero(x)),
        spikes={p.name: int(np.count_nonzero(outputs[p.name])) for p in network.populations()},
        synops=synaptic_operations(network, x, outputs), seconds=seconds, outputs=outputs,
        input_counts=(np.asarray(x) != 0).reshape(T * B, -1).sum(axis=0))


def run(network, backend=None, inputs=None, labels=None, dataset=None,
        samples: int | None = None, steps: int | None = None, seed: int | None = None, target=None) -> RunResult:
    """Run ``network`` (a Network or a NIR path) on ``backend`` (a name or a backend object; None:
    ``emulator`` for spikes and counts, ``emulator-float`` for currents). ``target`` (a TargetSpec or a
    name) picks the chip neuron the emulator runs; without it, the one the network's metadata names."""
    network = load_network(network)
    spec = _spec(target)
    x, y = prepare_inputs(network, inputs, labels, dataset, samples, steps, seed)
    be = resolve_backend(REFERENCE if backend is None else backend, network, spec)
    check_backends([be], network, None, spec)
    if backend is None and getattr(be, "neuron", None) is None:  # the fixed point takes spikes only
        be = be if input_kind(x) == "spikes" else resolve_backend(CURRENT_BACKEND, network, spec)
    check_backends([be], network, x, spec)
    return execute(network, be, x, y)


def compare(network, backends=None, inputs=None, labels=None, dataset=None,
            samples: int | None = None, steps: int | None = None, seed: int | None = None,
            target=None) -> CompareResult:
    """Run the same samples on every backend; agreement is measured against the first one. Without
    ``backends``: the emulator and the first registered backend that runs the network's neuron."""
    network = load_network(network)
    spec = _spec(target)
    if backends is None:
        backends = pair(network, spec)
    if len(backends) < 2:
        raise BackendError(f"compare needs at least two backends, got {list(backends)}; e.g. "
                           f"{','.join(_example(network, spec))}")
    bes = [resolve_backend(b, network, spec) for b in backends]  # fail on an unknown name before running anything
    names = [be.name for be in bes]
    if len(set(names)) != len(names):
        raise BackendError(f"backends {names} name one backend twice; list each once")
    check_backends(bes, network, None, spec)
    x, y = prepare_inputs(network, inputs, labels, dataset, samples, steps, seed)
    check_backends(bes, network, x, spec)
    results = {}
    for be in bes:
        results[be.name] = execute(network, be, x, y)
    ref = next(iter(results.values()))
    agreement = {}
    for name, res in list(results.items())[1:]:
        same = (ref.outputs[ref.output] == res.outputs[res.output]).all(axis=(0, 2))
        agreement[name] = float(same.mean())
    return CompareResult(results, agreement)


def _spec(target):
    if target is None or not isinstance(target, str):
        return target
    from .plugins import get_target

    return get_target(target)


def _example(network: Network, spec) -> list[str]:
    try:
        return pair(network, spec)
    except SpikefitError:
        return [REFERENCE, CURRENT_BACKEND]


__all__ = ["RunResult", "CompareResult", "run", "compare", "prepare_inputs", "synaptic_operations", "load_network",
           "execute", "resolve_backend", "check_backends"]
