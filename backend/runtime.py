"""ModelRuntime: one configured model's sample store, registry, serving slot, history and job runner."""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from . import quality, triggers
from .config import ModelConfig, PredictionLogConfig, ServingConfig, StorageConfig
from .datasets import dataset_path
from .errors import Conflict, DataQualityError, Invalid
from .events import EventJournal
from .executor import ComputeConfig
from .history import HistoryLog
from .jobs import Job, JobRunner
from .metrics import Metrics
from .monitoring import Monitor
from .notifications import Notifier
from .options import TrainingRequest, check as check_options, merge as merge_options
from .predictionlog import PredictionLog
from .registry import Registry
from .rollout import Rollout
from .shadow import ShadowPredictor
from .samples import SampleStore
from .slot import ServingSlot
from .training import read_samples
from .training import window as training_window

log = logging.getLogger(__name__)

RunJob = Callable[["ModelRuntime", Job], None]  # what a job runs (retrain.run_job); passed in, so no import cycle


class ModelRuntime:
    """Everything one model needs at run time; the API, scheduler and CLI share it."""

    def __init__(self, config: ModelConfig, storage: StorageConfig, history: HistoryLog, notifier: Notifier,
                 run_job: RunJob, metrics: Metrics | None = None, *, base_dir: Path | None = None,
                 clock: Callable[[], float] = time.monotonic, prediction_log: PredictionLogConfig | None = None,
                 serving: ServingConfig | None = None, journal: EventJournal | None = None,
                 compute: ComputeConfig | None = None):
        self.config = config
        self.compute = compute or ComputeConfig()  # where its trainings run their fits (the global ``compute`` block)
        self.name = config.name
        self.data_dir = storage.data_dir
        self.base_dir = base_dir or storage.data_dir  # the config file's folder: relative paths in requests start here
        self.history = history
        self.notifier = notifier
        self.registry = Registry(storage.models_dir / config.name, config.name)
        self.store = SampleStore(config.training.log_file, self._new_file_columns())
        self.metrics = metrics
        self.clock = clock  # a job's time budget is measured on it
        self.serving = serving or ServingConfig()  # which runtime answers predictions (CONTRACT §11)
        self.slot = ServingSlot(config.name, self.registry, self.record, metrics, self.serving)
        self._run_job = run_job
        self.runner = JobRunner(config.name, self._run, self.registry.folder, journal=journal)
        self.age_trigger = triggers.AgeTrigger()  # tick's maxModelAgeHours check (remembers its one skip)
        self.monitor = Monitor(config, self.store, self.registry, lambda: self.slot.served, self.record, metrics)
        kept = prediction_log or PredictionLogConfig()
        self.predictions = PredictionLog(self.registry.folder / "predictions", kept.keep_hours, kept.max_megabytes)
        self.shadow = ShadowPredictor(PredictionLog(self.registry.folder / "predictions" / "shadow", kept.keep_hours,
                                                    kept.max_megabytes))
        self.feedback_lock = threading.Lock()
        self.rollout = Rollout(config, self.registry, self.slot, self.monitor, self.record,
                               lambda level, version, kind, message, details:
                               notifier.notify(level, config.name, version, kind, message, details))

    def _new_file_columns(self) -> list[str]:
        features = list(self.config.features or ())
        return features + [self.config.target]

    @property
    def served(self):
        """The version this process serves now (see ``ServingSlot.served``)."""
        return self.slot.served

    def record(self, event_type: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a history event and raise the notification it calls for."""
        event = self.history.append(event_type, self.name, message, details)
        served = self.slot.served
        self.notifier.from_event(event, served.version if served else None)
        return event

    def _run(self, job: Job) -> None:
        try:
            self._run_job(self, job)
        finally:
            if self.metrics is not None:
                status, result, _ = job.recorded()
                result = result or {}
                outcome = status if status != "completed" else (
                    "promoted" if result.get("promoted") else "staged" if result.get("staged") else "rejected")
                self.metrics.trainings.labels(model=self.name, outcome=outcome).inc()

    def recover(self) -> list[str]:
        """Fail the jobs a killed process left unfinished (TRAINING_FAILED, reason 'interrupted') and clear their files."""
        def interrupted(record: dict[str, Any]) -> None:
            shutil.rmtree(self.registry.folder / ".staging" / record["job_id"], ignore_errors=True)
            self.record("TRAINING_FAILED", "Model training failed: the process running it stopped",
                        {"error": "the process running this job stopped", "reason": "interrupted",
                         "job_id": record["job_id"], "trigger": record["trigger"]})

        return self.runner.recover_interrupted(interrupted)

    # -- samples -----------------------------------------------------------------------------

    def sample_counts(self) -> tuple[int, int]:
        """Return (total rows, rows added since the last training on the store)."""
        total = self.store.count()
        return total, self.new_since_training(total)

    def new_since_training(self, total: int, trained: int | None = None) -> int:
        """Rows beyond those the last training consumed; all of them if the file was replaced by a smaller one."""
        if trained is None:
            trained = self.registry.state()["trained_rows"]
        return total - trained if total >= trained else total

    # -- training ----------------------------------------------------------------------------

    def submit_training(self, trigger: str, given: dict[str, Any] | None = None, *, wait: bool = False) -> Job:
        """Check a request's options and start a training job; 409 if one is running, 422 on a bad option.

        ``given`` holds a partial load of ``schemas.TrainRequest`` (options by their Python names,
        plus ``force``, ``csv_path`` and ``dataset_id``).
        """
        given = {k: v for k, v in (given or {}).items() if v is not None}
        force = bool(given.pop("force", False))
        requested = given.pop("csv_path", None)
        if given.get("dataset_id"):
            requested = dataset_path(self.data_dir, given.pop("dataset_id"))
        csv_path = str(self.resolve_data_path(requested)) if requested is not None else None
        chosen = merge_options(self.config.training.options, given)
        check_options(chosen, self.config.task)
        request = TrainingRequest(options=chosen, force=force, csv_path=csv_path, overrides=tuple(sorted(given)))
        return self.runner.submit(trigger, request, wait=wait)

    def resolve_data_path(self, requested: str | os.PathLike[str]) -> Path:
        """Find a request's file: a relative path against the config's folder, then the data folder.

        Whichever is found, its real path (symlinks followed) must lie inside the data folder.
        """
        root = Path(os.path.realpath(self.data_dir))
        text = str(requested)
        tries = [Path(text)] if os.path.isabs(text) else [self.base_dir / text, root / text]
        outside = False
        for path in tries:
            try:
                real = Path(os.path.realpath(path))
                inside = real == root or root in real.parents
                if inside and real.is_file():
                    return real
                outside = outside or (not inside and real.exists())
            except (ValueError, OSError):  # a NUL byte, a name too long: not a path we could ever read
                continue
        if outside:
            raise Invalid("csv_path must name a file inside the data folder", code="invalid_path",
                          details={"field": "csv_path", "csv_path": text[:200]})
        raise Invalid(f"csv_path '{text[:200]}' is not a file in the data folder (relative paths are looked up in "
                      "the config file's folder, then in the data folder)", code="invalid_path",
                      details={"field": "csv_path", "csv_path": text[:200]})

    def data_quality(self, csv_path: str | None = None, dataset_id: str | None = None) -> dict[str, Any]:
        """The data-quality report of the sample store (or of a file in the data folder) as training would see it."""
        if dataset_id:
            csv_path = dataset_path(self.data_dir, dataset_id)
        path, limit = (self.resolve_data_path(csv_path), None) if csv_path else (self.store.path, self.store.snapshot()[1])
        settings = self.config.training.options
        try:
            frame, skipped = read_samples(path, limit)
            found = quality.report(training_window(frame, settings.training_window), self.config.target,
                                   list(self.config.features or []) or None, self.config.task, settings.test_size,
                                   settings.data_quality.max_invalid_fraction)
        except DataQualityError as exc:
            found, skipped = {"rows": 0, "problems": [{"problem": exc.problem, "message": str(exc)}], "warnings": []}, 0
        if skipped:
            found["warnings"].append(f"{skipped} malformed line(s) would be skipped")
        return {"model": self.name, "source": path.name, "ok": not found["problems"], **found}

    def tick(self, now: datetime | None = None) -> Job | None:
        """The scheduler's check: train when enough new samples arrived, else log TRAINING_SKIPPED.

        ``now`` (UTC, default the real time) is the clock of the time triggers, so tests pass their own.
        """
        self.rollout_tick()  # rows outside writers appended are scored before any training can use them
        if self.runner.running_anywhere() is not None:
            log.info("model %s: tick skipped, a training is running", self.name)
            return None
        total, new = self.sample_counts()
        # drift (CONTRACT §8): an open episode trains once, below minSamplesForTraining but with >= minLabels new rows
        if self.monitor.training_due(new):
            try:
                job = self.submit_training("drift")
            except Conflict:
                return None
            self.monitor.training_started(job.job_id)
            return job
        # maxModelAgeHours: a stale active version trains on any new row (trigger "age"), see triggers.py
        handled, job = self.age_trigger.check(self, now, total, new)
        if handled:
            return job
        minimum = self.config.training.min_samples_for_training
        if new < minimum:
            self.record("TRAINING_SKIPPED", f"Not enough new samples ({new} < {minimum})",
                                {"n_samples": new, "min_required": minimum, "total_samples": total,
                                 "reason": "not_enough_new_samples", "trigger": "auto", "pid": os.getpid()})
            return None
        try:
            return self.submit_training("auto")
        except Conflict:
            log.info("model %s: tick found a training running in another process", self.name)
            return None

    def scheduled_check(self, now: datetime | None = None) -> Job | None:
        """The ``schedule`` cron job's run at ``now``: train on any new row (trigger 'schedule'), else TRAINING_SKIPPED."""
        return triggers.scheduled_check(self, now)

    def add_samples(self, rows: list[dict[str, Any]], *, score_live: bool = True) -> dict[str, Any]:
        """Append validated rows durably; return the counts ``POST /samples`` answers with."""
        total = self.store.append(rows)
        if self.metrics is not None:
            self.metrics.samples.labels(model=self.name).inc(len(rows))
        if score_live:
            self.score_live()
        return {"accepted": len(rows), "total_samples": total, "samples_since_last_training": self.new_since_training(total)}

    def score_live(self) -> None:
        """Score new rows with the served version (test-then-train), then the watch; a failure is logged, never lost samples."""
        try:
            self.monitor.update()
            self.rollout.check_watch()
        except Exception:  # the rows are stored already: a 500 would only make the client send them twice
            log.exception("model %s: live scoring failed", self.name)

    def rollout_tick(self) -> None:
        """Score new rows, take the rollout decisions due without new labels, apply the prediction log's retention."""
        self.score_live()
        try:
            self.rollout.decide()
            self.predictions.prune()
            self.shadow.predictions.prune()
        except Exception:  # a rollout problem must not stop training checks
            log.exception("model %s: rollout check failed", self.name)
