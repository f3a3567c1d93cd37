"""The background scheduler: one APScheduler job per auto-training model.

The scheduler only decides *when*: each tick calls the model's own
``ModelRuntime.tick``, which submits to the same job runner as the API and
the CLI. It is created by ``create_app(..., start_scheduler=True)``, which
only ``serve`` asks for, so importing the package or building a test app
never starts a thread.
"""
from __future__ import annotations

import logging
from datetime import timezone

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from .errors import Conflict
from .runtime import ModelRuntime

log = logging.getLogger(__name__)


def job_id(model: str) -> str:
    return f"auto-train:{model}"


class TrainingScheduler:
    """Start, query and stop the interval checks of every model with ``autoTrain``."""

    def __init__(self, runtimes: dict[str, ModelRuntime]):
        self._runtimes = runtimes
        self._scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        self._scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)

    def start(self) -> None:
        """Schedule every auto-training model, start the thread, and train models that have data but no version."""
        for rt in self._runtimes.values():
            training = rt.config.training
            if training.auto_train:
                self._scheduler.add_job(
                    rt.tick, "interval", seconds=training.auto_train_interval_hours * 3600,
                    id=job_id(rt.name), name=f"auto-train {rt.name}", replace_existing=True,
                )
        self._scheduler.start()
        for rt in self._runtimes.values():
            if rt.config.training.auto_train:
                start_up(rt)

    def next_run(self, model: str) -> str | None:
        """Return when the model's next check runs (ISO 8601), or None when it is not scheduled."""
        job = self._scheduler.get_job(job_id(model)) if self._scheduler.running else None
        return job.next_run_time.isoformat() if job and job.next_run_time else None

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @staticmethod
    def _on_error(event: JobExecutionEvent) -> None:
        log.error("scheduled check %s failed", event.job_id, exc_info=event.exception)


def start_up(rt: ModelRuntime) -> None:
    """Train at once a model that has enough samples but no active version (trigger 'startup')."""
    if rt.served is not None or rt.registry.state()["active"]:
        return
    _, new = rt.sample_counts()
    if new < rt.config.training.min_samples_for_training:
        return
    try:
        rt.submit_training("startup")
    except Conflict:
        log.info("model %s: start-up training left to the process already training it", rt.name)
