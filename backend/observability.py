"""What operators watch: one structured log line per request, request metrics, and ``/metrics``.

The log line carries method, path, status, duration, model and the version
that answered; never headers or bodies, so no key or data leaks into logs.
"""
from __future__ import annotations

import json
import logging
import os
import time

from flask import Flask, Response, g, request

from .state import refit

log = logging.getLogger("refit.requests")


def init_app(app: Flask) -> None:
    """Time, count and log every request; serve the metrics."""
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])


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
