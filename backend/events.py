"""The event journal the console streams: every history event, job change and notification, numbered.

``GET /api/events`` must give every listener the same ids, whichever gunicorn
worker (a process of its own) answers it, and ``Last-Event-ID`` must resume
from any of them. So the ids come from one file shared by every process,
``<modelsDir>/events.jsonl``: each entry is appended as one line
``{"id", "event", "model", "data"}`` under an exclusive ``flock`` of
``.events.lock`` (never of the journal itself, which compaction replaces),
taking the next number after the last line. It is bounded: once it holds
``2 * keep`` entries it is rewritten atomically with the newest ``keep``, so at
least ``keep`` (1000) can always be replayed.

A ``Follower`` tails the journal by byte offset; when compaction replaced the
file it reopens it and skips what it has already seen, by id. A failed append
(a full disk) is logged and dropped: the console is told less, but no training
or request fails for it.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

from .files import atomic_write, end_torn_line, locked, parse_line

log = logging.getLogger(__name__)

KINDS = ("history", "job", "notification")
KEEP = 1000
_BLOCK = 64 * 1024


class EventJournal:
    """Append numbered console events to one file shared by every process, and read them back."""

    def __init__(self, path: Path, keep: int = KEEP):
        self.path = path
        self.keep = keep
        self._lock_path = path.with_name(".events.lock")
        self._thread_lock = threading.Lock()

    def append(self, kind: str, model: str, data: dict[str, Any]) -> int | None:
        """Journal one event under the next id and return the id (None when the disk refused it)."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        try:
            with locked(self._lock_path, thread_lock=self._thread_lock):
                first, last = _first_id(self.path), _last_id(self.path)
                entry = {"id": last + 1, "event": kind, "model": model, "data": data}
                line = (json.dumps(entry, default=str, allow_nan=False) + "\n").encode("utf-8")
                if first and last - first + 1 >= 2 * self.keep:
                    kept = self.entries()[-(self.keep - 1):]
                    atomic_write(self.path, b"".join(_encode(e) for e in kept) + line)
                else:
                    fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                    try:
                        end_torn_line(fd)
                        os.write(fd, line)
                    finally:
                        os.close(fd)
                return entry["id"]
        except (OSError, ValueError) as exc:  # ValueError: a value JSON cannot hold (NaN); never the caller's failure
            log.warning("console event %s of %s not journalled: %s", kind, model, exc)
            return None

    def entries(self, after: int = 0) -> list[dict[str, Any]]:
        """Every kept entry with an id above ``after``, oldest first."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [e for line in raw.split(b"\n") if (e := parse_line(line)) is not None and e.get("id", 0) > after]

    def last_id(self) -> int:
        """The id of the newest entry (0 when there is none)."""
        return _last_id(self.path)

    def follow(self, after: int | None = None) -> Follower:
        """A reader of the entries after id ``after``; None: only those appended from now on."""
        return Follower(self.path, self.last_id() if after is None else after)


class Follower:
    """Tail the journal from a known id; ``poll`` returns what was appended since the last call."""

    def __init__(self, path: Path, after: int):
        self.path = path
        self.last_id = after
        self._inode: int | None = None
        self._offset = 0
        self._pending = b""

    def poll(self) -> list[dict[str, Any]]:
        """The entries appended since the last poll, oldest first (one ``stat`` when there are none)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return []
        if info.st_ino != self._inode or info.st_size < self._offset:  # new, or replaced by compaction
            self._inode, self._offset, self._pending = info.st_ino, 0, b""
        if info.st_size == self._offset:
            return []
        with open(self.path, "rb") as handle:
            if os.fstat(handle.fileno()).st_ino != self._inode:  # replaced between the stat and the open
                return []
            handle.seek(self._offset)
            chunk = handle.read(info.st_size - self._offset)
        self._offset += len(chunk)
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()  # a line still being written, completed by a later poll
        found = []
        for raw in lines:
            entry = parse_line(raw)
            if entry is not None and entry.get("id", 0) > self.last_id:
                found.append(entry)
                self.last_id = entry["id"]
        return found


