"""SHD, N-MNIST and DVS Gesture read from small files built here in each published format."""
from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest

from clitools import assert_one_line_error, invoke
from spikefit.datasets import load_dataset
from spikefit.errors import DatasetError
from spikefit.events import bin_events, read_aedat31, read_nmnist_events


# -- SHD: HDF5 with variable-length spikes/times (s), spikes/units and labels -----------------------

def write_shd(path, samples: list[tuple[list[float], list[int]]], labels: list[int]) -> None:
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i] = np.asarray(t, np.float32)
            units[i] = np.asarray(u, np.uint16)
        f["labels"] = np.asarray(labels, np.uint16)


def shd_folder(tmp_path):
    tmp_path.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 96), ("test", 16)):
        samples, labels = [], []
        for i in range(n):
            label = i % 2
            t = rng.uniform(0, 1, 200)
            samples.append((t.tolist(), (rng.integers(0, 350, 200) + 350 * label).tolist()))  # one half per class
            labels.append(label)
        write_shd(tmp_path / f"shd_{split}.h5", samples, labels)
    return tmp_path


def test_shd_bins_spikes_into_frames(tmp_path):
    write_shd(tmp_path / "shd_train.h5", [([0.1, 0.26, 0.99, 1.2], [5, 699, 5, 3])], [7])
    write_shd(tmp_path / "shd_test.h5", [([0.0], [0])], [19])
    ds = load_dataset("shd", root=tmp_path, steps=4)
    assert ds.layout == "sequence" and ds.x_train.shape == (1, 4, 700) and ds.n_classes == 20
    assert np.argwhere(ds.x_train[0]).tolist() == [[0, 5], [1, 699], [3, 5]]  # 1.2 s lies past the 1 s window
    assert ds.y_train.tolist() == [7] and ds.y_test.tolist() == [19]


def test_shd_fits_from_the_command_line(tmp_path):
    root = shd_folder(tmp_path / "shd")
    toml = tmp_path / "c.toml"
    toml.write_text('name = "c"\n[limits]\nweight_bits = 8\nunique_weights = 4\n')
    r = invoke("fit", "--target-file", toml, "--dataset", "shd", "--data-dir", root, "--steps", "4", "--epochs",
               "6,1,0,1", "--out", tmp_path / "o", "--quiet", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["dataset"] == "shd" and result["config"]["steps"] == 4 and result["accuracy"]["deployed"] >= 0.9
    assert_one_line_error(invoke("fit", "--target-file", toml, "--dataset", "shd", "--out", tmp_path / "p"),
                          r"dataset 'shd' is read from its files; pass the folder that holds them \(--data-dir DIR\)")


# -- N-MNIST: 40-bit big-endian events x(8) y(8) p(1) t(23) -----------------------------------------

def nmnist_bytes(events) -> bytes:
    out = b""
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
    return out


def test_nmnist_reads_40_bit_events_and_digit_folders(tmp_path):
    events = [(3, 7, 1, 70000), (33, 0, 0, 5), (0, 33, 1, 0x7FFFFF)]
    (tmp_path / "one.bin").write_bytes(nmnist_bytes(events))
    assert read_nmnist_events(tmp_path / "one.bin").tolist() == [list(e) for e in events]
    for split, digits in (("Train", (0, 1, 1)), ("Test", (9,))):
        for i, d in enumerate(digits):
            folder = tmp_path / split / str(d)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:05d}.bin").write_bytes(nmnist_bytes([(1, 2, 0, 0), (30, 31, 1, 999)]))
    ds = load_dataset("nmnist", root=tmp_path, steps=2)
    assert ds.x_train.shape == (3, 2, 2, 34, 34) and ds.y_train.tolist() == [0, 1, 1] and ds.y_test.tolist() == [9]
    assert np.argwhere(ds.x_test[0]).tolist() == [[0, 0, 2, 1], [1, 1, 31, 30]]  # (t, polarity, y, x)
    (tmp_path / "Train" / "0" / "bad.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(DatasetError, match=r"N-MNIST file '.*bad\.bin' has 7 bytes, not a multiple of 5"):
        load_dataset("nmnist", root=tmp_path, steps=2)


# -- DVS Gesture: AEDAT 3.1 packets + labels CSV + trial lists --------------------------------------

HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"


def packet(kind: int, events, overflow: int = 0, valid: bool = True) -> bytes:
    """One AEDAT 3.1 packet: 28-byte header, then 8-byte (data, timestamp) events."""
    body = b""
    for x, y, p, t in events:
        data = (x << 17) | (y << 2) | (p << 1) | int(valid)
        body += struct.pack("<II", data, t)
    n = len(events)
    return struct.pack("<hhiiiiii", kind, 1, 8, 4, overflow, n, n, n) + body


def test_aedat31_polarity_events(tmp_path):
    path = tmp_path / "rec.aedat"
    path.write_bytes(HEADER + packet(1, [(127, 0, 1, 10), (5, 99, 0, 20)]) + packet(0, [(1, 1, 1, 15)])
                     + packet(1, [(2, 3, 1, 30)], valid=False) + packet(1, [(4, 5, 0, 7)], overflow=1))
    assert read_aedat31(path).tolist() == [[127, 0, 1, 10], [5, 99, 0, 20], [4, 5, 0, (1 << 31) | 7]]
    path.write_bytes(HEADER + packet(1, [(1, 1, 1, 1)])[:-3])
    with pytest.raises(DatasetError, match=r"ends inside a packet at byte \d+; the file is truncated"):
        read_aedat31(path)
    path.write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(DatasetError, match=r"is not an AEDAT 3\.x file"):
        read_aedat31(path)


def test_dvsgesture_cuts_labelled_intervals(tmp_path):
    for user, split in (("user01_led", "train"), ("user24_led", "test")):
        events = [(0, 0, 1, 1_000_000), (127, 127, 0, 1_200_000), (64, 8, 1, 3_100_000)]
        (tmp_path / f"{user}.aedat").write_bytes(HEADER + packet(1, events))
        (tmp_path / f"{user}_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,1000000,2500000\n"
                                                     "11,3000000,4500000\n")
        (tmp_path / f"trials_to_{split}.txt").write_text(f"{user}.aedat\n")
    ds = load_dataset("dvsgesture", root=tmp_path, steps=3)
    assert ds.x_train.shape == (2, 3, 2, 32, 32) and ds.y_train.tolist() == [0, 10] and ds.n_classes == 11
    assert np.argwhere(ds.x_train[0]).tolist() == [[0, 0, 31, 31], [0, 1, 0, 0]]   # 0.5 s bins from 1.0 s
    assert np.argwhere(ds.x_train[1]).tolist() == [[0, 1, 2, 16]]                  # (t, polarity, y/4, x/4)


def test_bin_events_drops_events_outside_the_window():
    frames = bin_events(np.array([0.0, 0.5, 1.0, -0.1]), np.array([0, 1, 2, 3]), 2, 4, duration=1.0)
    assert frames.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]
