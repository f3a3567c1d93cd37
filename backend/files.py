"""Crash-safe file writes, the one ``flock`` helper, JSON-lines reading and artifact hashing."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash at any instant leaves the old or the new file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp name of its own per write (mkstemp's random suffix, created O_EXCL): two threads of one
    # process writing the same path must never rename each other's half-written file into place.
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it 0600; the files we replace are readable by others
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path, *, thread_lock: threading.Lock | threading.RLock | None = None,
           append: bool = False) -> Iterator[int]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) and yield its open fd.

    Lock a file that is never replaced: a process blocked on the lock of a
    file that is then replaced wakes up holding the lock of an unlinked file.
    ``thread_lock`` is taken first, because ``flock`` does not exclude threads
    that each open the file; ``append`` opens it O_APPEND for callers that
    write their lines to the locked file itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | (os.O_APPEND if append else 0)
    with thread_lock if thread_lock is not None else contextlib.nullcontext():
        fd = os.open(path, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # also releases the flock


class StateFile:
    """A small JSON state file shared by processes: read without a lock (it is replaced whole), changed under one.

    ``changing()`` holds ``.<name>.lock`` beside it (never the file itself, which
    ``write`` replaces atomically), so a read-modify-write in one process never
    interleaves with another's. Not re-entrant: a second ``changing()`` in the
    same thread would wait for itself.
    """

    def __init__(self, path: Path, what: str):
        self.path = path
        self._what = what  # for the warning when a hand edit broke the file
        self._lock_path = path.with_name(f".{path.stem}.lock")
        self._thread_lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        """The state as last written; {} when there is none, or when a hand edit broke it (logged)."""
        try:
            state = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError:  # written atomically, so only a hand edit breaks it: start again rather than stop serving
            logging.getLogger(__name__).warning("%s is not JSON; %s starts again", self.path, self._what)
            return {}
        return state if isinstance(state, dict) else {}

    def write(self, state: dict[str, Any], default: Any = None) -> None:
        """Replace the file atomically (NaN refused; ``default`` as json.dumps takes it)."""
        atomic_write(self.path, json.dumps(state, allow_nan=False, default=default).encode("utf-8"))

    def changing(self) -> contextlib.AbstractContextManager[int]:
        """Hold the state's lock across processes and threads for a read-modify-write."""
        return locked(self._lock_path, thread_lock=self._thread_lock)


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """Return the JSON object on one line, or None for a blank, torn or garbled line."""
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # a torn line from a crashed writer: skip it, keep the rest readable
    return value if isinstance(value, dict) else None


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Return every JSON object of a JSON-lines file, oldest first, skipping torn lines; [] when it is missing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    return [value for line in raw.split(b"\n") if (value := parse_line(line)) is not None]


def end_torn_line(fd: int) -> None:
    """End a torn last line (left by a killed writer) of a file open O_APPEND, so the next line starts fresh."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
