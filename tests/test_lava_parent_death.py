"""A ``spikefit run --backend lava`` whose parent is killed (``kill -TERM`` or ``-KILL``) leaves no
process behind: the worker, Lava's processes and its resource tracker all end within 5 seconds.
And the run shows its progress (samples done, time left) on a terminal."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from clitools import SPIKEFIT
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import write_nir
from spikefit_lava.backend import _progress_bar
from spikefit_lava.worker import _stat, descendants, run_supervised

GONE_WITHIN_S = 5.0


def _model(path: Path) -> Path:
    rng = np.random.default_rng(0)
    net = Network.sequential(Input("in", (64,)), Dense("fc", rng.normal(0, 0.3, (10, 64))),
                             Neurons("pop", (10,), dv=0.1), Output("out", (10,)))
    return write_nir(net, path)


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if (f := _stat(p)) is not None and f[0] != "Z"]


def _in_sessions(sessions: set[int]) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        f = _stat(int(p)) if p.isdigit() else None
        if f and f[0] != "Z" and int(f[3]) in sessions:
            out.append(int(p))
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_killing_the_parent_of_a_lava_run_leaves_no_process(tmp_path, sig):
    model = _model(tmp_path / "m.nir")
    proc = subprocess.Popen([str(SPIKEFIT), "run", str(model), "--backend", "lava", "--dataset", "digits",
                             "--samples", "360", "--steps", "60"],  # ~20 s of Lava: killed long before the end
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while len(descendants(proc.pid)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # the worker, Lava's runtime processes, the resource tracker
        time.sleep(1.0)
        family = descendants(proc.pid)
        assert len(family) >= 3, f"the Lava run did not start: {family}"
        sessions = {int(f[3]) for p in family if (f := _stat(p))} - {os.getsid(0)}
        os.kill(proc.pid, sig)
        proc.wait(10)
        end = time.monotonic() + GONE_WITHIN_S
        while time.monotonic() < end and (_alive(family) or _in_sessions(sessions)):
            time.sleep(0.1)
        left = sorted(set(_alive(family)) | set(_in_sessions(sessions)))
        assert left == [], f"processes left {GONE_WITHIN_S:g} s after kill -{sig.name}: {left}"
    finally:
        for p in _alive([proc.pid, *descendants(proc.pid)]):  # never leave our own processes behind on failure
            os.kill(p, signal.SIGKILL)
        proc.wait(10)


def _count_to(n: int, progress=None) -> int:
    for i in range(1, n + 1):
        if progress is not None:
            progress(i, n)
    return n


def test_progress_messages_cross_from_the_worker():
    seen: list[tuple[int, int]] = []
    assert run_supervised(_count_to, (4,), progress=lambda d, t: seen.append((d, t))) == 4
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_progress_bar_counts_samples_and_stays_off_without_a_terminal(capsys):
    with _progress_bar(samples=5, steps=10, show=False) as report:
        assert report is None
    with _progress_bar(samples=5, steps=10, show=True) as report:
        report(20, 50)
        report(50, 50)
    err = capsys.readouterr().err
    assert "5/5" in err and "sample" in err


def test_a_lava_run_on_a_terminal_shows_samples_and_time_left(tmp_path):
    import pty
    import threading

    model = _model(tmp_path / "m.nir")
    main, sub = pty.openpty()  # stderr is a terminal, stdout a pipe
    shown = bytearray()

    def drain():  # read while the run writes: a terminal's buffer is small
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the other side is closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        r = subprocess.run([str(SPIKEFIT), "run", str(model), "--backend", "lava", "--dataset", "digits",
                            "--samples", "40", "--steps", "30", "--json"], stdout=subprocess.PIPE, stderr=sub,
                           timeout=120)
    finally:
        os.close(sub)
        reader.join(10)
        os.close(main)
    assert r.returncode == 0
    text = shown.decode(errors="replace")
    assert "lava:" in text and "/40" in text and "sample/s" in text, text[-500:]
    assert json.loads(r.stdout)["samples"] == 40, "stdout stays clean JSON"
