"""Embedded datasets (offline) with fixed splits and spike encodings.

* ``digits``: scikit-learn's 8x8 handwritten digits, 1,797 samples; a stratified split with
  360 test samples (``random_state=0``). Pixels (0..16) scale to firing probabilities in [0, 1].
* ``mnist1d``: ``mnist1d.data.make_dataset()`` with its default arguments (4,000 train, 1,000 test,
  40 features). Each feature is split into an ON and an OFF channel (positive and negative part), so
  80 inputs; magnitudes scale by the 99th percentile of |x| on the training set, clipped to [0, 1].

Encodings over ``steps`` time steps, time-major ``(t, b, n)``:

* ``rate``: Bernoulli spikes with probability = intensity, drawn from a generator seeded with
  ``seed`` (the same seed gives the same spikes on every backend);
* ``current``: the intensity itself at every step (direct current input; for training studies,
  not for chips that take only spikes).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import DatasetError

DATASETS = ("digits", "mnist1d")
ENCODINGS = ("rate", "current")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (b, n) intensities in [0, 1]
    y_train: np.ndarray  # (b,) int64 labels
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_inputs(self) -> int:
        return int(self.x_train.shape[1])


@lru_cache(maxsize=None)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=360, random_state=0, stratify=d.target)
    return Dataset("digits", xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), 10)


@lru_cache(maxsize=None)
def _mnist1d() -> Dataset:
    from mnist1d.data import make_dataset

    d = make_dataset()  # default arguments: deterministic (its own seed), no download

    def on_off(x: np.ndarray, scale: float) -> np.ndarray:
        return np.clip(np.concatenate([x, -x], axis=1) / scale, 0.0, 1.0).astype(np.float32)

    scale = float(np.percentile(np.abs(d["x"]), 99))
    return Dataset("mnist1d", on_off(d["x"], scale), d["y"].astype(np.int64),
                   on_off(d["x_test"], scale), d["y_test"].astype(np.int64), 10)


def load_dataset(name: str) -> Dataset:
    """The intensities and labels of an embedded dataset (no encoding)."""
    loaders = {"digits": _digits, "mnist1d": _mnist1d}
    if name not in loaders:
        raise DatasetError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return loaders[name]()


def encode(x: np.ndarray, steps: int, encoding: str = "rate", seed: int = 0) -> np.ndarray:
    """Encode intensities ``x`` (b, n) in [0, 1] as a (steps, b, n) float32 array."""
    if encoding not in ENCODINGS:
        raise DatasetError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    if steps < 1:
        raise DatasetError(f"steps {steps} must be at least 1")
    x = np.asarray(x, dtype=np.float32)
    if encoding == "current":
        return np.broadcast_to(x, (steps, *x.shape)).copy()
    rng = np.random.default_rng(seed)
    return (rng.random((steps, *x.shape), dtype=np.float32) < x).astype(np.float32)


def encoded_split(name: str, split: str, steps: int, encoding: str = "rate", seed: int = 0,
                  limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Spikes (t, b, n) and labels (b,) of ``split`` ("train" or "test"); the first ``limit`` samples."""
    ds = load_dataset(name)
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}; use 'train' or 'test'")
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    # A distinct stream per split, so train and test spikes never share random numbers.
    return encode(x, steps, encoding, seed=seed * 2 + (split == "test")), y


def predict(counts) -> np.ndarray:
    """The readout every backend shares: the class whose output neuron spiked most over the run;
    ties go to the lowest index. ``counts`` is (b, classes) (numpy or torch)."""
    return np.asarray(counts).argmax(axis=1)
