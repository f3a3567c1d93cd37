"""Training jobs: their records and the runner that allows one per model at a time.

The runner is the single door to training: the API, the scheduler and the
CLI all submit here. "One at a time" holds across processes: a running job
keeps an exclusive ``flock`` on the model's lock file (which names the job),
so a second submitter anywhere gets a 409 naming the running job.

Job records live on disk (``<modelsDir>/<model>/jobs/<id>.json``, replaced
atomically, progress at most twice a second) so every worker process can
list, read and cancel every job, and a job left ``running`` by a killed
process is found and marked ``interrupted`` at the next start. A cancel from
another process is a marker file the owning process watches.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import Conflict, NotFound
from .files import atomic_write
from .history import utc_now

if TYPE_CHECKING:
    from .events import EventJournal

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "skipped", "failed", "cancelled"})
STATUSES = ("queued", "running") + tuple(sorted(TERMINAL))
SAVE_EVERY = 0.5  # seconds between progress writes of one job
CLAIM_PATIENCE = 0.2  # seconds a submitter waits for the training lock before answering 409


@dataclass
class Job:
    """One training request and how far it got. Changed only by the thread that runs it."""

    job_id: str
    model: str
    trigger: str
    options: Any  # what the run function needs (a TrainingRequest); recorded through its to_dict()
    status: str = "queued"
    progress: int = 0
    stage: str = "queued"
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pid: int = field(default_factory=os.getpid)
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    # set once the runner is completely done with the job, its final record on disk included
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    on_change: Callable[[Job, bool], None] = field(default=lambda job, final: None, repr=False)
    cancel_marker: Path | None = field(default=None, repr=False)
    _outcome: tuple[str, dict[str, Any] | None, dict[str, Any] | None] | None = field(default=None, repr=False)

    def advance(self, progress: float, stage: str) -> None:
        self.progress = max(self.progress, min(100, int(progress)))
        self.stage = stage
        self.on_change(self, False)

    def start(self) -> None:
        self.started_at = utc_now()
        self.status = "running"
        self.on_change(self, True)

    def finish(self, status: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        """Record the outcome; the runner publishes it once the model's training lock is free again."""
        self._outcome = (status, result, error)

    @property
    def has_outcome(self) -> bool:
        """Whether ``finish`` has recorded the job's outcome."""
        return self._outcome is not None

    def recorded(self) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
        """The outcome ``finish`` recorded (a job that recorded none has failed)."""
        return self._outcome or ("failed", None, {"reason": "error", "message": "the job ended without a result"})

    def conclude(self) -> None:
        """Publish the recorded outcome."""
        status, result, error = self.recorded()
        self.result, self.error = result, error
        self.stage = status
        if status in ("completed", "skipped"):
            self.progress = 100
        self.finished_at = utc_now()
        self.status = status  # last: a poller that sees a terminal status sees the rest too
        self.on_change(self, True)

    def cancelled(self) -> bool:
        """Whether anyone, in this process or another, asked this job to stop."""
        if not self.cancel_requested.is_set() and self.cancel_marker is not None and self.cancel_marker.exists():
            self.cancel_requested.set()
        return self.cancel_requested.is_set()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model": self.model,
            "trigger": self.trigger,
            "options": self.options.to_dict() if hasattr(self.options, "to_dict") else self.options,
            "status": self.status,
            "progress": self.progress,
            "stage": self.stage,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
            "pid": self.pid,
        }


