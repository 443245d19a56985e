"""The user's data: ``.npz`` and HDF5 files, and torch datasets, as a :class:`~spikefit.datasets.Dataset`.

A file holds the arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally ``x_val``,
``y_val`` (HDF5: datasets of those names at the root). ``x`` is ``(n, *input_shape)`` static values
or ``(n, t, *input_shape)`` per-step frames; which one is decided by ``layout`` (``"static"`` /
``"sequence"``), else by a model's input shape (:meth:`Dataset.conform`), else by the number of
dimensions: ``(n, features)`` and ``(n, c, h, w)`` static, ``(n, t, features)`` and ``(n, t, c, h, w)``
sequences.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import LAYOUTS, Dataset, load_dataset
from .errors import DatasetError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")
SUFFIXES = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5"}


def guess_layout(x: np.ndarray) -> str:
    """``(n, f)`` and ``(n, c, h, w)``: static; ``(n, t, f)`` and ``(n, t, c, h, w)``: sequence."""
    return "sequence" if np.ndim(x) in (3, 5) else "static"


def load_file(path, layout: str | None = None, name: str | None = None) -> Dataset:
    """A Dataset from a ``.npz`` or HDF5 file (see the module docstring).

    :raises DatasetError: a missing file or array, an unknown suffix, or arrays that fail
        :class:`Dataset`'s checks (shapes, labels, NaN/inf), each named.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data file {str(path)!r} does not exist; pass an .npz or HDF5 file with x_train, y_train, "
                           "x_test, y_test")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(f"data file {str(path)!r}: unknown suffix {path.suffix!r}; use .npz, .h5 or .hdf5")
    arrays = _read_npz(path) if kind == "npz" else _read_hdf5(path)
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise DatasetError(f"data file {str(path)!r} has no array {missing[0]!r} (it holds {', '.join(sorted(arrays)) or 'none'}); "
                           f"it needs {', '.join(REQUIRED)}")
    val = [k for k in OPTIONAL if k in arrays]
    if len(val) == 1:
        other = OPTIONAL[1 - OPTIONAL.index(val[0])]
        raise DatasetError(f"data file {str(path)!r} has {val[0]!r} but no array {other!r}; give both or neither")
    return make_dataset(name or path.stem, arrays, layout)


def make_dataset(name: str, arrays: dict, layout: str | None = None, n_classes: int | None = None) -> Dataset:
    if layout is not None and layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    layout = layout or guess_layout(arrays["x_train"])
    return Dataset(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], n_classes,
                   arrays.get("x_val"), arrays.get("y_val"), layout)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files if k in REQUIRED + OPTIONAL}
    except (OSError, ValueError) as e:
        raise DatasetError(f"data file {str(path)!r} is not a readable .npz ({type(e).__name__}: {e}); save it with "
                           "numpy.savez") from None


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]) for k in REQUIRED + OPTIONAL if k in f}
    except OSError as e:
        raise DatasetError(f"data file {str(path)!r} is not a readable HDF5 file ({e})") from None


# -- torch datasets --------------------------------------------------------------------------------

def _to_arrays(source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All (x, y) pairs of a torch ``Dataset`` or ``DataLoader`` (batches concatenated)."""
    import torch
    from torch.utils.data import DataLoader

    if isinstance(source, DataLoader):
        xs, ys = [], []
        for batch in source:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise DatasetError(f"the {split} DataLoader yields {type(batch).__name__}; it must yield (x, y) batches")
            xs.append(np.asarray(batch[0]))
            ys.append(np.asarray(batch[1]).reshape(-1))
        if not xs:
            raise DatasetError(f"the {split} DataLoader yields no batches")
        return np.concatenate(xs), np.concatenate(ys)
    if not hasattr(source, "__getitem__") or not hasattr(source, "__len__"):
        raise DatasetError(f"{split} data is a {type(source).__name__}; pass a torch.utils.data.Dataset (with len) "
                           "or DataLoader")
    if len(source) == 0:
        raise DatasetError(f"the {split} dataset is empty")
    xs, ys = [], []
    for i in range(len(source)):
        item = source[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DatasetError(f"item {i} of the {split} dataset is {type(item).__name__}; it must be an (x, y) pair")
        x, y = item[0], item[1]
        xs.append(x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
        ys.append(int(y) if np.ndim(y) == 0 else np.asarray(y).reshape(-1)[0])
    return np.stack(xs), np.asarray(ys)


def from_torch(train, test, val=None, name: str = "torch", layout: str | None = None,
               n_classes: int | None = None) -> Dataset:
    """A Dataset from torch ``Dataset`` / ``DataLoader`` objects yielding ``(x, y)`` (one sample each
    for a Dataset, batches for a DataLoader); ``x`` as in a data file."""
    arrays = {}
    for split, src in (("train", train), ("test", test), ("val", val)):
        if src is None:
            continue
        arrays[f"x_{split}"], arrays[f"y_{split}"] = _to_arrays(src, split)
    return make_dataset(name, arrays, layout, n_classes)


def resolve(data, layout: str | None = None, root=None, steps: int | None = None) -> Dataset:
    """Any accepted data: a Dataset, a registered name, a ``.npz`` / HDF5 path, a ``(train, test)`` or
    ``(train, test, val)`` tuple or a ``{"train", "test", "val"}`` dict of torch datasets or loaders."""
    if isinstance(data, Dataset):
        ds = data
    elif isinstance(data, Path) or (isinstance(data, str) and Path(data).suffix.lower() in SUFFIXES):
        return load_file(data, layout)
    elif isinstance(data, str):
        ds = load_dataset(data, root=root, steps=steps)
    elif isinstance(data, dict):
        unknown = sorted(set(data) - {"train", "test", "val"})
        if unknown or not {"train", "test"} <= set(data):
            raise DatasetError(f"a data dict needs keys 'train' and 'test' (and optionally 'val'), got {sorted(data)}")
        return from_torch(data["train"], data["test"], data.get("val"), layout=layout)
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return from_torch(*data, layout=layout)
    else:
        raise DatasetError(f"data must be a dataset name, an .npz/HDF5 path, a spikefit Dataset or a (train, test) pair "
                           f"of torch datasets, got {type(data).__name__}; a single torch dataset has no test split")
    if layout is not None and layout != ds.layout:
        from dataclasses import replace

        ds = replace(ds, layout=layout)
    return ds
