"""The production server: gunicorn (gthread workers) on Linux and macOS, waitress elsewhere.

Each gunicorn worker builds its own app after the fork (no preload), so no
thread or scheduler is ever forked; the workers elect one scheduler leader
between them (see scheduler.py). SIGTERM is graceful: gunicorn stops
accepting, lets requests in flight finish, then each worker cancels its
training job and stops its scheduler before it exits. Open event streams
would count as requests in flight for the whole graceful timeout, so the
worker ends them first (``handle_exit``). Each worker has ``streams`` request
threads beside ``threads``, and no more streams than that (``events.StreamGate``),
so open browser tabs never take the threads predictions need.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from flask import Flask
from gunicorn import util as gunicorn_util
from gunicorn.workers.gthread import ThreadWorker

from .config import Config
from .errors import envelope, snake

log = logging.getLogger(__name__)
GRACEFUL_SECONDS = 30


class JsonErrorWorker(ThreadWorker):
    """A gthread worker whose own HTTP-level refusals (a request line too long, a broken header) are JSON too.

    gunicorn answers those before the app sees the request, through
    ``gunicorn.util.write_error``; this worker process writes our envelope instead.
    """

    def init_process(self) -> None:
        gunicorn_util.write_error = _write_json_error
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: end this worker's event streams at once, then shut down gracefully as gunicorn does."""
        state = getattr(getattr(self, "wsgi", None), "extensions", {}).get("refit")  # no app yet while booting
        if state is not None and state.streams is not None:
            state.streams.stop()
        super().handle_exit(sig, frame)


def _write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
    body = json.dumps(envelope(snake(reason), message or reason)).encode("utf-8")
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


def run(config: Config, host: str, port: int, workers: int, threads: int, streams: int = 32) -> None:
    """Serve until SIGTERM or Ctrl-C, with ``threads`` request threads and ``streams`` event-stream threads per worker."""
    if sys.platform.startswith(("linux", "darwin")):
        _gunicorn(config, host, port, workers, threads, streams)
    else:
        if workers > 1:
            log.warning("several workers need gunicorn (Linux, macOS); serving with one waitress process")
        _waitress(config, host, port, threads, streams)


def _gunicorn(config: Config, host: str, port: int, workers: int, threads: int, streams: int) -> None:
    from gunicorn.app.base import BaseApplication

    from . import create_app, shutdown
    from .metrics import worker_exited

    # set before any worker imports prometheus_client, and fresh for this run, so metrics add up across workers
    metrics_dir = tempfile.mkdtemp(prefix="refit-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    class Refit(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "backend.server.JsonErrorWorker",
                "threads": threads + streams,  # the stream threads are never taken from requests (StreamGate)
                "preload_app": False,  # every worker builds its app (and its threads) after the fork
                "graceful_timeout": GRACEFUL_SECONDS,
                "timeout": 120,
                "accesslog": None,  # our own structured request log replaces it
                "proc_name": "refit",
                # no shared $HOME/.gunicorn/gunicorn.ctl: several servers on one machine must not share a control socket
                "control_socket_disable": True,
                "worker_exit": lambda server, worker: (shutdown(worker.wsgi) if isinstance(getattr(worker, "wsgi", None), Flask)
                                                       else None),  # a worker stopped while booting has no app
                "child_exit": lambda server, worker: worker_exited(worker.pid),
                "on_exit": lambda server: shutil.rmtree(metrics_dir, ignore_errors=True),
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(config, start_scheduler=True, streams=streams)

    Refit().run()


def _waitress(config: Config, host: str, port: int, threads: int, streams: int) -> None:
    import waitress

    from . import create_app, shutdown

    app = create_app(config, start_scheduler=True, streams=streams)
    try:
        waitress.serve(app, host=host, port=port, threads=threads + streams, ident="refit")
    finally:
        shutdown(app)
