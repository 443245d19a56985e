"""The standard neuromorphic datasets, read from their published on-disk formats (no download).

Each reader bins events into ``steps`` binary frames (1 where a channel had at least one event in
the bin), giving a ``sequence`` :class:`~spikefit.datasets.Dataset` of spikes that chips take as is:

* **SHD** (Spiking Heidelberg Digits; Cramer et al. 2020): ``shd_train.h5`` and ``shd_test.h5``,
  HDF5 with ``spikes/times`` (per sample, seconds), ``spikes/units`` (channel 0..699) and
  ``labels`` (0..19). Bins span ``duration`` seconds (default 1.0 s; later events are dropped).
  Input shape ``(700,)``.
* **N-MNIST** (Orchard et al. 2015): folders ``Train/`` and ``Test/`` holding one folder per digit
  (``0`` .. ``9``) of ``*.bin`` files. Every event is 40 bits, big-endian: x (8 bits), y (8 bits),
  polarity (1 bit), timestamp in microseconds (23 bits). Bins span each sample's own duration.
  Input shape ``(2, 34, 34)`` (polarity, y, x).
* **DVS Gesture** (Amir et al. 2017): ``userXX_lighting.aedat`` (AEDAT 3.1) with
  ``userXX_lighting_labels.csv`` (``class,startTime_usec,endTime_usec``, classes 1..11) and the lists
  ``trials_to_train.txt`` / ``trials_to_test.txt``. AEDAT 3.1 is a text header of ``#`` lines ending
  in ``#!END-HEADER\\r\\n``, then packets: a 28-byte little-endian header (eventType, eventSource:
  int16; eventSize, eventTSOffset, eventTSOverflow, eventCapacity, eventNumber, eventValid: int32)
  and eventNumber events of eventSize bytes. Polarity events (type 1) are a uint32 ``data`` (bit 0
  valid, bit 1 polarity, y = bits 2-16, x = bits 17-31) and a uint32 timestamp (microseconds,
  ``eventTSOverflow << 31`` added). Each labelled interval is one sample; bins span ``duration``
  seconds from its start (default 1.5 s). The 128 x 128 sensor is pooled by ``downsample`` (default
  4): input shape ``(2, 128 / downsample, 128 / downsample)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import Dataset
from .errors import DatasetError

DEFAULT_STEPS = {"shd": 50, "nmnist": 20, "dvsgesture": 30}


def bin_events(t: np.ndarray, channel: np.ndarray, steps: int, n_channels: int, t0: float = 0.0,
               duration: float | None = None) -> np.ndarray:
    """Binary frames (steps, n_channels): frame k is 1 at every channel with an event in
    ``[t0 + k d, t0 + (k + 1) d)`` where ``d = duration / steps`` (duration: the events' span).
    Events outside ``[t0, t0 + duration)`` are dropped."""
    frames = np.zeros((steps, n_channels), dtype=np.uint8)
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return frames
    span = float(duration) if duration is not None else float(t.max() - t0) * (1 + 1e-9) or 1.0
    k = np.floor((t - t0) / span * steps).astype(np.int64)
    keep = (k >= 0) & (k < steps)
    frames[k[keep], np.asarray(channel)[keep]] = 1
    return frames


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what} {str(path)!r} does not exist; point --data-dir at the dataset's folder")
    return path


# -- SHD -------------------------------------------------------------------------------------------

def read_shd(path, steps: int, duration: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n, steps, 700) uint8 and labels (n,) of one SHD HDF5 file."""
    import h5py

    path = _need(Path(path), "SHD file")
    try:
        with h5py.File(path, "r") as f:
            times, units, labels = f["spikes"]["times"], f["spikes"]["units"], np.asarray(f["labels"])
            x = np.stack([bin_events(times[i], units[i], steps, 700, 0.0, duration) for i in range(len(labels))])
    except KeyError as e:
        raise DatasetError(f"SHD file {str(path)!r} lacks {e.args[0]!r}; an SHD file holds spikes/times, spikes/units "
                           "and labels") from None
    except OSError as e:
        raise DatasetError(f"SHD file {str(path)!r} is not HDF5 ({e}); use shd_train.h5 / shd_test.h5") from None
    return x, labels.astype(np.int64)


# -- N-MNIST ---------------------------------------------------------------------------------------

def read_nmnist_events(path) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file: a (n, 4) int64 array of x, y, polarity, t (microseconds)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise DatasetError(f"N-MNIST file {str(path)!r} has {raw.size} bytes, not a multiple of 5 (40-bit events); "
                           "the file is truncated")
    raw = raw.reshape(-1, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    p = raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return np.stack([x, y, p, t], axis=1)


def nmnist_frames(events: np.ndarray, steps: int, size: int = 34) -> np.ndarray:
    """Frames (steps, 2, size, size) of one sample's events over its own duration."""
    x, y, p, t = events.T
    keep = (x < size) & (y < size)
    ch = (p * size + y) * size + x
    return bin_events(t[keep], ch[keep], steps, 2 * size * size).reshape(steps, 2, size, size)


def read_nmnist(root, split: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n, steps, 2, 34, 34) and labels of ``root/Train`` or ``root/Test``."""
    folder = _need(Path(root) / split, "N-MNIST folder")
    xs, ys = [], []
    for digit in range(10):
        for f in sorted((folder / str(digit)).glob("*.bin")):
            xs.append(nmnist_frames(read_nmnist_events(f), steps))
            ys.append(digit)
    if not xs:
        raise DatasetError(f"N-MNIST folder {str(folder)!r} holds no 0/*.bin .. 9/*.bin files")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


# -- DVS Gesture -----------------------------------------------------------------------------------

AEDAT_HEADER_END = b"#!END-HEADER\r\n"
PACKET = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                   ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
POLARITY = 1


def read_aedat31(path) -> np.ndarray:
    """Valid polarity events of an AEDAT 3.1 file: (n, 4) int64 x, y, polarity, t (microseconds)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"#!AER-DAT3"):
        raise DatasetError(f"{str(path)!r} is not an AEDAT 3.x file (it must start with '#!AER-DAT3.1')")
    end = data.find(AEDAT_HEADER_END)
    if end < 0:
        raise DatasetError(f"AEDAT file {str(path)!r} has no '#!END-HEADER' line; the file is truncated")
    pos, out = end + len(AEDAT_HEADER_END), []
    while pos + PACKET.itemsize <= len(data):
        h = np.frombuffer(data, PACKET, 1, pos)[0]
        pos += PACKET.itemsize
        size = int(h["number"]) * int(h["size"])
        if pos + size > len(data):
            raise DatasetError(f"AEDAT file {str(path)!r} ends inside a packet at byte {pos}; the file is truncated")
        if int(h["type"]) == POLARITY and int(h["number"]):
            ev = np.frombuffer(data, np.uint32, size // 4, pos).reshape(int(h["number"]), -1)
            d, ts = ev[:, 0].astype(np.int64), ev[:, 1].astype(np.int64)
            valid = (d & 1) == 1
            t = (int(h["ts_overflow"]) << 31) | ts
            out.append(np.stack([(d >> 17) & 0x7FFF, (d >> 2) & 0x7FFF, (d >> 1) & 1, t], axis=1)[valid])
        pos += size
    return np.concatenate(out) if out else np.zeros((0, 4), dtype=np.int64)


def read_gesture_labels(path) -> np.ndarray:
    """(n, 3) int64 rows class (1..11), start and end time (microseconds) of a ``_labels.csv``."""
    rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    if rows.shape[1] != 3:
        raise DatasetError(f"labels file {str(path)!r} needs the columns class,startTime_usec,endTime_usec")
    return rows


def gesture_frames(events: np.ndarray, start: int, steps: int, duration: float, downsample: int) -> np.ndarray:
    size = 128 // downsample
    x, y, p, t = events.T
    ch = (p * size + y // downsample) * size + x // downsample
    return bin_events(t, ch, steps, 2 * size * size, float(start), duration * 1e6).reshape(steps, 2, size, size)


def read_dvsgesture(root, split: str, steps: int, duration: float = 1.5, downsample: int = 4
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n, steps, 2, 128/downsample, 128/downsample) and labels (0..10) of the trials listed in
    ``root/trials_to_{split}.txt``."""
    root = Path(root)
    listing = _need(root / f"trials_to_{split}.txt", "DVS Gesture trial list")
    if 128 % downsample:
        raise DatasetError(f"downsample {downsample} must divide 128")
    xs, ys = [], []
    for name in listing.read_text().split():
        aedat = _need(root / name, "DVS Gesture recording")
        events = read_aedat31(aedat)
        for cls, start, end in read_gesture_labels(aedat.with_name(aedat.stem + "_labels.csv")):
            seg = events[(events[:, 3] >= start) & (events[:, 3] < end)]
            xs.append(gesture_frames(seg, int(start), steps, duration, downsample))
            ys.append(int(cls) - 1)
    if not xs:
        raise DatasetError(f"DVS Gesture list {str(listing)!r} names no labelled recording")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


# -- registered datasets -------------------------------------------------------------------------

@dataclass(frozen=True)
class EventDataset:
    """A dataset read from a local folder in its published format (``load(root, steps)``)."""

    name: str
    description: str

    def load(self, root=None, steps: int | None = None) -> Dataset:
        if root is None:
            raise DatasetError(f"dataset {self.name!r} is read from its files; pass the folder that holds them "
                               "(--data-dir DIR)")
        steps = int(steps or DEFAULT_STEPS[self.name])
        root = _need(Path(root), f"{self.name} folder")
        if self.name == "shd":
            tr, te = read_shd(root / "shd_train.h5", steps), read_shd(root / "shd_test.h5", steps)
            classes = 20
        elif self.name == "nmnist":
            tr, te = read_nmnist(root, "Train", steps), read_nmnist(root, "Test", steps)
            classes = 10
        else:
            tr, te = read_dvsgesture(root, "train", steps), read_dvsgesture(root, "test", steps)
            classes = 11
        return Dataset(self.name, tr[0], tr[1], te[0], te[1], classes, layout="sequence")


EVENT_DATASETS = (
    EventDataset("shd", "Spiking Heidelberg Digits: shd_train.h5, shd_test.h5 (700 channels, 20 classes)"),
    EventDataset("nmnist", "N-MNIST: Train/ and Test/ of digit folders of 40-bit .bin files (2x34x34, 10 classes)"),
    EventDataset("dvsgesture", "DVS Gesture: AEDAT 3.1 + labels CSVs, trials_to_train/test.txt (2x32x32, 11 classes)"),
)
