"""Output paths checked before work starts, and a lock that keeps two fits out of one folder.

:func:`check_output_path` refuses, in one line, a path that cannot be written (under a file, in a
folder without write permission, too long for the file system) before any training or export runs.
:func:`output_lock` holds an exclusive ``flock`` on ``.NAME.lock`` beside the output folder for the
duration of a fit: a second fit writing the same ``--out`` stops at once, naming the first.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import SpikefitError

PATH_MAX = 4096   # Linux PATH_MAX, bytes
NAME_MAX = 255    # bytes of one path component on common file systems


class OutputPathError(SpikefitError, ValueError):
    """An output path that cannot be written, or one another process is writing."""


def _show(path) -> str:
    """A path short enough for a one-line message."""
    text = str(path)
    return text if len(text) <= 100 else f"{text[:48]}...{text[-40:]}"


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def check_output_path(path, option: str = "--out") -> Path:
    """``path`` if it can be created or overwritten; else an :class:`OutputPathError` naming the reason.

    Nothing is created: the nearest existing ancestor must be a folder this process may write in.
    """
    path = Path(path)
    raw = os.fsencode(path.absolute())
    if len(raw) >= PATH_MAX:
        raise OutputPathError(f"{option} path has {len(raw)} bytes, more than the {PATH_MAX - 1} a path may have; "
                              "choose a shorter path")
    ancestor = path.absolute().parent
    missing = [path.name]
    while True:
        try:
            os.stat(ancestor)
            break
        except FileNotFoundError:
            missing.append(ancestor.name)
            ancestor = ancestor.parent
        except NotADirectoryError:
            ancestor = ancestor.parent
        except OSError as e:
            raise OutputPathError(f"{option} '{_show(path)}': cannot look at '{ancestor}' ({e.strerror}); choose another "
                                  "path") from None
    if not ancestor.is_dir():
        raise OutputPathError(f"{option} '{_show(path)}' lies under '{ancestor}', which is a file, not a folder; choose a "
                              "path in a folder")
    for part in missing:
        if len(os.fsencode(part)) > _name_max(ancestor):
            raise OutputPathError(f"{option} '{_show(path)}': the name {part[:24]!r}... has {len(os.fsencode(part))} bytes, "
                                  f"more than the {_name_max(ancestor)} a file name may have; choose a shorter name")
    if path.exists():
        target = path if path.is_dir() else path.parent
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputPathError(f"{option} '{_show(path)}' is not writable (permission denied on '{target}'); choose a "
                                  "folder you can write in")
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} '{_show(path)}' cannot be created: '{ancestor}' is not writable (permission "
                              "denied); choose a folder you can write in")
    return path


@contextmanager
def output_lock(out, option: str = "--out"):
    """Hold ``.NAME.lock`` beside ``out`` exclusively; a second holder gets a one-line error at once."""
    import fcntl

    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputPathError(f"{option} '{_show(out)}' is being written by another fit (pid {_holder(lock)}, lock "
                                  f"'{lock}'); wait for it to finish or choose another {option}") from None
        try:  # the file we locked must still be the one at that path (a finishing holder unlinks it)
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(lock: Path) -> str:
    try:
        return lock.read_text(encoding="ascii").strip() or "?"
    except (OSError, UnicodeDecodeError):
        return "?"
