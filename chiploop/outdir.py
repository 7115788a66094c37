"""Output directories that are never silently replaced or written by two processes at once.

`claim(path, what)` takes an exclusive lock on a directory (`.lock` inside it, held through
`filelock`: an OS lock released when the process ends, so a killed run leaves no stale lock) and
refuses a second writer with one line. `write_guard(path)` turns an operating-system write failure
(read-only, disk full, no permission) into one `OutputError` naming the path;
`atomic_write_bytes` writes through a temporary file that never outlives the call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from chiploop.errors import ChiploopError

LOCK = ".lock"


class OutputError(ChiploopError):
    """An output directory cannot be used: taken by another process, not empty, or not writable."""


def entries(path: Path) -> list[str]:
    """What a directory holds besides its lock file ([] if it does not exist)."""
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.name != LOCK)


@contextmanager
def claim(path: Path, what: str) -> Iterator[None]:
    """Hold `path` (created if missing) for this process; another holder -> OutputError."""
    with write_guard(path):
        path.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(path / LOCK, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise OutputError(
                f"{what} {path} is in use by another chiploop process; wait for it to end or choose another"
                " --out"
            ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def write_guard(target: Path, temporary: Path | None = None) -> Iterator[None]:
    """Run a write to `target` (through `temporary`, if given); an OSError becomes one OutputError
    naming the file the user knows: `target`, not its temporary."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = target if exc.filename in (None, str(temporary)) else exc.filename
        raise OutputError(f"cannot write {where}: {reason}") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file and `os.replace`: the old content survives any failure
    (an OSError, or an interrupt mid-write), and no temporary file is left behind."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with write_guard(path, tmp):
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
