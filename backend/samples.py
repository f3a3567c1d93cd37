"""A model's sample store: the ``logFile`` CSV, appended to by us and by others.

Appends are all-or-nothing: a batch is rendered to one bytes object and
written with a single ``write`` under an exclusive ``flock``, then fsynced
before we acknowledge it. Counting is incremental: we remember the byte
offset of the last complete record and only parse what was appended since,
so a scheduler tick costs the size of the new rows, not of the file. The file
is rescanned only when it was replaced, truncated or rewritten in place.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import io
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .errors import Conflict, InsufficientStorage, Unavailable

_BLOCK = 1 << 20
_FINGERPRINT = 64


@dataclass
class _Cursor:
    """Where the last count stopped: a record boundary in one particular file."""

    device: int = -1
    inode: int = -1
    offset: int = 0
    records: int = 0  # header included
    fingerprint: bytes = b""


def count_complete_records(data: bytes) -> tuple[int, int]:
    """Return (bytes consumed, non-blank records) for the complete records in ``data``.

    ``data`` starts on a record boundary. A record ends at a newline outside
    double quotes; quoted newlines belong to the field. Blank lines are
    consumed but not counted, as pandas skips them.
    """
    if b'"' not in data:
        end = data.rfind(b"\n") + 1
        if end == 0:
            return 0, 0
        lines = data[:end].split(b"\n")
        lines.pop()
        return end, len(lines) - lines.count(b"") - lines.count(b"\r")
    consumed = records = position = 0
    in_quotes = has_content = False
    for index, part in enumerate(data.split(b'"')):
        if index:
            in_quotes = not in_quotes
            has_content = True
            position += 1
        if in_quotes:
            has_content = has_content or bool(part)
        else:
            start = 0
            while (newline := part.find(b"\n", start)) >= 0:
                if has_content or part[start:newline] not in (b"", b"\r"):
                    records += 1
                has_content = False
                consumed = position + newline + 1
                start = newline + 1
            has_content = has_content or bool(part[start:])
        position += len(part)
    return consumed, records


def render_rows(columns: list[str], rows: Iterable[dict[str, Any]]) -> bytes:
    """Render rows as CSV records in ``columns`` order; None and absent columns are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite numbers are never stored")
        return repr(value)
    return str(value)


def read_header(path: Path) -> list[str] | None:
    """Return the CSV's column names, or None when the file is missing or has no header yet."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 20)
    except FileNotFoundError:
        return None
    text = first.decode("utf-8-sig", errors="replace").strip("\r\n")
    if not text.strip():
        return None
    return next(csv.reader([text]))


class SampleStore:
    """Durable appends to, and cheap counts of, one sample CSV."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns  # what a new file's header holds: features then target
        self._lock = threading.Lock()
        self._cursor = _Cursor()

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
                self._cursor = _Cursor()
                return 0, 0
            with handle:
                self._advance(handle)
            return max(0, self._cursor.records - 1), self._cursor.offset

    def _advance(self, handle: io.BufferedReader) -> None:
        stat = os.fstat(handle.fileno())
        cursor = self._cursor
        replaced = (stat.st_dev, stat.st_ino) != (cursor.device, cursor.inode) or stat.st_size < cursor.offset
        if not replaced and cursor.fingerprint:
            handle.seek(cursor.offset - len(cursor.fingerprint))
            replaced = handle.read(len(cursor.fingerprint)) != cursor.fingerprint
        if replaced:
            cursor = _Cursor(device=stat.st_dev, inode=stat.st_ino)
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
        """Append ``rows`` durably and all at once; return the row count afterwards."""
        try:
            self._ensure_file()
            header = read_header(self.path) or self.columns
            missing = [column for column in self.columns if column not in header]
            if missing:
                raise Conflict(
                    f"The sample file {self.path.name} has no column(s) {', '.join(missing)}; "
                    "fix its header or the model's features in config.json.",
                    code="csv_schema_mismatch",
                    details={"missing_columns": missing, "header": header},
                )
            payload = render_rows(header, rows)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # a writer died mid-line: end that line so our first row stays whole
                    payload = b"\n" + payload
                try:
                    _write_all(fd, payload)
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # all-or-nothing: take back a partly written batch
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise _storage_error(exc, self.path) from exc
        return self.count()

    def _ensure_file(self) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        with open(temp, "wb") as handle:
            handle.write(render_rows(self.columns, [dict(zip(self.columns, self.columns))]))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, self.path)  # fails if another writer created it first; theirs stands
        except FileExistsError:
            pass
        finally:
            temp.unlink()


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
