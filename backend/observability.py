"""What operators watch: the request log, the console's story of training, request metrics, ``/metrics``.

The request log has one JSON line per request: method, path, status, duration,
model and the version that answered; never headers or bodies, so no key or
data leaks into logs. ``serve`` sends it where ``--access-log`` says (a file,
or ``-`` for the console), and nowhere by default: one line per request would
bury what the console is for. The console tells of start-up and of every
history event this process writes (``history.HistoryLog.append`` logs each on
``refit.events``): training started, completed or failed, versions promoted,
rejected, activated, rolled back.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time

from flask import Flask, Response, g, request

from .state import refit

log = logging.getLogger("refit.requests")


def init_app(app: Flask) -> None:
    """Time, count and log every request; serve the metrics."""
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])


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
