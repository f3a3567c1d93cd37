"""Refit: a self-retraining scikit-learn model server.

``create_app`` builds everything a process needs from a config: the history
logs, one runtime per model (with its active version loaded), the API and its
error handlers, and, only when asked (``serve``), the scheduler.
"""
from __future__ import annotations

import hmac
import logging
import os
import time
from pathlib import Path

from flask import Flask, request

from . import errors, observability, retrain
from .config import Config, load_config
from .errors import ConfigError
from .executor import health_of
from .history import HistoryLog
from .jsoncodec import OrjsonProvider
from .metrics import Metrics
from .notifications import Notifier
from .runtime import ModelRuntime
from .scheduler import TrainingScheduler
from .watcher import RegistryWatcher
from .state import Refit, refit

log = logging.getLogger(__name__)

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def build_state(config: Config, metrics: Metrics | None = None) -> Refit:
    """Create the runtimes of every configured model, sharing one history log per file."""
    histories: dict[str, HistoryLog] = {}
    runtimes: dict[str, ModelRuntime] = {}
    settings = config.notifications
    notifier = Notifier(config.storage.data_dir / "notifications.jsonl", settings.webhook_url, keep=settings.keep,
                        timeout_seconds=settings.webhook_timeout_seconds, attempts=settings.webhook_attempts)
    for name, model in config.models.items():
        path = model.training.training_log_file
        history = histories.setdefault(str(path), HistoryLog(path))
        runtimes[name] = ModelRuntime(model, config.storage, history, notifier, retrain.run_job, metrics,
                                      base_dir=config.path.parent, compute=config.compute)
    key_name = config.security.api_key_env
    api_key = os.environ.get(key_name)
    if api_key is not None and not api_key.strip():
        raise ConfigError(f"security.apiKeyEnv: ${key_name} is set but empty; unset it or give it a value")
    return Refit(config=config, runtimes=runtimes, histories=histories, notifier=notifier, api_key=api_key or None,
                 metrics=metrics, executor_health=health_of(config.compute))


def create_app(config: Config | str | Path | None = None, *, start_scheduler: bool = False) -> Flask:
    """Build a Refit app; the scheduler starts only when ``start_scheduler`` (the ``serve`` command)."""
    if not isinstance(config, Config):
        config = load_config(config)
    state = build_state(config, Metrics())
    for rt in state.runtimes.values():
        rt.recover()
        rt.slot.start()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.security.max_request_bytes
    app.json = OrjsonProvider(app)
    app.extensions["refit"] = state
    observability.init_app(app)
    app.before_request(_check_api_key)

    from .api import handlers, register

    handlers.init_app(app)
    register(app)
    if start_scheduler:
        state.watcher = RegistryWatcher(rt.slot for rt in state.runtimes.values())
        state.watcher.start()
        state.scheduler = TrainingScheduler(state.runtimes, config.storage.data_dir)
        state.scheduler.start()
    return app


def shutdown(app: Flask, timeout: float = 20.0) -> None:
    """Stop the scheduler and cancel this process's training jobs, waiting up to ``timeout`` seconds for them."""
    state: Refit = app.extensions["refit"]
    if state.scheduler is not None:
        state.scheduler.shutdown()
    if state.watcher is not None:
        state.watcher.stop()
    running = [rt.runner.current for rt in state.runtimes.values() if rt.runner.current is not None]
    for job in running:
        log.info("shutting down: cancelling job %s of %s", job.job_id, job.model)
        job.cancel_requested.set()
    deadline = time.monotonic() + timeout
    for job in running:
        # wait for the whole job, not its status: the status turns terminal just before the
        # final record is written, and exiting in between would leave that record 'running'
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            log.warning("shutting down: job %s of %s did not stop within %g s", job.job_id, job.model, timeout)
    state.notifier.drain(timeout=max(0.0, min(5.0, deadline - time.monotonic())))


def _check_api_key() -> None:
    state = refit()
    if state.api_key is None or request.method not in _MUTATING:
        return
    if request.endpoint == "predict.predict" and not state.config.security.protect_predict:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.headers.get("X-API-Key", "")
    if not hmac.compare_digest(given.encode("utf-8"), state.api_key.encode("utf-8")):
        log.warning("refused %s %s: missing or wrong API key", request.method, request.path)
        raise errors.Unauthorized("A valid API key is required: send Authorization: Bearer <key> or X-API-Key",
                                  code="unauthorized")
