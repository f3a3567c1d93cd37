"""The training history log: one JSON object per line, appended, never rewritten.

Each event is encoded to one bytes object and handed to a single ``write`` on
a file opened with O_APPEND while holding an exclusive ``flock``, so lines from
threads and processes never interleave and a reader (``tail -f | jq``) only
ever sees whole lines. Locking the log itself is safe because it is never
replaced. Readers skip a torn last line left by a crash (``files.parse_line``).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .files import end_torn_line, locked, parse_line

if TYPE_CHECKING:
    from .events import EventJournal

EVENT_TYPES = (
    "TRAINING_STARTED",
    "TRAINING_COMPLETED",
    "TRAINING_FAILED",
    "TRAINING_SKIPPED",
    "MODEL_PROMOTED",
    "MODEL_REJECTED",
    "MODEL_ACTIVATED",
    "MODEL_ROLLED_BACK",
    "MODEL_LOAD_FAILED",
    "MODEL_PRUNED",
    "DRIFT_DETECTED",
    "MODEL_STAGED",
    "EXPERIMENT_STARTED",
    "EXPERIMENT_CONCLUDED",
)

_BLOCK = 64 * 1024
events_log = logging.getLogger("refit.events")  # the console's story of training (see cli serve)
# the details worth a place on the console line, in this order
_CONSOLE_DETAILS = ("version", "trigger", "n_samples", "job_id", "reason", "error")


def utc_now() -> str:
    """Return the current time as ISO 8601 in UTC with its offset."""
    return datetime.now(timezone.utc).isoformat()


class HistoryLog:
    """Append and read events of one JSON-lines file (several models may share it)."""

    def __init__(self, path: Path, journal: EventJournal | None = None):
        self.path = path
        self.journal = journal  # the console's event stream (events.py), told of every event
        self._lock = threading.Lock()

    def append(self, event_type: str, model: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write one event as one whole line and return it."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        event = {
            "timestamp": utc_now(),
            "event_type": event_type,
            "model": model,
            "message": message,
            "details": details or {},
        }
        line = (json.dumps(event, default=str, allow_nan=False) + "\n").encode("utf-8")
        with locked(self.path, thread_lock=self._lock, append=True) as fd:
            end_torn_line(fd)
            os.write(fd, line)
        if self.journal is not None:
            self.journal.append("history", model, event)
        # a skipped tick says nothing new on the console; it stays in the history log
        level = logging.DEBUG if event_type == "TRAINING_SKIPPED" else logging.INFO
        if events_log.isEnabledFor(level):
            events_log.log(level, "%s %s: %s%s", model, event_type, message, _details_text(event["details"]))
        return event

    def tail(self, model: str | None = None, limit: int | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
        """Return the newest ``limit`` matching events, oldest first.

        Reads backwards from the end in blocks, so the cost follows ``limit``
        rather than the size of a log that grows for years.
        """
        wanted: list[dict[str, Any]] = []
        for event in self._backwards():
            if model is not None and event.get("model") != model:
                continue
            if event_type is not None and event.get("event_type") != event_type:
                continue
            wanted.append(event)
            if limit is not None and len(wanted) >= limit:
                break
        wanted.reverse()
        return wanted

    def _backwards(self) -> Iterator[dict[str, Any]]:
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return
        with handle:
            position = handle.seek(0, os.SEEK_END)
            carry = b""
            while position > 0:
                step = min(_BLOCK, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + carry
                lines = chunk.split(b"\n")
                carry = lines.pop(0)
                for raw in reversed(lines):
                    event = parse_line(raw)
                    if event is not None:
                        yield event
            event = parse_line(carry)
            if event is not None:
                yield event


def _details_text(details: dict[str, Any]) -> str:
    parts = [f"{key} {details[key]}" for key in _CONSOLE_DETAILS if details.get(key) not in (None, "")]
    metric = details.get("metric")
    if isinstance(details.get(metric), float):
        parts.append(f"{metric} {details[metric]:.4f}")
    return f" ({', '.join(parts)})" if parts else ""
