"""One thread per serving process that follows registry changes made by other processes.

A worker that did not run a training (or an operator's ``activate`` from the
CLI) changes ``registry.json``; every serving process notices within
``WATCH_SECONDS`` and loads the newly active version in this thread, so no
request waits for a load and the request path pays nothing.
"""
from __future__ import annotations

import logging
import threading
from typing import Iterable

from .slot import ServingSlot

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.5


class RegistryWatcher:
    """Poll each slot's registry and follow it; started by ``serve``, stopped at shutdown."""

    def __init__(self, slots: Iterable[ServingSlot], interval: float = WATCH_SECONDS):
        self._slots = list(slots)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refit-registry-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for slot in self._slots:
                try:
                    slot.follow()
                except Exception:  # one model's unreadable registry must not stop the others being followed
                    log.exception("following the registry of %s failed", slot.name)
