"""A model's status, built in one place for ``/health``, ``/training/status``, ``/api/models`` and ``status``.

Each reader picks its fields from one ``ModelStatus``, so the same question
(is it training? which version serves? how many new rows?) gets the same
answer everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import NotFound
from .runtime import ModelRuntime
from .triggers import model_age_hours


@dataclass(frozen=True)
class ModelStatus:
    """What one model is doing now, as this process sees it."""

    name: str
    task: str | None
    target: str
    features: list[str] | None
    active_version: str | None  # the version this process serves
    registry_active: str | None  # the registry's pointer (another process may have moved it a moment ago)
    model_path: str | None
    last_training_time: str | None
    training_job: str | None  # the id of the job training this model anywhere
    current_job: dict[str, Any] | None
    total_samples: int
    samples_since_last_training: int
    auto_train: bool
    auto_train_interval_hours: float
    min_samples_for_training: int
    next_check_time: str | None
    model_age_hours: float | None  # hours since the active version was created
    drift_detected: bool  # a drift episode is open (monitoring.json)
    staged_version: str | None = None  # a candidate waiting for promote, its shadow verdict or its canary
    experiment: str | None = None  # the running experiment's id

    def health(self) -> dict[str, Any]:
        """The per-model part of ``GET /health``."""
        return {"model_loaded": self.active_version is not None, "model_path": self.model_path,
                "last_training_time": self.last_training_time, "training_in_progress": self.training_job is not None,
                "auto_training_enabled": self.auto_train, "version": self.active_version,
                "model_age_hours": self.model_age_hours, "samples_since_training": self.samples_since_last_training,
                "drift_detected": self.drift_detected, "staged_version": self.staged_version,
                "experiment": self.experiment}

    def listing(self) -> dict[str, Any]:
        """One entry of ``GET /api/models``."""
        return {"name": self.name, "task": self.task, "target": self.target, "features": self.features,
                "active_version": self.active_version, "total_samples": self.total_samples,
                "auto_training_enabled": self.auto_train}

    def training(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """``GET /api/<m>/training/status`` (``history``: the newest events)."""
        return {
            "model": self.name,
            "training_in_progress": self.training_job is not None,
            "last_training_time": self.last_training_time,
            "auto_training_enabled": self.auto_train,
            "auto_training_interval_hours": self.auto_train_interval_hours,
            "min_samples_required": self.min_samples_for_training,
            "recent_training_history": history,
            "active_version": self.active_version,
            "total_samples": self.total_samples,
            "samples_since_last_training": self.samples_since_last_training,
            "model_age_hours": self.model_age_hours,
            "drift_detected": self.drift_detected,
            "staged_version": self.staged_version,
            "experiment": self.experiment,
            "next_check_time": self.next_check_time,
            "current_job": self.current_job,
        }


def of(rt: ModelRuntime, next_check_time: str | None = None) -> ModelStatus:
    """Read ``rt``'s status now (one registry read, one sample count)."""
    state = rt.registry.state()
    total = rt.store.count()
    served = rt.slot.served
    age = model_age_hours(rt)
    running = rt.runner.running_anywhere()
    current = None
    if running is not None:
        try:
            current = rt.runner.get(running)
        except NotFound:  # claimed by another process a moment before its record was written
            current = {"job_id": running, "status": "running"}
    training = rt.config.training
    return ModelStatus(
        name=rt.name,
        task=served.task if served else rt.config.task,
        target=rt.config.target,
        features=list(served.features) if served else rt.store.features(),
        active_version=served.version if served else None,
        registry_active=state["active"],
        model_path=served.model_path if served else None,
        last_training_time=state["last_training_time"],
        training_job=running,
        current_job=current,
        total_samples=total,
        samples_since_last_training=rt.new_since_training(total, state["trained_rows"]),
        auto_train=training.auto_train,
        auto_train_interval_hours=training.auto_train_interval_hours,
        min_samples_for_training=training.min_samples_for_training,
        next_check_time=next_check_time,
        model_age_hours=None if age is None else round(age, 4),
        drift_detected=rt.monitor.live().detected,
        staged_version=rt.rollout.staged_version(),
        experiment=rt.rollout.view().experiment,
    )


def monitoring(rt: ModelRuntime) -> dict[str, Any]:
    """``GET /api/<m>/monitoring``: the active version's live score, its windows, drift and staleness."""
    found = of(rt)
    live = rt.monitor.live()
    current = live.version is not None and live.version == found.active_version
    return {
        "model": rt.name,
        "active_version": found.active_version,
        "metric": live.metric if current else rt.config.training.options.metric,
        "live": {"version": found.active_version, "score": live.score if current else None,
                 "n_labels": live.n_labels if current else 0,
                 "recorded_score": live.recorded_score if current else None, "drop": live.drop if current else None},
        "windows": live.windows,
        "drift": {"detected": live.detected, "kind": live.kind, "since": live.since,
                  "features": {name: {"psi": value} for name, value in live.psi.items()} if current else {}},
        "staleness": {"model_age_hours": found.model_age_hours, "samples_since_training": found.samples_since_last_training},
    }
