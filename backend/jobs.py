"""Training jobs: their records and the runner that allows one per model at a time.

The runner is the single door to training: the API, the scheduler and the
CLI all submit here. "One at a time" holds across processes too: a running
job keeps an exclusive ``flock`` on the model's lock file (which names the
job), so a second submitter anywhere gets a 409 naming the running job.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import Conflict, NotFound
from .history import utc_now

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "skipped", "failed", "cancelled"})
STATUSES = ("queued", "running") + tuple(sorted(TERMINAL))


@dataclass
class Job:
    """One training request and how far it got. Changed only by its own thread."""

    job_id: str
    model: str
    trigger: str
    options: dict[str, Any]
    status: str = "queued"
    progress: int = 0
    stage: str = "queued"
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)

    def advance(self, progress: int, stage: str) -> None:
        self.progress = max(self.progress, min(100, int(progress)))
        self.stage = stage

    def finish(self, status: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        self.result, self.error = result, error
        self.stage = status
        if status in ("completed", "skipped"):
            self.progress = 100
        self.finished_at = utc_now()
        self.status = status  # last: a poller that sees a terminal status sees the rest too

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model": self.model,
            "trigger": self.trigger,
            "options": self.options,
            "status": self.status,
            "progress": self.progress,
            "stage": self.stage,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
        }


class JobRunner:
    """Run one model's jobs in background threads, one at a time, and remember the recent ones."""

    def __init__(self, model: str, run: Callable[[Job], None], lock_path: Path, keep: int = 200):
        self.model = model
        self._run = run
        self._lock_path = lock_path
        self._keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._current: Job | None = None
        self._guard = threading.Lock()

    @property
    def current(self) -> Job | None:
        """The queued or running job, if any."""
        return self._current

    def submit(self, trigger: str, options: dict[str, Any] | None = None, *, wait: bool = False) -> Job:
        """Start a job in the background (or in this thread when ``wait``); 409 if one is running anywhere."""
        job = Job(job_id=uuid.uuid4().hex[:12], model=self.model, trigger=trigger, options=dict(options or {}))
        with self._guard:
            if self._current is not None:
                raise self._conflict(self._current.job_id)
            fd = self._claim(job.job_id)
            self._current = job
            self._jobs[job.job_id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        if wait:
            self._execute(job, fd)
        else:
            threading.Thread(target=self._execute, args=(job, fd), name=f"refit-job-{self.model}", daemon=True).start()
        return job

    def _claim(self, job_id: str) -> int:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise self._conflict(holder, elsewhere=True) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, job_id.encode("ascii"), 0)
        return fd

    def _conflict(self, job_id: str, elsewhere: bool = False) -> Conflict:
        where = " in another process" if elsewhere else ""
        return Conflict(
            f"Model '{self.model}' is already training{where} (job {job_id}); wait for it or cancel it.",
            code="training_in_progress",
            details={"job_id": job_id, "model": self.model},
        )

    def _execute(self, job: Job, fd: int) -> None:
        try:
            job.started_at = utc_now()
            job.status = "running"
            self._run(job)
        except Exception as exc:  # the run function reports its own failures; this is the last net
            log.exception("training job %s of %s crashed", job.job_id, self.model)
            job.finish("failed", error={"reason": "error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            if job.status not in TERMINAL:
                job.finish("failed", error={"reason": "error", "message": "the job ended without a result"})
            os.close(fd)  # releases the cross-process claim
            with self._guard:
                self._current = None

    def get(self, job_id: str) -> Job:
        """Return a remembered job; 404 otherwise."""
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"No job '{job_id}' for model '{self.model}'", code="job_not_found",
                           details={"model": self.model, "job_id": job_id})
        return job

    def list(self, status: str | None = None, limit: int | None = None) -> list[Job]:
        """Return remembered jobs newest first, optionally only those with ``status``."""
        jobs = [j for j in reversed(self._jobs.values()) if status is None or j.status == status]
        return jobs[:limit] if limit is not None else jobs

    def cancel(self, job_id: str) -> Job:
        """Ask a queued or running job to stop; 409 when it has already ended."""
        job = self.get(job_id)
        if job.status in TERMINAL:
            raise Conflict(f"Job '{job_id}' has already ended ({job.status})", code="job_finished",
                           details={"job_id": job_id, "status": job.status})
        job.cancel_requested.set()
        return job
