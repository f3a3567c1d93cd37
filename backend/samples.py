"""A model's sample store: the ``logFile`` CSV, appended to by us and by others.

Appends are all-or-nothing: a batch is rendered to one bytes object and
written with a single ``write`` under an exclusive ``flock``, then fsynced
before we acknowledge it. Counting is incremental: we remember the byte
offset of the last complete record and only parse what was appended since,
so a scheduler tick costs the size of the new rows, not of the file. The file
is rescanned only when it was replaced, truncated or rewritten in place.

Outside processes may append to the file too, without our lock. A line one of
them is still writing is waited for (bounded; else 503 ``store_busy``), and a
line one of them left torn when it died is ended before ours, so their row and
ours never share a record. The store also owns the file's columns and the kind
(numeric or categorical) of each feature as the data so far shows it.
"""
from __future__ import annotations

import errno
import fcntl
import io
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import pandas as pd

from . import quality
from .csvrecords import check_storable, count_complete_records, read_header, render_rows, unstorable
from .errors import Conflict, InsufficientStorage, Invalid, Unavailable

_BLOCK = 1 << 20
_FINGERPRINT = 64
# Feature kinds are judged on the file's first rows, as the first training's data would show them.
KIND_ROWS = 200
# An outside writer whose torn line has not changed for this long is taken to be dead.
QUIET_SECONDS = 2.0
# How long an append waits for an outside writer to finish its line before answering 503.
BUSY_SECONDS = 3.0
_POLL_SECONDS = 0.05


class StoreBusy(Unavailable):
    """An outside writer is still writing the file's last line; retry after ``retry_after`` seconds."""

    code = "store_busy"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


@dataclass
class _Cursor:
    """Where the last count stopped: a record boundary in one particular file."""

    device: int = -1
    inode: int = -1
    offset: int = 0
    records: int = 0  # header included
    fingerprint: bytes = b""


