"""Shadow predictions: a staged candidate answers live requests too, off the request path, and is only logged.

One background thread per model takes the requests the active version
answered from a bounded queue, predicts them with the shadow candidate and
appends its answers to ``predictions/shadow/``. When the queue is full (the
candidate is slower than the traffic) requests are skipped and counted, never
waited for: the shadow's verdict is taken on labelled requests, whose
candidate answers ``rollout`` recomputes from the logged features.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import numpy as np

from .predictionlog import PredictionLog
from .serving import ServedModel, predict_columns

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


class ShadowPredictor:
    """Predict requests with a shadow candidate in the background and log its answers."""

    def __init__(self, predictions: PredictionLog):
        self.predictions = predictions
        self.skipped = 0
        self.answered = 0
        self._queue: queue.Queue[tuple[ServedModel, dict[str, np.ndarray], list[list[Any]]]] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, model: ServedModel, columns: dict[str, np.ndarray], rows: list[list[Any]]) -> None:
        """Queue one answered request for the shadow; never blocks."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="refit-shadow", daemon=True)
                    self._thread.start()
        try:
            self._queue.put_nowait((model, columns, rows))
        except queue.Full:
            self.skipped += 1

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued request was predicted (tests, shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            model, columns, rows = self._queue.get()
            try:
                outputs, probabilities = predict_columns(model, columns)
                self.predictions.append(model.version, model.features, rows, outputs, probabilities)
                self.answered += 1
            except Exception:  # a candidate that fails on live rows must never affect serving
                log.exception("shadow version %s failed on a live request", model.version)
            finally:
                self._queue.task_done()
