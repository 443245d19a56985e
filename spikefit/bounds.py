"""Input bounds, checked before any work starts (documented in ``docs/cli.md``).

Every number a user can hand spikefit has a range, every file a size, every nesting a depth, and
the memory a run will need is estimated and refused with a message when the machine cannot hold it.
"""
from __future__ import annotations

import os

from .errors import SpikefitError

SPEC_MAX_BYTES = 1 << 20   # a target spec TOML file: 1 MiB (the catalog's largest is ~3 KiB)
SPEC_MAX_DEPTH = 8         # nesting of tables and arrays in a spec ([rules.xylo] with a list is depth 3)
COUNT_MAX = 2 ** 40        # counts in a spec (neurons, synapses, ...) are below this: ~10^12, beyond any chip
BITS_MIN, BITS_MAX = 1, 32 # bit widths (weight_bits, state_bits, ...) of a spec and of a model
STEPS_MAX = 100_000        # time steps per sample on the command line
SEED_MAX = 2 ** 32 - 1     # seeds: numpy's and torch's generators accept 0 .. 2**32 - 1
MEMORY_FRACTION = 0.8      # a run may plan to use this share of the memory available now


class BoundsError(SpikefitError, ValueError):
    """A value outside its documented range, or work that cannot fit in memory."""


def bits_range_text() -> str:
    return f"{BITS_MIN}..{BITS_MAX}"


def nesting_depth(text: str) -> int:
    """Deepest nesting of ``[`` / ``{`` in TOML ``text``, outside strings and comments. Table headers
    count as one level (``[[a]]`` is two); enough to refuse a deep file before a recursive parser sees it."""
    depth = best = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "\"'":
            triple = text.startswith(c * 3, i)
            end = c * 3 if triple else c
            j = i + len(end)
            while j < n:
                if c == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(end, j):
                    break
                if not triple and text[j] == "\n":
                    break
                j += 1
            i = j + len(end)
            continue
        if c in "[{":
            depth += 1
            best = max(best, depth)
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return best


def data_depth(value) -> int:
    """Nesting depth of parsed data (dicts and lists), iteratively."""
    best, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict):
            todo += [(x, d + 1) for x in v.values()]
            best = max(best, d + 1)
        elif isinstance(v, list):
            todo += [(x, d + 1) for x in v]
            best = max(best, d + 1)
    return best


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse work that needs ``nbytes`` when the machine has less available (times MEMORY_FRACTION).

    :raises BoundsError: naming ``what`` needs how much, what is available, and ``fix``.
    """
    avail = available_memory()
    if avail is None or nbytes <= MEMORY_FRACTION * avail:
        return
    raise BoundsError(f"{what} needs about {_size(nbytes)} of memory but {_size(avail)} is available; {fix}")
