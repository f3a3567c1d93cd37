"""What operators watch: the request log, the console's story of training, request metrics, ``/metrics``.

The request log has one JSON line per request: method, path, status, duration,
model and the version that answered; never headers or bodies, so no key or
data leaks into logs. ``serve`` sends it where ``--access-log`` says (a file,
or ``-`` for the console), and nowhere by default: one line per request would
bury what the console is for. The console tells of start-up and of every
history event this process writes (``refit.events``): training started,
completed or failed, versions promoted, rejected, activated, rolled back.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Callable

from flask import Flask, Response, g, request

from .history import HistoryLog
from .state import refit

log = logging.getLogger("refit.requests")
events_log = logging.getLogger("refit.events")

# the details worth a place on the console line, in this order
_CONSOLE_DETAILS = ("version", "trigger", "n_samples", "job_id", "reason", "error")


def init_app(app: Flask) -> None:
    """Time, count and log every request; tell the console of history events; serve the metrics."""
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])
    for history in app.extensions["refit"].histories.values():
        _narrate(history)


def configure_request_log(destination: str | None) -> None:
    """Send the request log to the file ``destination`` (JSON lines, appended), to stderr for ``-``, or nowhere."""
    log.propagate = False  # never on the console through the root logger
    for handler in list(log.handlers):
        log.removeHandler(handler)
    if destination is None:
        log.setLevel(logging.WARNING)  # off: the line is not even built
        return
    if destination == "-":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        with open(destination, "a", encoding="utf-8"):  # a bad path fails here, as one line, not per request
            pass
        # opened on first use in each gunicorn worker; appends of one short line each do not interleave
        handler = logging.FileHandler(destination, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _narrate(history: HistoryLog) -> None:
    """Log every event this process appends to ``history`` on ``refit.events`` as well."""
    append: Callable[..., dict[str, Any]] = history.append

    def append_and_tell(event_type: str, model: str, message: str, details: dict[str, Any] | None = None):
        event = append(event_type, model, message, details)
        # a skipped tick says nothing new; it stays in the history log
        level = logging.DEBUG if event_type == "TRAINING_SKIPPED" else logging.INFO
        if events_log.isEnabledFor(level):
            events_log.log(level, "%s %s: %s%s", model, event_type, message, _details_text(event["details"]))
        return event

    history.append = append_and_tell  # type: ignore[method-assign]


def _details_text(details: dict[str, Any]) -> str:
    parts = [f"{key} {details[key]}" for key in _CONSOLE_DETAILS if details.get(key) not in (None, "")]
    metric = details.get("metric")
    if isinstance(details.get(metric), float):
        parts.append(f"{metric} {details[metric]:.4f}")
    return f" ({', '.join(parts)})" if parts else ""


def _start() -> None:
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    model = (request.view_args or {}).get("model", "")
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    metrics = refit().metrics
    if metrics is not None and endpoint != "/metrics":
        metrics.requests.labels(model=model, endpoint=endpoint, method=request.method, status=str(response.status_code)).inc()
        metrics.latency.labels(model=model, endpoint=endpoint).observe(seconds)
    if log.isEnabledFor(logging.INFO):
        log.info(json.dumps({
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2), "model": model or None,
            "model_version": g.get("model_version"), "pid": os.getpid(),
        }))
    return response


def _metrics() -> Response:
    body, content_type = refit().metrics.exposition()
    return Response(body, content_type=content_type)
