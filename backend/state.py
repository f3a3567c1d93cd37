"""Per-app state, kept in ``app.extensions["refit"]`` and reached through ``current_app``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from flask import current_app

from .config import Config
from .errors import NotFound
from .events import EventJournal, StreamGate
from .history import HistoryLog
from .metrics import Metrics
from .notifications import Notifier
from .runtime import ModelRuntime
from .scheduler import TrainingScheduler
from .watcher import RegistryWatcher


@dataclass
class Refit:
    config: Config
    runtimes: dict[str, ModelRuntime]
    histories: dict[str, HistoryLog]
    notifier: Notifier
    api_key: str | None
    metrics: Metrics | None = None
    scheduler: TrainingScheduler | None = None
    watcher: RegistryWatcher | None = None
    openapi: dict[str, Any] | None = None
    journal: EventJournal | None = None  # the console's numbered events (events.py), shared by every process
    streams: StreamGate | None = None  # this process's open event streams
    executor_health: Callable[[], dict[str, Any]] = lambda: {"kind": "local"}  # /health's "executor" (CONTRACT §12)


def refit() -> Refit:
    """Return the running app's Refit state."""
    return current_app.extensions["refit"]


def runtime(model: str) -> ModelRuntime:
    """Return the runtime of a configured model; 404 naming it otherwise."""
    found = refit().runtimes.get(model)
    if found is None:
        raise NotFound(f"No model named '{model}' is configured", code="model_not_found",
                       details={"model": model, "models": sorted(refit().runtimes)})
    return found
