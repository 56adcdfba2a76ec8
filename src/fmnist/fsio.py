"""Atomic file writes: a reader never sees a half-written file, a crash never corrupts a good one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` keeps its old content. A ``path``
    that exists and is not a regular file (a device such as ``/dev/null``, a FIFO, a socket, a
    folder; or a link to one) is refused with an OSError before anything is written: renaming over
    it would replace the device node itself.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        st = None  # missing (or a dangling link): a new file
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EEXIST, "exists and is not a regular file; not replaced", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, usual_mode())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def cleanup_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into an exception while the block runs, so its ``finally`` cleanup runs.

    The default action of SIGTERM kills the process at once and leaves temporary files behind.
    Inside the block the first signal calls the handler that was installed before (the CLI's
    raises its own exception) or raises :class:`KeyboardInterrupt`; further signals are ignored
    so they cannot cut the cleanup short. A signal the process ignores stays ignored. The old
    handlers are restored on exit. Outside the main thread (where handlers cannot be set) it does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False
    old = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: Any) -> None:
        nonlocal fired
        if fired:
            return  # already unwinding: let the cleanup finish
        fired = True
        previous = old.get(signum)
        if callable(previous):
            previous(signum, frame)  # e.g. the CLI's handler, or Python's KeyboardInterrupt for SIGINT
        raise KeyboardInterrupt

    for sig, previous in old.items():
        if previous is not signal.SIG_IGN:
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in old.items():
            if previous is not signal.SIG_IGN:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (0666) or folder (0777) under the umask.

    ``tempfile.mkstemp``/``mkdtemp`` make 0600/0700; a temporary that becomes the final output
    should get this instead.
    """
    return (0o777 if directory else 0o666) & ~_umask()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and fsync: a JSONL log that a kill can only cut at a line boundary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """Read a JSONL log, ignoring a final partial line left by a kill.

    ``strict``: any other line that is not JSON raises ValueError naming it, for callers that must
    not take (and later append to) a file that is not their log; by default such lines are skipped.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if strict and number < len(lines):  # a complete line (the last one has no newline yet)
                raise ValueError(f"{path}: line {number} is not JSON") from None
    return rows
