"""One thread per serving process that follows registry changes made by other processes.

A worker that did not run a training (or an operator's ``activate`` from the
CLI) changes ``registry.json``; every serving process notices within
``WATCH_SECONDS`` and loads the newly active version in this thread, so no
request waits for a load and the request path pays nothing.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.5


class RegistryWatcher:
    """Run each task (a slot's ``follow``, a rollout's ``flush``) every ``interval``; started by ``serve``."""

    def __init__(self, tasks: Iterable[Callable[[], None]], interval: float = WATCH_SECONDS):
        self._tasks = list(tasks)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refit-registry-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for task in self._tasks:
                try:
                    task()
                except Exception:  # one model's unreadable registry must not stop the others being followed
                    log.exception("%s failed", getattr(task, "__qualname__", task))
