"""Background delivery with retries, shared by the webhook and e-mail: a queue and one sender thread each.

A notification is put on an ``Outbox`` and the caller goes on at once; the
sender thread tries ``attempts`` times with backoff 0.5 s, 1 s, 2 s, ... A
final failure is logged, never raised: a slow or dead receiver never blocks
training or serving.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """One attempt failed; the message says why in a few words (``HTTP 502``, ``ConnectionRefusedError``)."""


class Outbox:
    """Deliver notifications to one destination in the background, retrying each with backoff."""

    def __init__(self, name: str, send: Callable[[dict[str, Any]], None], *, attempts: int,
                 backoff_seconds: float = 0.5):
        self.name = name
        self._send = send  # raises DeliveryFailed (or OSError) when an attempt fails
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, note: dict[str, Any]) -> None:
        """Queue one notification; the sender thread starts on first use."""
        self._queue.put(note)
        with self._lock:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._deliver_forever, name=f"refit-{self.name}", daemon=True)
                self._sender.start()

    def _deliver_forever(self) -> None:
        while True:
            note = self._queue.get()
            try:
                self.deliver(note)
            except Exception:  # a bug in building one message must not stop every later delivery
                log.exception("%s delivery of notification %s crashed", self.name, note.get("id"))
            finally:
                self._queue.task_done()

    def deliver(self, note: dict[str, Any]) -> bool:
        """Send one notification now, retrying with backoff; return whether it was accepted."""
        problem = ""
        for attempt in range(1, self._attempts + 1):
            try:
                self._send(note)
                return True
            except (DeliveryFailed, OSError) as exc:
                problem = str(exc) if isinstance(exc, DeliveryFailed) else type(exc).__name__
            if attempt < self._attempts:
                time.sleep(self._backoff * 2 ** (attempt - 1))
        log.warning("%s delivery of notification %s failed after %d attempts (%s)", self.name, note.get("id"),
                    self._attempts, problem)
        return False

    def pending(self) -> int:
        """How many notifications are queued or being delivered."""
        return self._queue.unfinished_tasks