class JobRunner:
    """Run one model's jobs in background threads, one at a time across processes, and keep their records."""

    def __init__(self, model: str, run: Callable[[Job], None], folder: Path, keep: int = 200,
                 journal: EventJournal | None = None):
        self.model = model
        self._journal = journal  # the console's event stream: one entry per record written
        self._run = run
        self._folder = folder / "jobs"
        self._lock_path = folder / ".training.lock"
        self._keep = keep
        self._current: Job | None = None
        self._guard = threading.Lock()
        self._saved_at: dict[str, float] = {}

    @property
    def current(self) -> Job | None:
        """The job this process is running, if any."""
        return self._current

    def running_anywhere(self) -> str | None:
        """The id of the job holding the model's training lock in any process, or None."""
        if self._current is not None:
            return self._current.job_id
        try:
            fd = os.open(self._lock_path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            # a shared lock only tests for a holder; submitters retry past it (see _claim)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)  # also drops the lock if we took it
        return None

    def submit(self, trigger: str, options: Any = None, *, wait: bool = False) -> Job:
        """Start a job in the background (or in this thread when ``wait``); 409 if one is running anywhere."""
        job_id = uuid.uuid4().hex[:12]
        job = Job(job_id=job_id, model=self.model, trigger=trigger, options=options,
                  on_change=self._save, cancel_marker=self._folder / f"{job_id}.cancel")
        with self._guard:
            if self._current is not None:
                raise self._conflict(self._current.job_id)
            fd = self._claim(job.job_id)
            self._current = job
        self._save(job, True)
        if wait:
            self._execute(job, fd)
        else:
            threading.Thread(target=self._execute, args=(job, fd), name=f"refit-job-{self.model}", daemon=True).start()
        return job

    def _claim(self, job_id: str) -> int:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        # A status check holds the lock shared for microseconds, and a winning submitter writes its
        # job id just after locking: retry briefly so neither shows up as a 409 or as the wrong job id.
        deadline = time.monotonic() + CLAIM_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
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
            job.start()
            self._run(job)
        except Exception as exc:  # the run function reports its own failures; this is the last net
            log.exception("training job %s of %s crashed", job.job_id, self.model)
            job.finish("failed", error={"reason": "error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            if job.cancel_marker is not None:
                job.cancel_marker.unlink(missing_ok=True)
            os.close(fd)  # releases the cross-process claim
            with self._guard:
                self._current = None
            # only now is the job seen to end, so whoever sees it end can start the next one at once
            try:
                job.conclude()
                self._prune()
            finally:
                job.done.set()

    def _save(self, job: Job, final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._saved_at.get(job.job_id, 0.0) < SAVE_EVERY:
            return
        self._saved_at[job.job_id] = now
        record = job.to_dict()
        try:
            atomic_write(self._folder / f"{job.job_id}.json", json.dumps(record, default=str).encode("utf-8"))
        except OSError as exc:  # a full or read-only disk must not break the job itself
            log.warning("job %s of %s not saved: %s", job.job_id, self.model, exc)
        if self._journal is not None:
            self._journal.append("job", self.model, record)
        if final and job.status in TERMINAL:
            self._saved_at.pop(job.job_id, None)

    def _prune(self) -> None:
        records = sorted(self._folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in records[: max(0, len(records) - self._keep)]:
            path.unlink(missing_ok=True)

    def _read(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._folder / f"{job_id}.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def get(self, job_id: str) -> dict[str, Any]:
        """Return a job's record (this process's live one, else the saved one); 404 otherwise."""
        current = self._current
        if current is not None and current.job_id == job_id:
            return current.to_dict()
        record = self._read(job_id) if _is_job_id(job_id) else None
        if record is None:
            raise NotFound(f"No job '{job_id}' for model '{self.model}'", code="job_not_found",
                           details={"model": self.model, "job_id": job_id})
        return record

    def list(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Return job records newest first, optionally only those with ``status``."""
        records = [r for r in (self._read(p.stem) for p in self._folder.glob("*.json")) if r]
        current = self._current
        if current is not None:
            records = [r for r in records if r["job_id"] != current.job_id] + [current.to_dict()]
        records.sort(key=lambda r: r["created_at"], reverse=True)
        records = [r for r in records if status is None or r["status"] == status]
        return records[:limit] if limit is not None else records

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a queued or running job to stop, whichever process runs it; 409 when it has already ended."""
        record = self.get(job_id)
        if record["status"] in TERMINAL:
            raise Conflict(f"Job '{job_id}' has already ended ({record['status']})", code="job_finished",
                           details={"job_id": job_id, "status": record["status"]})
        current = self._current
        if current is not None and current.job_id == job_id:
            current.cancel_requested.set()
        else:
            (self._folder / f"{job_id}.cancel").touch()
        return {**record, "cancel_requested": True}

    def recover_interrupted(self, on_interrupted: Callable[[dict[str, Any]], None]) -> list[str]:
        """Mark jobs left queued or running by a process that died; call ``on_interrupted`` for each.

        Only while holding the training lock: then no live process is running
        a job of this model, so any unfinished record is an orphan.
        """
        try:
            fd = self._claim("recovering")
        except Conflict:
            return []
        try:
            found = []
            for record in self.list():
                if record["status"] in TERMINAL:
                    continue
                record.update(status="failed", stage="failed", finished_at=utc_now(),
                              error={"reason": "interrupted", "message": "the process running this job stopped"})
                atomic_write(self._folder / f"{record['job_id']}.json", json.dumps(record, default=str).encode("utf-8"))
                if self._journal is not None:
                    self._journal.append("job", self.model, record)
                (self._folder / f"{record['job_id']}.cancel").unlink(missing_ok=True)
                on_interrupted(record)
                found.append(record["job_id"])
            return found
        finally:
            os.ftruncate(fd, 0)
            os.close(fd)


def _is_job_id(value: str) -> bool:
    return len(value) == 12 and all(c in "0123456789abcdef" for c in value)
