"""The time triggers of CONTRACT §8: a stale active version (``maxModelAgeHours``, trigger ``age``) and a
cron ``schedule`` (trigger ``schedule``).

Both are an operator's explicit wish for a fresh model, so they train below ``minSamplesForTraining``;
but a training on exactly the rows the last one saw would only repeat it, so each needs at least one
new row and otherwise writes ``TRAINING_SKIPPED`` with reason ``no_new_samples``. Every function takes
``now`` (default: the real time) so tests bring a clock of their own instead of sleeping.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from typing import Any, Protocol

from .config import ModelConfig
from .errors import Conflict
from .jobs import Job, JobRunner
from .registry import Registry


class Trainable(Protocol):
    """What the triggers need of a model's runtime; ``ModelRuntime`` has it (a protocol: runtime.py imports this)."""

    name: str
    config: ModelConfig
    registry: Registry
    runner: JobRunner

    def record(self, event_type: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def sample_counts(self) -> tuple[int, int]: ...

    def submit_training(self, trigger: str, given: dict[str, Any] | None = None, *, wait: bool = False) -> Job: ...

log = logging.getLogger(__name__)


def utc(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime (a naive one is taken as UTC); the real time when None."""
    if now is None:
        return datetime.now(timezone.utc)
    return now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)


def model_age_hours(rt: Trainable, now: datetime | None = None) -> float | None:
    """Hours since the active version was trained (its record's ``created_at``); None with no active version."""
    state = rt.registry.state()
    entry = state["versions"].get(state["active"]) if state["active"] else None
    if not entry or not entry.get("created_at"):
        return None
    created = datetime.fromisoformat(entry["created_at"])  # the index has it: no metadata file is read
    return (utc(now) - utc(created)).total_seconds() / 3600


class AgeTrigger:
    """The tick's ``maxModelAgeHours`` check, with the memory that keeps its skip to one per staleness period.

    A staleness period is one active version and one training's worth of rows (the registry's
    ``trained_rows``): with no new row, the first tick that finds the version stale writes
    ``TRAINING_SKIPPED`` (``no_new_samples``, trigger ``age``) and later ticks fall back to the
    interval rule, until a row arrives (that row starts the training) or another training or
    version ends the period. The memory is this process's: a new scheduler leader may repeat
    the skip once, which is harmless.
    """

    def __init__(self) -> None:
        self._skipped_period: tuple[str, int] | None = None

    def check(self, rt: Trainable, now: datetime | None, total: int, new: int) -> tuple[bool, Job | None]:
        """Return (handled, job): handled when the age trigger acted and the interval rule must not run."""
        limit = rt.config.training.max_model_age_hours
        if limit is None or not rt.config.training.auto_train:
            return False, None
        age = model_age_hours(rt, now)
        if age is None or age <= limit:
            return False, None
        state = rt.registry.state()
        period = (state["active"], state["trained_rows"])
        if new == 0 and period == self._skipped_period:
            return False, None  # already said once for this period: the interval rule speaks from now on
        self._skipped_period = period if new == 0 else None
        details = {"version": state["active"], "model_age_hours": round(age, 4), "max_model_age_hours": limit}
        log.info("model %s: version %s is %.2f h old (maxModelAgeHours %g)", rt.name, state["active"], age, limit)
        return True, train_or_skip(rt, "age", total, new, details)


def scheduled_check(rt: Trainable, now: datetime | None = None) -> Job | None:
    """The ``schedule`` cron job's run: train on any new row (trigger 'schedule'), else TRAINING_SKIPPED."""
    expr = rt.config.training.schedule
    if expr is None or not rt.config.training.auto_train:
        return None
    if rt.runner.running_anywhere() is not None:
        log.info("model %s: scheduled training skipped, a training is running", rt.name)
        return None
    total, new = rt.sample_counts()
    log.info("model %s: scheduled training (%s) finds %d new row(s)", rt.name, expr, new)
    return train_or_skip(rt, "schedule", total, new, {"schedule": expr, "scheduled_time": utc(now).isoformat()})


def train_or_skip(rt: Trainable, trigger: str, total: int, new: int, details: dict[str, Any]) -> Job | None:
    """Start a ``trigger`` training on any new row, however few; with none, write TRAINING_SKIPPED ``no_new_samples``."""
    if new == 0:
        rt.record("TRAINING_SKIPPED", f"No new samples since the last training ({trigger} trigger)",
                  {"n_samples": 0, "total_samples": total, "reason": "no_new_samples", "trigger": trigger,
                   **details, "pid": os.getpid()})
        log.info("model %s: %s training skipped, no new samples", rt.name, trigger)
        return None
    try:
        job = rt.submit_training(trigger)  # below minSamplesForTraining on purpose (retrain.OWN_ROW_RULES)
    except Conflict:
        log.info("model %s: %s training left to the process already training it", rt.name, trigger)
        return None
    log.info("model %s: %s training %s started on %d new row(s)", rt.name, trigger, job.job_id, new)
    return job
