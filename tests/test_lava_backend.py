"""The ``lava`` backend: registration, inputs, Lava's timing conventions, and cleanup (no Lava
process outlives a run that fails, times out or is interrupted)."""
from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spikefit import plugins
from spikefit.emulator import EmulatorBackend
from spikefit.errors import BackendError, ExportError
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit_lava import build
from spikefit_lava.backend import LavaBackend
from spikefit_lava.plan import make_plan
from spikefit_lava.worker import _stat, descendants, run_supervised

LAVA_HINT = ("Lava is not installed; install it with `make install` (lava-nc 0.10.0 with the spikefit-lava plugin: "
             "see plugins/spikefit-lava/README.md)")


def small_net(seed: int = 0, depth: int = 2) -> Network:
    """20 inputs, ``depth`` populations of 12 neurons in a chain, then 5 outputs."""
    rng = np.random.default_rng(seed)
    nodes, n = [Input("in", (20,))], 20
    for i in range(depth):
        nodes += [Dense(f"fc{i}", rng.normal(0.1, 0.5, (12, n))), Neurons(f"h{i}", (12,), du=1.0, dv=0.1, vth=1.0)]
        n = 12
    nodes += [Dense("fc_out", rng.normal(0.1, 0.5, (5, n))), Neurons("out", (5,), du=1.0, dv=0.1, vth=1.0), Output("o", (5,))]
    return Network.sequential(*nodes)


def spikes(steps: int, samples: int, seed: int = 0, p: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, samples, 20)) < p).astype(np.float32)


def live_descendants() -> set[int]:
    return set(descendants(os.getpid()))


def assert_nothing_left(before: set[int]) -> None:
    """No process this test started (the worker, Lava's processes) is still alive; ``before``: the
    descendants that existed already (e.g. a resource tracker of an earlier in-process Lava run)."""
    assert multiprocessing.active_children() == []
    end = time.monotonic() + 5
    while live_descendants() - before and time.monotonic() < end:
        time.sleep(0.1)
    assert live_descendants() - before == set()


# -- registration, inputs ----------------------------------------------------------------------------
def test_backend_is_registered_by_the_plugin_entry_point():
    backend = plugins.get_backend("lava")
    assert isinstance(backend, LavaBackend) and backend.name == "lava"
    assert plugins.owner_of("backend", "lava") == "lava"
    assert plugins.owner_of("exporter", "lava") == "lava"
    plugins.pm.check_pending()


