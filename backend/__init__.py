"""Refit: a self-retraining scikit-learn model server.

``create_app`` builds everything a process needs from a config: the history
logs, one runtime per model (with its active version loaded), the API and its
error handlers, and, only when asked (``serve``), the scheduler.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

# Nothing here imports Flask or scikit-learn at module level: ``import backend.client`` runs this file
# first, and the client must stay light. Each function imports what it builds.
if TYPE_CHECKING:
    from flask import Flask

    from .config import Config
    from .metrics import Metrics
    from .state import Refit

log = logging.getLogger(__name__)

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# every route that predicts (Refit's, MLflow's protocol, the Open Inference Protocol): open unless protectPredict
PREDICT_ENDPOINTS = frozenset({"predict.predict", "invocations.model_invocations", "invocations.invocations",
                               "inference_v2.infer"})
STREAMS = 32  # open event streams per process (``serve --streams``), each on a thread beside --threads


def build_state(config: Config, metrics: Metrics | None = None) -> Refit:
    """Create the runtimes of every configured model, sharing one history log per file."""
    from . import retrain
    from .errors import ConfigError
    from .events import EventJournal
    from .executor import health_of
    from .history import HistoryLog
    from .mailer import Mailer
    from .notifications import Notifier
    from .runtime import ModelRuntime
    from .state import Refit

    histories: dict[str, HistoryLog] = {}
    runtimes: dict[str, ModelRuntime] = {}
    settings = config.notifications
    journal = EventJournal(config.storage.models_dir / "events.jsonl")  # what the console streams, for every process
    notifier = Notifier(config.storage.data_dir / "notifications.jsonl", settings.webhook_url, keep=settings.keep,
                        timeout_seconds=settings.webhook_timeout_seconds, attempts=settings.webhook_attempts,
                        mailer=Mailer(settings.email) if settings.email else None, journal=journal)
    for name, model in config.models.items():
        path = model.training.training_log_file
        history = histories.setdefault(str(path), HistoryLog(path, journal))
        runtimes[name] = ModelRuntime(model, config.storage, history, notifier, retrain.run_job, metrics,
                                      base_dir=config.path.parent, prediction_log=config.prediction_log,
                                      serving=config.serving, journal=journal,
                                      compute=config.compute)
    key_name = config.security.api_key_env
    api_key = os.environ.get(key_name)
    if api_key is not None and not api_key.strip():
        raise ConfigError(f"security.apiKeyEnv: ${key_name} is set but empty; unset it or give it a value")
    return Refit(config=config, runtimes=runtimes, histories=histories, notifier=notifier, api_key=api_key or None,
                 metrics=metrics, journal=journal, executor_health=health_of(config.compute))


def create_app(config: Config | str | Path | None = None, *, start_scheduler: bool = False,
               streams: int = STREAMS) -> Flask:
    """Build a Refit app; the scheduler starts only when ``start_scheduler`` (the ``serve`` command)."""
    from flask import Flask

    from . import observability
    from .config import Config, load_config
    from .events import StreamGate
    from .jsoncodec import OrjsonProvider
    from .metrics import Metrics
    from .scheduler import TrainingScheduler
    from .watcher import RegistryWatcher

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
    state.streams = StreamGate(streams, state.journal)
    observability.init_app(app)
    app.before_request(_check_api_key)

    from . import dashboard
    from .api import handlers, register

    handlers.init_app(app)
    register(app)
    dashboard.init_app(app)
    if start_scheduler:
        state.watcher = RegistryWatcher([rt.slot.follow for rt in state.runtimes.values()]
                                        + [rt.rollout.flush for rt in state.runtimes.values()])
        state.watcher.start()
        state.scheduler = TrainingScheduler(state.runtimes, config.storage.data_dir)
        state.scheduler.start()
    return app


def shutdown(app: Flask, timeout: float = 20.0) -> None:
    """Stop the scheduler and cancel this process's training jobs, waiting up to ``timeout`` seconds for them."""
    state: Refit = app.extensions["refit"]
    if state.streams is not None:
        state.streams.stop()  # open event streams end, so nothing waits for a browser tab
    if state.scheduler is not None:
        state.scheduler.shutdown()
    if state.watcher is not None:
        state.watcher.stop()
    for rt in state.runtimes.values():  # arm request counts this process still holds
        try:
            rt.rollout.flush()
        except OSError as exc:
            log.warning("shutting down: experiment counts of %s not saved: %s", rt.name, exc)
        rt.predictions.close()
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
    import hmac

    from flask import request

    from . import errors
    from .state import refit

    state = refit()
    if state.api_key is None or request.method not in _MUTATING:
        return
    if request.endpoint in PREDICT_ENDPOINTS and not state.config.security.protect_predict:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.headers.get("X-API-Key", "")
    if not hmac.compare_digest(given.encode("utf-8"), state.api_key.encode("utf-8")):
        log.warning("refused %s %s: missing or wrong API key", request.method, request.path)
        raise errors.Unauthorized("A valid API key is required: send Authorization: Bearer <key> or X-API-Key",
                                  code="unauthorized")
