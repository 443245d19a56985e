"""Datasets: the embedded ones, registered ones, and the user's own, in one validated form.

A :class:`Dataset` holds train and test splits (and optionally a validation split) in one of two
layouts:

* ``static``: ``x`` is ``(n, *input_shape)``, one value per input channel, entered over ``steps``
  time steps by an encoding;
* ``sequence``: ``x`` is ``(n, t, *input_shape)``, spikes or event frames given per step.

:func:`time_major` turns a split into the ``(t, b, *input_shape)`` float32 array every model and
backend takes, for both layouts. Encodings of static inputs:

* ``rate``: Bernoulli spikes with probability = intensity (values in [0, 1]), drawn from a generator
  seeded with ``seed`` (the same seed gives the same spikes on every backend);
* ``current``: the value itself at every step (a constant input current, as snnTorch and Norse
  models take static inputs; chips that take only spikes need ``rate``).

Embedded datasets (offline): ``digits`` (scikit-learn's 8x8 digits, 1,797 samples, a stratified
split with 360 test samples, ``random_state=0``, pixels scaled to [0, 1]) and ``mnist1d``
(``mnist1d.data.make_dataset()``; each of the 40 features split into an ON and an OFF channel, 80
inputs, scaled by the 99th percentile of |x| on the training set and clipped to [0, 1]). Plugins add
named datasets through the ``register_datasets`` hook; :mod:`spikefit.datafiles` reads the user's
``.npz`` / HDF5 files and torch datasets, :mod:`spikefit.events` the published neuromorphic formats.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from .errors import DatasetError

DATASETS = ("digits", "mnist1d", "digits16", "digits-image")   # embedded (registered by the built-in plugin)
ENCODINGS = ("rate", "current")
LAYOUTS = ("static", "sequence")
SPLITS = ("train", "test", "val")
SPLIT_STREAM = {"train": 0, "test": 1, "val": 1_000_003}  # seed offsets: splits never share random numbers


def _shape(shape) -> str:
    return str(tuple(int(s) for s in shape))


@dataclass
class Dataset:
    """Train/test (and optional validation) splits with integer labels, validated on construction."""

    name: str
    x_train: np.ndarray           # (n, *input_shape) static values, or (n, t, *input_shape) per-step frames
    y_train: np.ndarray           # (n,) int64 labels in [0, n_classes)
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None = None  # None: the largest label + 1
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    layout: str = "static"        # "static" or "sequence" (see the module docstring)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise DatasetError(f"unknown layout {self.layout!r}; use one of {', '.join(LAYOUTS)}")
        if (self.x_val is None) != (self.y_val is None):
            have, miss = ("x_val", "y_val") if self.y_val is None else ("y_val", "x_val")
            raise DatasetError(f"dataset {self.name!r} has {have} but no {miss}; give both or neither")
        lead = 2 if self.layout == "sequence" else 1
        ref = None
        for split in self.splits():
            x, y = self._checked(split, lead)
            shape = x.shape[1:]
            if ref is None:
                ref = (split, shape)
            elif shape != ref[1]:
                raise DatasetError(f"x_{split} has samples of shape {_shape(shape)} but x_{ref[0]} has "
                                   f"{_shape(ref[1])}; every split needs the same per-sample shape")
        labels = np.concatenate([getattr(self, f"y_{s}") for s in self.splits()])
        top = int(labels.max()) + 1 if labels.size else 1
        if self.n_classes is None:
            self.n_classes = max(top, 2)
        self.n_classes = int(self.n_classes)
        for split in self.splits():
            self.check_labels(self.n_classes, split)

    def _checked(self, split: str, lead: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        x = np.asarray(x)
        if x.dtype == bool:
            x = x.astype(np.float32)
        if not np.issubdtype(x.dtype, np.number):
            raise DatasetError(f"x_{split} has dtype {x.dtype}; inputs must be numbers")
        if x.ndim < lead + 1:
            want = "(n, t, *input_shape)" if lead == 2 else "(n, *input_shape)"
            raise DatasetError(f"x_{split} has shape {_shape(x.shape)}; a {self.layout} dataset needs {want}")
        if np.issubdtype(x.dtype, np.floating):
            bad = ~np.isfinite(x)
            if bad.any():
                i = int(np.argwhere(bad)[0][0])
                kind = "NaN" if np.isnan(x[i]).any() else "inf"
                raise DatasetError(f"x_{split} holds {kind} (first at sample {i}); inputs must be finite numbers: "
                                   "clean or drop those samples")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"y_{split} has shape {_shape(y.shape)}; expected ({len(x)},), one label per sample "
                               f"of x_{split}")
        if y.dtype == bool or not np.issubdtype(y.dtype, np.number):
            raise DatasetError(f"y_{split} has dtype {y.dtype}; labels must be integers 0..classes-1")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                i = int(np.argwhere(~np.isfinite(y) | (y != np.round(y)))[0][0])
                raise DatasetError(f"y_{split} holds {y[i]!r} at sample {i}; labels must be integers 0..classes-1")
        y = y.astype(np.int64)
        if y.size and y.min() < 0:
            raise DatasetError(f"y_{split} holds label {int(y.min())}; labels must be integers 0..classes-1")
        setattr(self, f"x_{split}", x)
        setattr(self, f"y_{split}", y)
        return x, y

    def check_labels(self, classes: int, split: str | None = None, what: str | None = None) -> None:
        """Every label of ``split`` (all splits when None) lies in [0, classes)."""
        for s in [split] if split else self.splits():
            y = getattr(self, f"y_{s}")
            if y.size and int(y.max()) >= classes:
                i = int(np.argmax(y))
                owner = what or f"dataset {self.name!r} has {classes} classes"
                raise DatasetError(f"y_{s} holds label {int(y[i])} (sample {i}) but {owner} (labels 0..{classes - 1}); "
                                   "relabel the data or use a model with more outputs")

    # -- queries -------------------------------------------------------------------------------
    def splits(self) -> list[str]:
        return ["train", "test"] + (["val"] if self.x_val is not None else [])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        if name not in self.splits():
            raise DatasetError(f"dataset {self.name!r} has no {name} split; add x_{name} and y_{name}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[2 if self.layout == "sequence" else 1:])

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def steps(self) -> int | None:
        """Time steps of a sequence dataset (None: static, the encoding decides)."""
        return int(self.x_train.shape[1]) if self.layout == "sequence" else None

    def conform(self, input_shape, input_name: str = "input") -> "Dataset":
        """This dataset in the layout whose per-sample shape matches a model input ``input_shape``.

        A static ``(n, *shape)`` or sequence ``(n, t, *shape)`` array matches when ``shape`` equals
        the model's input shape or both flatten to the same size with one of them flat.

        :raises DatasetError: no layout matches; the array and the expected shapes are named.
        """
        want = tuple(int(s) for s in input_shape)
        order = [self.layout] + [lay for lay in LAYOUTS if lay != self.layout]
        for layout in order:
            lead = 2 if layout == "sequence" else 1
            got = self.x_train.shape[lead:]
            if self.x_train.ndim > lead and _matches(got, want):
                return self if layout == self.layout else replace(self, layout=layout, n_classes=self.n_classes)
        raise DatasetError(f"x_train has shape {_shape(self.x_train.shape)} but the model input {input_name!r} "
                           f"expects {_shape(want)} per step: give x as (n, {', '.join(map(str, want))}) static "
                           f"values or (n, t, {', '.join(map(str, want))}) frames")


def _matches(got, want) -> bool:
    if tuple(got) == tuple(want):
        return True
    return int(np.prod(got)) == int(np.prod(want)) and (len(got) == 1 or len(want) == 1)


# -- the embedded datasets -------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=360, random_state=0, stratify=d.target)
    return Dataset("digits", xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), 10)


@lru_cache(maxsize=None)
def _digits16() -> Dataset:
    """digits for Xylo Audio 2 (16 inputs, 8 outputs): each 8x8 image averaged over 2x2 blocks to 4x4,
    the digits 0-7 only."""
    d = _digits()

    def pool(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = y < 8
        return x[keep].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16).astype(np.float32), y[keep]

    return Dataset("digits16", *pool(d.x_train, d.y_train), *pool(d.x_test, d.y_test), 8)


@lru_cache(maxsize=None)
def _digits_image() -> Dataset:
    """digits as (1, 8, 8) images, the input of a convolution (Speck 2f, Akida's InputConvolutional)."""
    d = _digits()
    return Dataset("digits-image", d.x_train.reshape(-1, 1, 8, 8), d.y_train, d.x_test.reshape(-1, 1, 8, 8),
                   d.y_test, 10)


@lru_cache(maxsize=None)
def _mnist1d() -> Dataset:
    from mnist1d.data import make_dataset

    d = make_dataset()  # default arguments: deterministic (its own seed), no download

    def on_off(x: np.ndarray, scale: float) -> np.ndarray:
        return np.clip(np.concatenate([x, -x], axis=1) / scale, 0.0, 1.0).astype(np.float32)

    scale = float(np.percentile(np.abs(d["x"]), 99))
    return Dataset("mnist1d", on_off(d["x"], scale), d["y"].astype(np.int64),
                   on_off(d["x_test"], scale), d["y_test"].astype(np.int64), 10)


@dataclass(frozen=True)
class EmbeddedDataset:
    """A registered dataset that needs no files: ``load()`` builds it in memory."""

    name: str
    description: str
    builder: object  # () -> Dataset

    def load(self, root=None, steps: int | None = None) -> Dataset:
        return self.builder()


EMBEDDED = (EmbeddedDataset("digits", "scikit-learn's 8x8 handwritten digits (64 inputs, 10 classes)", _digits),
            EmbeddedDataset("mnist1d", "MNIST-1D, ON/OFF channels (80 inputs, 10 classes)", _mnist1d),
            EmbeddedDataset("digits16", "digits 0-7 pooled 2x2 to 4x4 (16 inputs, 8 classes: Xylo Audio 2's I/O)",
                            _digits16),
            EmbeddedDataset("digits-image", "digits as 1x8x8 images (a convolution's input: Speck 2f, Akida)",
                            _digits_image))


def load_dataset(name: str, root=None, steps: int | None = None) -> Dataset:
    """A registered dataset by name (``digits``, ``mnist1d``, a plugin's); ``root`` is the local folder
    of a dataset read from files (SHD, N-MNIST, DVS Gesture), ``steps`` its number of time bins."""
    if isinstance(name, Dataset):
        return name
    if name in DATASETS and root is None:  # the embedded ones, without loading plugins
        return next(e for e in EMBEDDED if e.name == name).load()
    from .plugins import get_dataset

    return get_dataset(name).load(root=root, steps=steps)


# -- encodings and the time-major view -------------------------------------------------------------

def encode(x: np.ndarray, steps: int, encoding: str = "rate", seed: int = 0) -> np.ndarray:
    """Encode static values ``x`` (b, *shape) as a (steps, b, *shape) float32 array."""
    if encoding not in ENCODINGS:
        raise DatasetError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    if steps < 1:
        raise DatasetError(f"steps {steps} must be at least 1")
    x = np.asarray(x, dtype=np.float32)
    if encoding == "current":
        return np.broadcast_to(x, (steps, *x.shape)).copy()
    rng = np.random.default_rng(seed)
    return (rng.random((steps, *x.shape), dtype=np.float32) < x).astype(np.float32)


def check_encoding(ds: Dataset, encoding: str) -> None:
    """A rate code needs probabilities: every static input value in [0, 1]."""
    if encoding not in ENCODINGS:
        raise DatasetError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    if ds.layout != "static" or encoding != "rate":
        return
    for split in ds.splits():
        x = ds.split(split)[0]
        if x.size and (x.min() < 0 or x.max() > 1):
            raise DatasetError(f"x_{split} holds values in [{float(x.min()):g}, {float(x.max()):g}]; the rate encoding "
                               "needs probabilities in [0, 1]: scale the inputs or use --encoding current")


def time_major(ds: Dataset, split: str, steps: int | None = None, encoding: str = "rate", seed: int = 0,
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (t, b, *input_shape) float32 and labels (b,) of one split, the first ``limit`` samples.

    Static inputs are encoded over ``steps`` steps with ``encoding`` and ``seed``; sequence inputs
    keep their own frames (the first ``steps`` of them when given).
    """
    x, y = ds.split(split)
    x, y = x[:limit], y[:limit]
    if ds.layout == "static":
        return encode(x, steps if steps is not None else 32, encoding, seed), y
    t = x.shape[1]
    if steps is not None and steps > t:
        raise DatasetError(f"steps {steps} exceed the {t} time steps of x_{split} {_shape(x.shape)}; pass "
                           f"--steps {t} or fewer")
    x = np.moveaxis(np.asarray(x[:, :steps], dtype=np.float32), 1, 0)  # (t, b, *shape)
    return np.ascontiguousarray(x), y


def encoded_split(name, split: str, steps: int, encoding: str = "rate", seed: int = 0,
                  limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (t, b, n) flattened per step and labels (b,) of ``split`` of a dataset (a name or a
    :class:`Dataset`); each split draws its spikes from its own stream of ``seed``."""
    ds = load_dataset(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use 'train', 'test' or 'val'")
    x, y = time_major(ds, split, steps, encoding, seed * 2 + SPLIT_STREAM[split], limit)
    return x.reshape(x.shape[0], x.shape[1], -1), y


def predict(counts) -> np.ndarray:
    """The readout every backend shares: the class whose output neuron spiked most over the run;
    ties go to the lowest index. ``counts`` is (b, classes) (numpy or torch)."""
    return np.asarray(counts).argmax(axis=1)
