"""The prediction log: every answered prediction of one model, kept for feedback (CONTRACT §9).

Layout: ``<modelsDir>/<m>/predictions/<hour>-<pid>-<n>.jsonl``. Each serving
process appends to its own segment file (one per hour, a new one past a size
bound), one JSON line per request, with one ``os.write`` to an ``O_APPEND``
descriptor: no lock between processes, no fsync, about ten microseconds.
Because a process is the only writer of its segment, it knows the byte offset
each line starts at, and the prediction id names it: ``<segment>.<offset>.<row>``.
Finding a prediction is one seek and one line read, whatever the log's size,
from any process; the line's own ``id`` is compared so a forged or stale id
finds nothing. A crash can leave a torn last line, which no id names.

Labels that came back through feedback are kept beside their segment
(``<segment>.labels.jsonl``), appended by ``record_labels`` under the model's
feedback lock, so a second label for the same prediction is refused.

Retention: segments older than ``keepHours`` are deleted by ``prune`` (the
scheduler leader calls it), then the oldest ones until the folder is under
``maxMegabytes``. A writer whose segment was deleted notices and starts a new one.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

log = logging.getLogger(__name__)

SEGMENT = re.compile(r"^(\d{10})-(\d{1,10})-(\d{1,6})$")
PREDICTION_ID = re.compile(r"^(\d{10}-\d{1,10}-\d{1,6})\.(\d{1,15})\.(\d{1,6})$")
LINE_LIMIT = 64 * 1024 * 1024  # a 10,000-row batch of wide rows stays well below this
_CHECK_EVERY = 256  # appends between checks that our segment still exists


@dataclass(frozen=True)
class Logged:
    """One logged prediction (one row of a request)."""

    prediction_id: str
    timestamp: str
    version: str
    features: dict[str, Any]
    output: Any
    probabilities: dict[str, float] | None
    experiment: str | None
    label: Any = None
    labelled: bool = False

    def public(self) -> dict[str, Any]:
        """The answer of ``GET /api/<m>/predictions/<id>``."""
        out = {"prediction_id": self.prediction_id, "timestamp": self.timestamp, "version": self.version,
               "features": self.features, "output": self.output}
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
        if self.experiment is not None:
            out["experiment"] = self.experiment
        if self.labelled:
            out["label"] = self.label
        return out


def _hour(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PredictionLog:
    """Append and look up one model's predictions; this process writes its own segment."""

    def __init__(self, folder: Path, keep_hours: float, max_megabytes: int,
                 clock: Callable[[], dt.datetime] = _now):
        self.folder = folder
        self.keep = dt.timedelta(hours=keep_hours)
        self.max_bytes = max_megabytes * 1024 * 1024
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segment = ""
        self._hour = ""
        self._offset = 0
        self._writes = 0
        self._pid = 0
        self._labels: dict[str, tuple[int, dict[str, Any]]] = {}  # segment -> (bytes read, labels by id)

    # -- writing ---------------------------------------------------------------------------------

    def append(self, version: str, features: tuple[str, ...], rows: list[list[Any]], outputs: list[Any],
               probabilities: list[dict[str, float]] | None, experiment: str | None = None) -> list[str]:
        """Log one answered request (its rows, in ``features`` order) and return one prediction id per row."""
        now = self._clock()
        # everything but the id is encoded outside the lock; the id is spliced in front
        body = orjson.dumps({"t": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "v": version,
                             "f": features, "x": rows, "y": outputs, "p": probabilities, "e": experiment})
        with self._lock:
            if self._fd is None or _hour(now) != self._hour or os.getpid() != self._pid or self._stale():
                self._open(now)
            base = f"{self._segment}.{self._offset}"
            line = b'{"id":"' + base.encode("ascii") + b'",' + body[1:] + b"\n"
            os.write(self._fd, line)
            self._offset += len(line)
            self._writes += 1
        return [f"{base}.{i}" for i in range(len(rows))]

    def _stale(self) -> bool:
        """Every so often, whether our segment was deleted (by prune) or passed its size bound."""
        if self._writes % _CHECK_EVERY:
            return False
        return self._offset > self.max_bytes // 32 or os.fstat(self._fd).st_nlink == 0

    def _open(self, now: dt.datetime) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.folder.mkdir(parents=True, exist_ok=True)
        hour, pid = _hour(now), os.getpid()
        number = 0 if hour != self._hour or pid != self._pid else int(self._segment.rsplit("-", 1)[1]) + 1
        while True:
            name = f"{hour}-{pid}-{number}"
            path = self.folder / f"{name}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            size = os.fstat(fd).st_size
            if size <= self.max_bytes // 32:
                break
            os.close(fd)  # left by an earlier process with our pid: full, take the next number
            number += 1
        if size:  # an earlier process with our pid may have died mid-line: never glue onto its torn tail
            with open(path, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    os.write(fd, b"\n")
                    size += 1
        self._fd, self._segment, self._hour, self._pid, self._offset, self._writes = fd, name, hour, pid, size, 1

    def close(self) -> None:
        """Close this process's segment (at shutdown)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- reading ---------------------------------------------------------------------------------

    def lookup(self, prediction_id: str) -> Logged | None:
        """The logged prediction with this id; None when unknown, malformed, torn or expired."""
        match = PREDICTION_ID.match(prediction_id) if isinstance(prediction_id, str) else None
        if match is None:
            return None
        segment, offset, row = match.group(1), int(match.group(2)), int(match.group(3))
        entry = self._line(segment, offset)
        if entry is None or entry.get("id") != f"{segment}.{offset}" or row >= len(entry.get("y") or []):
            return None
        timestamp = entry["t"]
        if _parse_time(timestamp) < self._clock() - self.keep:
            return None
        labels = self._labels_of(segment)
        probabilities = entry.get("p")
        return Logged(
            prediction_id=prediction_id, timestamp=timestamp, version=entry["v"],
            features=dict(zip(entry["f"], entry["x"][row])), output=entry["y"][row],
            probabilities=probabilities[row] if probabilities else None, experiment=entry.get("e"),
            label=labels.get(prediction_id), labelled=prediction_id in labels,
        )

    def _line(self, segment: str, offset: int) -> dict[str, Any] | None:
        try:
            with open(self.folder / f"{segment}.jsonl", "rb") as handle:
                handle.seek(offset)
                raw = handle.readline(LINE_LIMIT)
        except (FileNotFoundError, OSError, ValueError):
            return None
        if not raw.endswith(b"\n"):
            return None  # torn by a crash, or not a line start
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return entry if isinstance(entry, dict) else None

    # -- labels ----------------------------------------------------------------------------------

    def _labels_of(self, segment: str) -> dict[str, Any]:
        """The labels recorded for a segment's predictions, read incrementally and cached."""
        path = self.folder / f"{segment}.labels.jsonl"
        read, labels = self._labels.get(segment, (0, {}))
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            self._labels.pop(segment, None)
            return {}
        if size < read:  # replaced: read again
            read, labels = 0, {}
        if size > read:
            with open(path, "rb") as handle:
                handle.seek(read)
                chunk = handle.read(size - read)
            complete = chunk.rfind(b"\n") + 1
            labels = dict(labels)
            for raw in chunk[:complete].splitlines():
                try:
                    item = orjson.loads(raw)
                    labels[item["id"]] = item["label"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
            read += complete
            self._labels[segment] = (read, labels)
        return labels

    def record_labels(self, items: Iterable[tuple[str, Any]]) -> None:
        """Durably note that these predictions got their labels (the caller holds the model's feedback lock)."""
        by_segment: dict[str, list[bytes]] = {}
        stamp = self._clock().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for prediction_id, label in items:
            segment = prediction_id.split(".", 1)[0]
            by_segment.setdefault(segment, []).append(
                orjson.dumps({"id": prediction_id, "label": label, "t": stamp}) + b"\n")
        for segment, lines in by_segment.items():
            fd = os.open(self.folder / f"{segment}.labels.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- retention -------------------------------------------------------------------------------

    def prune(self) -> list[str]:
        """Delete segments (and their labels) past ``keepHours``, then the oldest while over ``maxMegabytes``."""
        if not self.folder.is_dir():
            return []
        segments: dict[str, list[Path]] = {}
        for path in self.folder.iterdir():
            name = path.name.split(".", 1)[0]
            if SEGMENT.match(name):
                segments.setdefault(name, []).append(path)
        cutoff = self._clock() - self.keep
        order = sorted(segments, key=lambda n: tuple(int(p) for p in n.split("-")))
        deleted: list[str] = []
        sizes = {n: sum(_size(p) for p in segments[n]) for n in order}
        total = sum(sizes.values())
        for name in order:
            hour_end = dt.datetime.strptime(name[:10], "%Y%m%d%H").replace(tzinfo=dt.timezone.utc) + dt.timedelta(hours=1)
            expired = hour_end <= cutoff
            if not expired and total <= self.max_bytes:
                break
            if not expired and name == self._segment:
                continue  # our own live segment: over the size bound it rotates by itself
            for path in segments[name]:
                path.unlink(missing_ok=True)
            self._labels.pop(name, None)
            total -= sizes[name]
            deleted.append(name)
        if deleted:
            log.info("prediction log %s: deleted %d old segment(s)", self.folder, len(deleted))
        return deleted


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
