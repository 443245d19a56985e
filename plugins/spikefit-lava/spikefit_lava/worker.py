"""Run a Lava simulation in a supervised worker process, so that nothing is left behind.

Lava's runtime forks one OS process per process model. When one of them dies (an exception in a
process model, a signal), lava-nc 0.10.0 blocks forever in ``run()`` and again in ``stop()``, so a
``try/finally: stop()`` in the calling process cannot guarantee cleanup. Hence:

* the simulation runs in a forked worker that first calls ``os.setsid()``: the worker and every
  process Lava forks form one process group, which a terminal's Ctrl-C does not reach;
* the caller waits for the result, and meanwhile watches the deadline and the worker's children:
  a child that exited with a non-zero status means Lava is stuck, so it gives up at once;
* on any way out (result, error, timeout, ``KeyboardInterrupt``) the caller terminates the group
  (SIGTERM, then SIGKILL) and reaps the worker. Inside the worker the simulation itself stops
  Lava's runtime in a ``finally`` (:func:`spikefit_lava.build.simulate`);
* when the caller itself ends without cleaning up (``kill -TERM`` or ``-KILL`` of ``spikefit run``),
  the worker dies with it: on Linux the kernel sends it SIGKILL when its parent exits
  (``prctl(PR_SET_PDEATHSIG)``), and every process Lava forks from it gets the same signal when the
  worker exits (set in a fork hook), so the processes go down in a chain; Lava's multiprocessing
  resource tracker then reads end-of-file, cleans up and exits. A watchdog thread that sees the
  parent change kills the group where ``prctl`` is unavailable. The worker closes its copy of the
  pipe's read end, so a write to a caller that is gone fails instead of blocking.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from spikefit.errors import BackendError

POLL_S = 0.2              # how often the caller checks the deadline and the worker's children
STOP_GRACE_S = 10.0       # how long a worker that delivered its result may take to stop Lava
KILL_GRACE_S = 2.0        # how long the group gets after SIGTERM before SIGKILL


# -- /proc (Linux) -------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def failed_children(pid: int) -> list[tuple[int, int]]:
    """(pid, wait status) of children of ``pid`` that exited with a non-zero status and are not
    reaped yet (zombies; the status is field 52 of /proc/PID/stat)."""
    out = []
    for child in _pids():
        f = _stat(child)
        if f and int(f[1]) == pid and f[0] == "Z" and len(f) >= 50 and int(f[49]) != 0:
            out.append((child, int(f[49])))
    return out


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for pid in _pids():
        f = _stat(pid)
        if f and int(f[2]) == pgid and f[0] != "Z":
            out.append(pid)
    return out


def descendants(pid: int) -> list[int]:
    """Live (not zombie) descendants of ``pid``."""
    children: dict[int, list[int]] = {}
    for p in _pids():
        f = _stat(p)
        if f and f[0] != "Z":
            children.setdefault(int(f[1]), []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


# -- dying with the parent -----------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1      # linux/prctl.h
WATCHDOG_S = 0.5          # how often the worker's watchdog looks at its parent


def _pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watchdog(parent: int) -> None:
    """Kill the worker's process group once the parent is gone (reparented: getppid changes)."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_S)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _die_with_parent(parent: int) -> None:
    _pdeathsig()
    os.register_at_fork(after_in_child=_pdeathsig)  # Lava's processes die with the worker, and so on down
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent,), daemon=True, name="spikefit-lava-watchdog").start()


# -- the worker ----------------------------------------------------------------------------------------
def _worker(conn, recv, parent: int, fn: Callable, args: tuple, with_progress: bool) -> None:
    recv.close()  # only the caller reads: with this end closed here, a write to a dead caller fails fast
    os.setsid()  # own process group: signals for the caller's terminal never reach Lava's processes
    _die_with_parent(parent)
    try:
        kwargs = {"progress": lambda done, total: conn.send(("progress", done, total))} if with_progress else {}
        result = fn(*args, **kwargs)
        conn.send(("ok", result))
    except BaseException as e:  # report everything; the caller turns it into a BackendError
        conn.send(("error", type(e).__name__, str(e).splitlines()[0] if str(e) else "", traceback.format_exc()))
    finally:
        conn.close()


def _terminate(proc, pgid: int) -> None:
    """End the worker's process group: SIGTERM, then SIGKILL for whatever is left; reap the worker."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not group_members(pgid) and not proc.is_alive():
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:  # the worker has not called setsid yet: it is alone
            proc.kill()
        end = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < end and (group_members(pgid) or proc.is_alive()):
            proc.join(POLL_S)
    proc.join(KILL_GRACE_S)


def run_supervised(fn: Callable, args: tuple = (), *, timeout: float | None = None, what: str = "Lava run",
                   progress: Callable[[int, int], None] | None = None) -> Any:
    """``fn(*args)`` in a forked worker in its own process group; returns its result or raises
    :class:`BackendError` (the worker's exception, a dead Lava process, or ``timeout`` seconds
    passed). ``KeyboardInterrupt`` in the caller propagates after the group is terminated. With
    ``progress``, ``fn`` is called with ``progress=report`` and each ``report(done, total)`` in the
    worker calls ``progress(done, total)`` here."""
    ctx = mp.get_context("fork")  # Lava needs fork (its message infrastructure); the worker inherits the shim
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(send, recv, os.getpid(), fn, args, progress is not None),
                       name="spikefit-lava-worker")
    proc.start()
    send.close()
    pgid = proc.pid
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    message = None
    try:
        while message is None:
            if recv.poll(POLL_S):
                try:
                    message = recv.recv()
                except EOFError:
                    proc.join(1.0)
                    raise BackendError(f"the {what} worker exited with status {proc.exitcode} without a result; "
                                       "run again, and report it if it repeats") from None
                if message[0] == "progress":
                    if progress is not None:
                        progress(message[1], message[2])
                    message = None
                    continue
                break
            if not proc.is_alive():
                raise BackendError(f"the {what} worker exited with status {proc.exitcode} without a result; "
                                   "run again, and report it if it repeats")
            dead = failed_children(proc.pid)
            if dead:
                pid, status = dead[0]
                raise BackendError(f"a Lava process (pid {pid}) died with wait status {status} during the {what}, "
                                   "which Lava cannot recover from; the run was stopped")
            if deadline is not None and time.monotonic() > deadline:
                raise BackendError(f"the {what} did not finish within the timeout of {timeout:g} s; "
                                   "pass a larger timeout or run fewer samples")
    finally:
        recv.close()
        if message is not None and message[0] == "ok":
            proc.join(STOP_GRACE_S)  # the worker stops Lava and exits by itself
        _terminate(proc, pgid)
    if message[0] == "error":
        _, name, text, _trace = message
        raise BackendError(f"the {what} failed: {name}: {text}")
    return message[1]
