"""The background scheduler: one APScheduler job per auto-training model, in one process per data folder.

The scheduler only decides *when*: each tick calls the model's own
``ModelRuntime.tick``, which submits to the same job runner as the API and
the CLI. It is created by ``create_app(..., start_scheduler=True)``, which
only ``serve`` asks for, so importing the package or building a test app
never starts a thread.

With several worker processes, exactly one runs the scheduler: the leader,
which holds an exclusive ``flock`` on ``<dataDir>/.refit-leader.lock`` for
its whole life. The others retry that lock every half of the shortest
interval, so when the leader dies another takes over within one interval.
The leader publishes the next check times for the others to report.

A model with a ``schedule`` also gets a cron job (``ModelRuntime.scheduled_check``,
trigger ``schedule``); its next check time is the earlier of the two jobs'.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from datetime import timezone
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from .errors import Conflict
from .files import atomic_write
from .runtime import ModelRuntime

log = logging.getLogger(__name__)
ROLLOUT_SECONDS = 60  # how often the leader takes rollout decisions that no label brought (CONTRACT §9)

def job_id(model: str) -> str:
    """The id of a model's interval job."""
    return f"auto-train:{model}"


def schedule_job_id(model: str) -> str:
    """The id of a model's cron job (``schedule``)."""
    return f"scheduled-train:{model}"


class TrainingScheduler:
    """Elect a leader among the processes sharing a data folder; the leader runs the interval checks."""

    def __init__(self, runtimes: dict[str, ModelRuntime], data_dir: Path):
        self._runtimes = runtimes
        self._lock_path = data_dir / ".refit-leader.lock"
        self._schedule_path = data_dir / ".refit-schedule.json"
        self._scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        self._scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)
        self._leader_fd: int | None = None
        self._stop = threading.Event()
        intervals = [rt.config.training.auto_train_interval_hours * 3600 for rt in runtimes.values()
                     if rt.config.training.auto_train] + [ROLLOUT_SECONDS]
        self._retry_seconds = min(30.0, max(0.5, min(intervals) / 2))

    @property
    def is_leader(self) -> bool:
        return self._leader_fd is not None

    def start(self) -> None:
        """Lead if no other process does, else wait to take over."""
        if self._try_lead():
            self._lead()
        else:
            log.info("another process runs the scheduler; this one takes over if it stops")
            threading.Thread(target=self._follow, name="refit-scheduler-follower", daemon=True).start()

    def _try_lead(self) -> bool:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._leader_fd = fd
        return True

    def _follow(self) -> None:
        while not self._stop.wait(self._retry_seconds):
            if self._try_lead():
                log.info("process %s took over the scheduler", os.getpid())
                self._lead()
                return

    def _lead(self) -> None:
        for rt in self._runtimes.values():
            # rollout decisions fall due with time too (maxHours, rows outside writers appended), whatever autoTrain says
            self._scheduler.add_job(rt.rollout_tick, "interval", seconds=ROLLOUT_SECONDS, id=f"rollout:{rt.name}",
                                    name=f"rollout {rt.name}", replace_existing=True)
            training = rt.config.training
            if training.auto_train:
                self._scheduler.add_job(
                    self._tick, "interval", args=[rt], seconds=training.auto_train_interval_hours * 3600,
                    id=job_id(rt.name), name=f"auto-train {rt.name}", replace_existing=True,
                )
            if training.auto_train and training.schedule is not None:
                self._scheduler.add_job(
                    self._scheduled, CronTrigger.from_crontab(training.schedule, timezone="UTC"), args=[rt],
                    id=schedule_job_id(rt.name), name=f"scheduled-train {rt.name}", replace_existing=True,
                    max_instances=1, coalesce=True,
                )
        self._scheduler.start()
        self._publish()
        log.info("process %s runs the scheduler", os.getpid())
        for rt in self._runtimes.values():
            if rt.config.training.auto_train:
                start_up(rt)

    def _tick(self, rt: ModelRuntime) -> None:
        try:
            rt.tick()
        finally:
            self._publish()

    def _scheduled(self, rt: ModelRuntime) -> None:
        try:
            rt.scheduled_check()
        finally:
            self._publish()

    def _publish(self) -> None:
        times = {name: self._own_next_run(name) for name in self._runtimes}
        try:
            atomic_write(self._schedule_path, json.dumps(times).encode("utf-8"))
        except OSError as exc:
            log.warning("next check times not published: %s", exc)

    def _own_next_run(self, model: str) -> str | None:
        if not self._scheduler.running:
            return None
        jobs = (self._scheduler.get_job(job_id(model)), self._scheduler.get_job(schedule_job_id(model)))
        times = [job.next_run_time for job in jobs if job is not None and job.next_run_time is not None]
        return min(times).isoformat() if times else None

    def next_run(self, model: str) -> str | None:
        """When the model's next check runs (ISO 8601), whichever process leads; None when not scheduled."""
        if self.is_leader:
            return self._own_next_run(model)
        try:
            return json.loads(self._schedule_path.read_text()).get(model)
        except (FileNotFoundError, ValueError):
            return None

    def shutdown(self) -> None:
        """Stop the checks and give up leadership."""
        self._stop.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._leader_fd is not None:
            os.close(self._leader_fd)
            self._leader_fd = None

    @staticmethod
    def _on_error(event: JobExecutionEvent) -> None:
        log.error("scheduled check %s failed", event.job_id, exc_info=event.exception)


def start_up(rt: ModelRuntime) -> None:
    """Train at once a model that has enough samples but no active version (trigger 'startup')."""
    if rt.slot.served is not None or rt.registry.state()["active"]:
        return
    _, new = rt.sample_counts()
    if new < rt.config.training.min_samples_for_training:
        return
    try:
        rt.submit_training("startup")
    except Conflict:
        log.info("model %s: start-up training left to the process already training it", rt.name)