def test_importing_the_plugin_does_not_import_lava():
    code = ("import sys, spikefit_lava.plugin, spikefit.plugins as p; p.get_backend('lava'); p.get_exporter('lava'); "
            "print(sorted(m for m in sys.modules if m == 'lava' or m.startswith('lava.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_lava_is_reported_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "lava", None)  # as if lava-nc were not installed
    with pytest.raises(BackendError, match=f"^{re.escape(LAVA_HINT)}$"):
        LavaBackend().run(small_net(), spikes(4, 2))


@pytest.mark.parametrize("inputs, message", [
    (np.full((4, 2, 20), 0.5, dtype=np.float32),
     r"^Lava's fixed-point connections read binary spikes, but the inputs hold values in \[0.5, 0.5\]; encode them "
     r"as 0/1 spikes \(e.g. 'rate'\) or run with select_tag='floating_pt'$"),
    (np.zeros((4, 2, 21)), r"^inputs have 21 channels per step but the network's input has 20; pass inputs that match"),
    (np.zeros((4, 20)), r"^inputs must be spikes of shape \(t, b, n\), got shape \(4, 20\)$"),
])
def test_inputs_are_checked_before_lava_starts(inputs, message):
    with pytest.raises(BackendError, match=message):
        LavaBackend().run(small_net(), inputs)


def test_unknown_select_tag():
    with pytest.raises(BackendError, match=r"^unknown select_tag 'fixed'; use one of fixed_pt, floating_pt$"):
        LavaBackend().run(small_net(), spikes(4, 2), select_tag="fixed")


def test_no_samples_means_no_run():
    out = LavaBackend().run(small_net(), np.zeros((6, 0, 20)))
    assert {k: v.shape for k, v in out.items()} == {"h0": (6, 0, 12), "h1": (6, 0, 12), "out": (6, 0, 5)}


def test_networks_lava_cannot_time_exactly_are_refused():
    rng = np.random.default_rng(0)
    # a skip connection: 'out' is 1 connection from the input via 'skip' and 2 via 'h'
    nodes = [Input("in", (6,)), Dense("fc", rng.normal(size=(4, 6))), Neurons("h", (4,)),
             Dense("fc2", rng.normal(size=(3, 4))), Dense("skip", rng.normal(size=(3, 6))), Neurons("out", (3,))]
    edges = [("in", "fc"), ("fc", "h"), ("h", "fc2"), ("fc2", "out"), ("in", "skip"), ("skip", "out")]
    with pytest.raises(ExportError, match=r"^population 'out' is reached by feed-forward paths of 1 and 2 connections "
                                          r"\(via 'skip' and 'fc2'\); each Lava connection adds one step"):
        LavaBackend().run(Network({n.name: n for n in nodes}, edges), np.zeros((4, 2, 6)))
    # a cycle h -> fc2 -> out -> back -> h: both connections deliver the previous step, so 'out'
    # has no feed-forward input at all
    nodes = [Input("in", (6,)), Dense("fc", rng.normal(size=(4, 6))), Neurons("h", (4,)),
             Dense("fc2", rng.normal(size=(3, 4))), Neurons("out", (3,)), Dense("back", rng.normal(size=(4, 3)))]
    edges = [("in", "fc"), ("fc", "h"), ("h", "fc2"), ("fc2", "out"), ("out", "back"), ("back", "h")]
    with pytest.raises(ExportError, match=r"^population 'out' has no feed-forward input \(only recurrent ones\)"):
        LavaBackend().run(Network({n.name: n for n in nodes}, edges), np.zeros((4, 2, 6)))
    # the same cycle with 'out' also fed two connections from the input: recurrence across depths
    nodes += [Dense("fa", rng.normal(size=(4, 6))), Neurons("a", (4,)), Dense("fb", rng.normal(size=(3, 4)))]
    edges += [("in", "fa"), ("fa", "a"), ("a", "fb"), ("fb", "out")]
    with pytest.raises(ExportError, match=r"^recurrent connection '(fc2|back)' from '(h|out)' \(depth [12]\) to "
                                          r"'(out|h)' \(depth [12]\) would arrive 1 step\(s\) (early|late) on Lava"):
        LavaBackend().run(Network({n.name: n for n in nodes}, edges), np.zeros((4, 2, 6)))


# -- timing conventions ------------------------------------------------------------------------------
def test_window_boundaries_keep_each_spike_in_its_own_sample():
    # Input spikes only at the last step of every sample: a population of depth d receives them
    # from Lava's Dense d steps late, right before its next reset. They must show up in the last
    # step of the same sample at every depth, never in the first step of the next one.
    net = small_net(depth=3)
    T, B = 5, 6
    x = np.zeros((T, B, 20), dtype=np.float32)
    x[-1] = 1.0
    lava = LavaBackend().run(net, x)
    emu = EmulatorBackend().run(net, x)
    for name in emu:
        assert np.array_equal(lava[name], emu[name]), name
    assert lava["h0"][-1].any() and lava["h0"][:-1].sum() == 0 and lava["h2"][:-1].sum() == 0
    assert [p.depth for p in make_plan(net, "fixed_pt").populations] == [1, 2, 3, 4]


@pytest.mark.parametrize("shift", [-1, 1])
def test_any_other_reset_offset_breaks_the_agreement(monkeypatch, shift):
    # The convention is measured, not assumed: resetting one step earlier or later than
    # (1 + depth) % window changes the spikes.
    net, x = small_net(), spikes(8, 10)
    emu = EmulatorBackend().run(net, x)  # equal to Lava with the right offset (test_lava_agreement.py)
    monkeypatch.setattr(build, "reset_offset", lambda depth, window: (1 + depth + shift) % window)
    wrong = LavaBackend().run(net, x)
    assert any(not np.array_equal(wrong[k], emu[k]) for k in emu)


def test_recurrent_buffers_must_be_zeroed_between_samples(monkeypatch):
    # Lava's Dense carries the last step of one sample into the first step of the next; without
    # zeroing its buffer there, exactly those first steps differ from spikefit's semantics.
    rng = np.random.default_rng(4)
    nodes = [Input("in", (20,)), Dense("fc", rng.normal(0.1, 0.5, (12, 20))), Neurons("h", (12,), du=1.0, dv=0.1, vth=1.0),
             Dense("rec", rng.normal(0.2, 0.6, (12, 12)))]
    net = Network({n.name: n for n in nodes}, [("in", "fc"), ("fc", "h"), ("h", "rec"), ("rec", "h")])
    x = spikes(8, 12)
    emu = EmulatorBackend().run(net, x)
    monkeypatch.setattr(build, "_pause_points", lambda *args: {})
    carried = LavaBackend().run(net, x)["h"]
    differs = (carried != emu["h"]).any(axis=0).any(axis=1)  # (b,)
    assert differs.any() and not differs[0]  # the first sample has no predecessor
    # a sample differs only where its predecessor spiked at its last step (what Dense carried over)
    assert all(carried[-1, k - 1].any() for k in np.flatnonzero(differs))


def test_reset_offset_and_readout_follow_the_depth():
    plan = make_plan(small_net(depth=2), "fixed_pt")
    meta, arrays = plan.to_meta_arrays()
    net = build.build(build.Spec(meta, arrays), window=4)
    # Lava's time_step starts at 1; a population of depth d sees frame 0 of a sample at step 1 + d.
    assert {n: (p.proc_params["reset_interval"], p.proc_params["reset_offset"]) for n, p in net.populations.items()} \
        == {"h0": (4, 2), "h1": (4, 3), "out": (4, 0)}
    # ...and the spikes Lava emits at step s (row s - 1) hold that frame at row d: with 2 samples of
    # 4 steps, rows 3..10 of the output population (depth 3) are its two windows.
    frames = np.zeros((2 * 4 + 3, 5), dtype=bool)
    frames[3:11, 0] = np.arange(8) % 2 == 1
    out = build.decode(build.Spec(meta, arrays), "out", frames, window=4, samples=2)
    assert out.shape == (4, 2, 5) and out[:, :, 0].T.tolist() == [[False, True, False, True]] * 2
    assert not out[:, :, 1:].any()


def test_extractors_are_drained_in_segments_that_bound_their_memory():
    assert build.chunk_steps([138]) == 1024
    assert build.chunk_steps([10, 4096]) == 512
    assert build.chunk_steps([10 ** 7]) == 16


# -- cleanup -----------------------------------------------------------------------------------------
def test_timeout_stops_lava_and_leaves_no_process():
    before = live_descendants()
    with pytest.raises(BackendError, match=r"^the Lava run \(3000 samples x 10 steps, fixed_pt\) did not finish within "
                                           r"the timeout of 1 s; pass a larger timeout or run fewer samples$"):
        LavaBackend().run(small_net(), spikes(10, 3000), timeout=1.0)
    assert_nothing_left(before)


def test_an_exception_while_lava_runs_leaves_no_process():
    # The worst case: the code driving Lava raises while the runtime is up and never stops it.
    before = live_descendants()
    meta, arrays = make_plan(small_net(), "fixed_pt").to_meta_arrays()

    def start_then_fail():
        L = build.lava()
        net = build.build(build.Spec(meta, arrays), window=4)
        source = L.Source(data=np.ones((20, 8), dtype=np.int32))
        net.connect_input(source.s_out)
        source.run(condition=L.RunSteps(num_steps=5), run_cfg=L.Loihi2SimCfg(select_tag="fixed_pt"))
        raise ValueError(f"failed after {len(descendants(os.getpid()))} Lava processes started")

    with pytest.raises(BackendError, match=r"^the Lava run failed: ValueError: failed after [1-9]\d* Lava processes started$"):
        run_supervised(start_then_fail)
    assert_nothing_left(before)


def test_ctrl_c_stops_lava_and_leaves_no_process():
    before = live_descendants()
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored when started in the background
    try:
        with pytest.raises(KeyboardInterrupt):
            timer.start()
            LavaBackend().run(small_net(), spikes(10, 3000))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert_nothing_left(before)


def test_a_lava_process_dying_mid_run_is_an_error_not_a_hang():
    me, before = os.getpid(), live_descendants()
    killed = []

    def lava_processes() -> list[int]:
        """Children of the worker (this process's new child), but not its resource tracker."""
        new = live_descendants() - before
        workers = [p for p in new if int(_stat(p)[1]) == me]
        return [p for p in new if workers and int(_stat(p)[1]) == workers[0]
                and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]

    def kill_a_lava_process():
        end = time.monotonic() + 60
        while time.monotonic() < end and not killed:
            lava = lava_processes()
            if len(lava) >= 6:  # the network's processes are up: kill the newest, by its id
                victim = max(lava, key=lambda p: int(_stat(p)[19]))  # field 22: start time
                time.sleep(1.0)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            time.sleep(0.1)

    thread = threading.Thread(target=kill_a_lava_process, daemon=True)
    thread.start()
    with pytest.raises(BackendError, match=r"^a Lava process \(pid \d+\) died with wait status 9 during the Lava run"):
        LavaBackend().run(small_net(), spikes(10, 3000))
    thread.join(5)
    assert killed
    assert_nothing_left(before)