class SampleStore:
    """Durable appends to, cheap counts of, and the columns and feature kinds of one sample CSV."""

    def __init__(self, path: Path, columns: list[str], *, quiet_seconds: float = QUIET_SECONDS,
                 busy_seconds: float = BUSY_SECONDS):
        """``columns`` is the header a new file gets: the configured features, then the target (alone when
        no features are configured, and the first batch's fields fix the header)."""
        self.path = path
        self.target = columns[-1]
        self._features = tuple(columns[:-1]) or None
        self.quiet_seconds = quiet_seconds
        self.busy_seconds = busy_seconds
        self._lock = threading.Lock()  # guards the cursor, the kinds cache and the creation of the file
        self._cursor = _Cursor()
        self._generation = 0  # bumped whenever the cursor finds the file replaced or rewritten
        self._kinds: tuple[int, int, Mapping[str, str]] | None = None  # (generation, rows judged, kinds)

    def columns(self) -> list[str] | None:
        """Return the file's header, else the configured columns; None while neither is known."""
        header = read_header(self.path)
        if header:
            return header
        return [*self._features, self.target] if self._features else None

    def features(self) -> list[str] | None:
        """Return the feature columns a sample row carries (target excluded), or None while not yet known."""
        if self._features:
            return list(self._features)
        header = read_header(self.path)
        return [c for c in header if c != self.target] if header else None

    def kinds(self) -> Mapping[str, str]:
        """Map each known feature to 'numeric' or 'categorical' as the file's first rows show them.

        Cached: judged again only when the file was replaced, or has grown while
        it had fewer than KIND_ROWS rows (later rows never change the answer).
        """
        rows, offset = self.snapshot()
        with self._lock:
            generation, cached = self._generation, self._kinds
        if cached is not None and cached[0] == generation and (cached[1] == rows or cached[1] >= KIND_ROWS):
            return cached[2]
        kinds = MappingProxyType(self._judge_kinds(offset))
        with self._lock:
            if self._generation == generation:
                self._kinds = (generation, min(rows, KIND_ROWS), kinds)
        return kinds

    def _judge_kinds(self, offset: int) -> dict[str, str]:
        try:
            with open(self.path, "rb") as handle:
                head = pd.read_csv(io.BytesIO(handle.read(offset)) if offset < _BLOCK else handle, nrows=KIND_ROWS,
                                   encoding="utf-8-sig", on_bad_lines="skip")
        except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            return {}
        if head.empty:
            return {}
        head.columns = [str(c).strip() for c in head.columns]
        wanted = self.features() or [c for c in head.columns if c != self.target]
        return {c: "numeric" if quality.is_numeric(head[c]) else "categorical" for c in wanted if c in head.columns}

    def count(self) -> int:
        """Return the number of complete sample rows in the file now."""
        return self.snapshot()[0]

    def snapshot(self) -> tuple[int, int]:
        """Return (rows, byte offset) of the complete records in the file now.

        Training reads exactly ``offset`` bytes, so its row count agrees with
        this one even while another process is half-way through a line.
        """
        with self._lock:
            try:
                handle = open(self.path, "rb")
            except FileNotFoundError:
                self._reset(_Cursor())
                return 0, 0
            with handle:
                self._advance(handle)
            return max(0, self._cursor.records - 1), self._cursor.offset

    def _reset(self, cursor: _Cursor) -> None:
        if self._cursor.device != -1 or self._cursor.offset:
            self._generation += 1
        self._cursor = cursor

    def _advance(self, handle: io.BufferedReader) -> None:
        stat = os.fstat(handle.fileno())
        cursor = self._cursor
        replaced = (stat.st_dev, stat.st_ino) != (cursor.device, cursor.inode) or stat.st_size < cursor.offset
        if not replaced and cursor.fingerprint:
            handle.seek(cursor.offset - len(cursor.fingerprint))
            replaced = handle.read(len(cursor.fingerprint)) != cursor.fingerprint
        if replaced:
            cursor = _Cursor(device=stat.st_dev, inode=stat.st_ino)
            self._reset(cursor)
        handle.seek(cursor.offset)
        pending = b""
        while block := handle.read(_BLOCK):
            data = pending + block
            consumed, records = count_complete_records(data)
            cursor.offset += consumed
            cursor.records += records
            pending = data[consumed:]
        if cursor.offset:
            start = max(0, cursor.offset - _FINGERPRINT)
            handle.seek(start)
            cursor.fingerprint = handle.read(cursor.offset - start)
        self._cursor = cursor

    def append(self, rows: list[dict[str, Any]]) -> int:
        """Append ``rows`` durably and all at once; return the row count afterwards.

        Raises Invalid (422) for a text that cannot be stored exactly, Conflict
        when the file's header lacks a column, StoreBusy (503) when an outside
        writer keeps writing its last line; nothing is written then.
        """
        check_storable(rows)
        try:
            header = self._ensure_file(rows)
            missing = [c for c in [*(self._features or ()), self.target] if c not in header]
            extra = sorted({name for row in rows for name in row} - set(header))
            if missing or extra:
                problem = (f"no column(s) {', '.join(missing)}" if missing else
                           f"no column(s) {', '.join(extra)} for fields the samples carry")
                raise Conflict(
                    f"The sample file {self.path.name} has {problem}; "
                    "fix its header or the model's features in config.json.",
                    code="csv_schema_mismatch",
                    details={"missing_columns": missing or extra, "header": header},
                )
            payload = render_rows(header, rows)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            try:
                mend, size = self._lock_after_whole_line(fd)
                if size == 0:  # an empty file (truncated by someone): it gets its header back first
                    mend = render_rows(header, [dict(zip(header, header))])
                try:
                    _write_all(fd, mend + payload)
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # all-or-nothing: take back a partly written batch
                    raise
            finally:
                os.close(fd)  # closing releases the flock
        except OSError as exc:
            raise _storage_error(exc, self.path) from exc
        return self.count()

    def _lock_after_whole_line(self, fd: int) -> tuple[bytes, int]:
        """Take the file's flock once its last line is whole; return (bytes that end a dead writer's line, size).

        A torn last line that changed in the last ``quiet_seconds`` belongs to a
        writer still at work: we poll (letting go of the flock between polls, so
        our other appenders are not stuck behind us) until it ends the line, or it
        stays still long enough to be a dead writer's, or ``busy_seconds`` pass.
        """
        deadline = time.monotonic() + self.busy_seconds
        while True:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stat = os.fstat(fd)
            partial = self._torn_tail(fd, stat.st_size)
            if not partial:
                return b"", stat.st_size
            if time.time() - stat.st_mtime >= self.quiet_seconds:
                # a dead writer's line: end it (closing its open quote) so it is never glued to our first row
                return (b'"' if partial.count(b'"') % 2 else b"") + b"\n", stat.st_size
            fcntl.flock(fd, fcntl.LOCK_UN)
            if time.monotonic() >= deadline:
                retry = max(1, math.ceil(self.quiet_seconds))
                raise StoreBusy(f"Another process is still writing the last line of {self.path.name}; "
                                f"nothing was written, retry in {retry} s.", retry_after=retry)
            time.sleep(_POLL_SECONDS)

    def _torn_tail(self, fd: int, size: int) -> bytes:
        """Return the bytes after the file's last complete record (empty when it ends on a record boundary)."""
        _, offset = self.snapshot()
        if offset >= size:
            return b""
        tail = os.pread(fd, size - offset, offset)
        consumed, _ = count_complete_records(tail)
        return tail[consumed:]

    def _ensure_file(self, rows: list[dict[str, Any]]) -> list[str]:
        """Return the file's header; create the file first when there is none (the first batch may fix it)."""
        with self._lock:
            header = read_header(self.path)
            if header:
                return header
            columns = self.columns() or _columns_of(rows, self.target)
            if self.path.exists():
                return columns  # an empty file: append writes the header with the rows
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
            with open(temp, "wb") as handle:
                handle.write(render_rows(columns, [dict(zip(columns, columns))]))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, self.path)  # fails if another process created it first; theirs stands
            except FileExistsError:
                pass
            finally:
                temp.unlink()
            return read_header(self.path) or columns


def _columns_of(rows: list[dict[str, Any]], target: str) -> list[str]:
    """The header a first batch fixes when no features are configured: its fields in order, the target last."""
    names = [name for name in dict.fromkeys(k for row in rows for k in row) if name != target] + [target]
    bad = [name for name in names if unstorable(name) or "\r" in name or "\n" in name]
    if bad:
        raise Invalid(f"field name {bad[0]!r} cannot be a CSV column name", code="invalid_samples",
                      details={"errors": [{"row": 0, "field": bad[0], "error": "not a storable column name"}]})
    return names


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _storage_error(exc: OSError, path: Path) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return InsufficientStorage(f"No space left to store samples in {path.name}; nothing was written.",
                                   code="insufficient_storage")
    return Unavailable(f"Samples could not be written to {path.name}: {exc.strerror}; nothing was acknowledged.",
                       code="storage_unavailable")
