"""Notifications: what a person should hear about, kept on disk and pushed to a webhook.

Each is ``{"id", "timestamp", "level", "model", "version", "event_type",
"message", "details"}`` with level success (promoted, activated, rolled
back, pruned), warning (trained but rejected) or error (failed, load failure).
They are appended as JSON lines under a lock, with integer ids handed out
under that lock, so several processes can share the file; it is compacted to
the newest ``keep`` when it doubles. The lock is ``.notifications.lock``
beside it, never the file itself: compaction replaces the file, and a process
blocked on a lock of the old file would write its line to an unlinked file.
Webhook delivery runs on its own thread with a timeout and retries with
backoff: a slow or dead receiver never blocks training or serving, and a
failed delivery is logged, not raised.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import requests

from .files import atomic_write, end_torn_line, locked, read_json_lines
from .history import utc_now

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
    """Store notifications and deliver them to an optional webhook."""

    def __init__(self, path: Path, webhook_url: str | None = None, *, keep: int = 1000,
                 timeout_seconds: float = 5.0, attempts: int = 4, backoff_seconds: float = 0.5):
        self.path = path
        self.webhook_url = webhook_url
        self.keep = keep
        self._timeout = timeout_seconds
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._lock = threading.Lock()
        self._outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._sender: threading.Thread | None = None

    def from_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Raise the notification a history event calls for, if any."""
        level = LEVEL_OF_EVENT.get(event["event_type"])
        if level is None:
            return None
        details = event.get("details") or {}
        if event["event_type"] == "MODEL_ROLLED_BACK" and details.get("reason") == "watch":
            level = "error"  # the server undid a promotion by itself: someone should look
        return self.notify(level, event["model"], details.get("version"), event["event_type"], event["message"], details)

    def notify(self, level: str, model: str, version: str | None, event_type: str, message: str,
               details: dict[str, Any]) -> dict[str, Any]:
        """Store one notification and queue it for the webhook."""
        note = {"id": 0, "timestamp": utc_now(), "level": level, "model": model, "version": version,
                "event_type": event_type, "message": message, "details": details}
        with locked(self.path.with_name(".notifications.lock"), thread_lock=self._lock):
            lines = read_json_lines(self.path)
            note["id"] = (lines[-1]["id"] + 1) if lines else 1
            line = json.dumps(note, default=str) + "\n"
            if len(lines) >= 2 * self.keep:
                kept = lines[len(lines) - (self.keep - 1):]  # not [-0:] when keep is 1
                atomic_write(self.path, ("".join(json.dumps(n) + "\n" for n in kept) + line).encode("utf-8"))
            else:
                _append(self.path, line.encode("utf-8"))
        if self.webhook_url:
            self._outbox.put(note)
            self._ensure_sender()
        return note

    def list(self, since: int | None = None, level: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Return stored notifications oldest first, after id ``since``, of ``level``; at most the newest ``limit``."""
        notes = [n for n in read_json_lines(self.path)
                 if (since is None or n["id"] > since) and (level is None or n["level"] == level)]
        return notes[-limit:]

    def _ensure_sender(self) -> None:
        with self._lock:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._deliver_forever, name="refit-webhook", daemon=True)
                self._sender.start()

    def _deliver_forever(self) -> None:
        while True:
            note = self._outbox.get()
            self.deliver(note)
            self._outbox.task_done()

    def deliver(self, note: dict[str, Any]) -> bool:
        """POST one notification to the webhook, retrying with backoff; return whether it was accepted."""
        for attempt in range(1, self._attempts + 1):
            try:
                response = requests.post(self.webhook_url, json=note, timeout=self._timeout)
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                problem = type(exc).__name__
            if attempt < self._attempts:
                time.sleep(self._backoff * 2 ** (attempt - 1))
        log.warning("webhook delivery of notification %s failed after %d attempts (%s)", note["id"], self._attempts, problem)
        return False

    def pending(self) -> int:
        """How many notifications are queued or being delivered to the webhook."""
        return self._outbox.unfinished_tasks

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
