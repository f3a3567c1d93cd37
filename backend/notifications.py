"""Notifications: what a person should hear about, kept on disk and pushed to a webhook.

Each is ``{"id", "timestamp", "level", "model", "version", "event_type",
"message", "details"}`` with level success (promoted, activated, rolled
back, pruned), warning (trained but rejected) or error (failed, load failure).
They are appended as JSON lines under a lock, with integer ids handed out
under that lock, so several processes can share the file; it is compacted to
the newest ``keep`` when it doubles. The lock is ``.notifications.lock``
beside it, never the file itself: compaction replaces the file, and a process
blocked on a lock of the old file would write its line to an unlinked file.
Webhook and e-mail delivery (``mailer.py``) each run on their own thread
with a timeout and retries with backoff (``delivery.Outbox``): a slow or dead
receiver never blocks training or serving, and a failed delivery is logged,
not raised. Every stored notification is also journalled for the console's
event stream (``events.py``).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from .delivery import DeliveryFailed, Outbox
from .files import atomic_write, end_torn_line, locked, read_json_lines
from .history import utc_now

if TYPE_CHECKING:
    from .events import EventJournal
    from .mailer import Mailer

log = logging.getLogger(__name__)

LEVELS = ("success", "warning", "error")
LEVEL_OF_EVENT = {
    "MODEL_PROMOTED": "success",
    "MODEL_ACTIVATED": "success",
    "MODEL_ROLLED_BACK": "success",
    "MODEL_PRUNED": "success",
    "MODEL_REJECTED": "warning",
    "DRIFT_DETECTED": "warning",
    "MODEL_STAGED": "success",
    "EXPERIMENT_STARTED": "success",
    "EXPERIMENT_CONCLUDED": "success",
    "TRAINING_FAILED": "error",
    "MODEL_LOAD_FAILED": "error",
}


class Notifier:
    """Store notifications and deliver them to an optional webhook and by e-mail."""

    def __init__(self, path: Path, webhook_url: str | None = None, *, keep: int = 1000,
                 timeout_seconds: float = 5.0, attempts: int = 4, backoff_seconds: float = 0.5,
                 mailer: Mailer | None = None, journal: EventJournal | None = None):
        self.path = path
        self.webhook_url = webhook_url
        self.keep = keep
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._journal = journal
        self._webhook = Outbox("webhook", self._post, attempts=attempts, backoff_seconds=backoff_seconds)
        self._mailer = mailer
        self._mail = Outbox("e-mail", mailer.send, attempts=mailer.attempts, backoff_seconds=backoff_seconds) \
            if mailer is not None else None

    def from_event(self, event: dict[str, Any], active_version: str | None = None) -> dict[str, Any] | None:
        """Raise the notification a history event calls for, if any (``active_version``: what serves now)."""
        level = LEVEL_OF_EVENT.get(event["event_type"])
        if level is None:
            return None
        details = event.get("details") or {}
        if event["event_type"] == "MODEL_ROLLED_BACK" and details.get("reason") == "watch":
            level = "error"  # the server undid a promotion by itself: someone should look
        return self.notify(level, event["model"], details.get("version"), event["event_type"], event["message"], details,
                           active_version=active_version)

    def notify(self, level: str, model: str, version: str | None, event_type: str, message: str,
               details: dict[str, Any], *, active_version: str | None = None) -> dict[str, Any]:
        """Store one notification and queue it for the webhook and e-mail."""
        note = {"id": 0, "timestamp": utc_now(), "level": level, "model": model, "version": version,
                "event_type": event_type, "message": message, "details": details, "active_version": active_version}
        with locked(self.path.with_name(".notifications.lock"), thread_lock=self._lock):
            lines = read_json_lines(self.path)
            note["id"] = (lines[-1]["id"] + 1) if lines else 1
            line = json.dumps(note, default=str) + "\n"
            if len(lines) >= 2 * self.keep:
                kept = lines[len(lines) - (self.keep - 1):]  # not [-0:] when keep is 1
                atomic_write(self.path, ("".join(json.dumps(n) + "\n" for n in kept) + line).encode("utf-8"))
            else:
                _append(self.path, line.encode("utf-8"))
        if self._journal is not None:
            self._journal.append("notification", model, note)
        if self.webhook_url:
            self._webhook.put(note)
        if self._mail is not None and self._mailer.wants(note):
            self._mail.put(note)
        return note

    def list(self, since: int | None = None, level: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Return stored notifications oldest first, after id ``since``, of ``level``; at most the newest ``limit``."""
        notes = [n for n in read_json_lines(self.path)
                 if (since is None or n["id"] > since) and (level is None or n["level"] == level)]
        return notes[-limit:]

    def _post(self, note: dict[str, Any]) -> None:
        try:
            response = requests.post(self.webhook_url, json=note, timeout=self._timeout)
        except requests.RequestException as exc:
            raise DeliveryFailed(type(exc).__name__) from None
        if response.status_code >= 300:
            raise DeliveryFailed(f"HTTP {response.status_code}")

    def deliver(self, note: dict[str, Any]) -> bool:
        """POST one notification to the webhook now, retrying with backoff; return whether it was accepted."""
        return self._webhook.deliver(note)

    def pending(self) -> int:
        """How many notifications are queued or being delivered, to the webhook or by e-mail."""
        return self._webhook.pending() + (self._mail.pending() if self._mail is not None else 0)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for queued deliveries; True when none are left (for shutdown and tests)."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.pending()


def _append(path: Path, line: bytes) -> None:
    """Append one whole line, first ending a torn last line a killed writer left."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end_torn_line(fd)
        os.write(fd, line)
    finally:
        os.close(fd)