def sse(entry: dict[str, Any]) -> str:
    """One entry as a Server-Sent Event: its id, its kind as the event name, the object itself as data."""
    return f"id: {entry['id']}\nevent: {entry['event']}\ndata: {json.dumps(entry['data'], default=str)}\n\n"


def _encode(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, default=str) + "\n").encode("utf-8")


def _first_id(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_BLOCK)
    except FileNotFoundError:
        return 0
    for raw in head.split(b"\n"):
        entry = parse_line(raw)
        if entry is not None:
            return int(entry.get("id", 0))
    return 0


def _last_id(path: Path) -> int:
    """The id on the last whole line, reading backwards in growing blocks (lines are a few kB)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        step = _BLOCK
        while True:
            start = max(0, size - step)
            handle.seek(start)
            lines = handle.read(size - start).split(b"\n")
            if start > 0:
                lines.pop(0)  # may begin mid-line
            for raw in reversed(lines):
                entry = parse_line(raw)
                if entry is not None:
                    return int(entry.get("id", 0))
            if start == 0:
                return 0
            step *= 4


class StreamGate:
    """This process's open event streams: at most ``limit``, one tail of the journal for all, one switch to end them.

    Each stream holds a request thread while it is open (gunicorn gthread), so
    ``serve`` gives every worker ``limit`` threads beside ``--threads`` and the
    gate refuses stream number ``limit + 1`` (503): predictions always keep
    their threads. One thread per process tails the journal (every ``poll``
    seconds) and wakes the streams only when it grew, so twenty open tabs cost
    one ``stat`` per poll, not twenty, and their threads sleep until there is
    something to send: they never take the interpreter from a prediction for
    nothing. ``stop`` (SIGTERM) ends every stream within one poll.
    """

    def __init__(self, limit: int, journal: EventJournal, *, poll: float = 0.25, keep: int = KEEP):
        self.limit = limit
        self.journal = journal
        self.stopping = threading.Event()
        self._poll = poll
        self._open = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        # what the tail has seen, for every stream; each entry also holds its "sse" text, encoded once
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._tail: threading.Thread | None = None

    def enter(self) -> bool:
        """Take a slot for a new stream; False when every slot is taken or the process is stopping."""
        with self._lock:
            if self._open >= self.limit or self.stopping.is_set():
                return False
            self._open += 1
            if self._tail is None:
                follower = self.journal.follow()
                self._tail = threading.Thread(target=self._follow, args=(follower,), name="refit-events", daemon=True)
                self._tail.start()
            return True

    def leave(self) -> None:
        """Give a stream's slot back."""
        with self._lock:
            self._open -= 1

    @property
    def open(self) -> int:
        """How many streams are open now."""
        return self._open

    def stop(self) -> None:
        """End every open stream and refuse new ones (safe in a signal handler: it only sets an event)."""
        self.stopping.set()

    def _follow(self, follower: Follower) -> None:
        while True:
            stopping = self.stopping.wait(self._poll)
            found = [] if stopping else follower.poll()
            for entry in found:  # encoded once here, not once per open stream
                entry["sse"] = sse(entry)
            if found or stopping:
                with self._changed:
                    self._recent.extend(found)
                    self._changed.notify_all()
            if stopping:
                return

    def after(self, last_id: int) -> list[dict[str, Any]]:
        """The entries after ``last_id``: from what the tail holds, or from the file when that begins later."""
        with self._changed:
            if self._recent and self._recent[0]["id"] <= last_id + 1:
                return [e for e in self._recent if e["id"] > last_id]
            if self._recent and self._recent[-1]["id"] <= last_id:
                return []
        return self.journal.entries(after=last_id)  # a replay from before the tail started (or a slow reader)

    def wait(self, last_id: int, timeout: float) -> None:
        """Sleep until an entry after ``last_id`` arrives, the gate stops, or ``timeout`` seconds pass."""
        with self._changed:
            self._changed.wait_for(lambda: self.stopping.is_set() or
                                   bool(self._recent and self._recent[-1]["id"] > last_id), timeout)
