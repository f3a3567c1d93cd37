"""ModelRuntime: one configured model's sample store, registry, served model, history and job runner."""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from sklearn.pipeline import Pipeline

from . import options, retrain
from .config import ModelConfig, StorageConfig
from .datasets import dataset_path
from .errors import Conflict, Invalid, NotFound, Unavailable
from .history import HistoryLog
from .jobs import Job, JobRunner
from .metrics import Metrics
from .notifications import Notifier
from .registry import Registry
from .samples import SampleStore
from .serving import ArtifactError, ServedModel, load_checked, served_from_record, version_mismatch
from . import quality
from .training import DataQualityError, read_samples
from .training import window as training_window

log = logging.getLogger(__name__)


class ModelRuntime:
    """Everything one model needs at run time; the API, scheduler and CLI share it."""

    def __init__(self, config: ModelConfig, storage: StorageConfig, history: HistoryLog, notifier: Notifier,
                 metrics: Metrics | None = None):
        self.config = config
        self.name = config.name
        self.data_dir = storage.data_dir
        self.history = history
        self.notifier = notifier
        self.registry = Registry(storage.models_dir / config.name, config.name)
        self.store = SampleStore(config.training.log_file, self._new_file_columns())
        self.metrics = metrics
        self._served: ServedModel | None = None
        self.switch_lock = threading.Lock()  # one registry commit + swap at a time (promotion, activate, rollback)
        self._registry_seen: tuple[int, int, int] | None = None
        self._next_sync = 0.0
        self._syncing = threading.Lock()
        self.runner = JobRunner(config.name, self._run, self.registry.folder)

    def _new_file_columns(self) -> list[str]:
        features = list(self.config.features or ())
        return features + [self.config.target]

    @property
    def served(self) -> ServedModel | None:
        """The loaded version this process serves; replaced whole, never changed in place."""
        return self._served

    @served.setter
    def served(self, model: ServedModel | None) -> None:
        self._served = model
        if self.metrics is not None:
            self.metrics.serving(self.name, model.version if model else None)

    def record(self, event_type: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a history event and raise the notification it calls for."""
        event = self.history.append(event_type, self.name, message, details)
        self.notifier.from_event(event)
        return event

    def _run(self, job: Job) -> None:
        try:
            retrain.run_job(self, job)
        finally:
            if self.metrics is not None:
                status, result, _ = job.recorded()
                outcome = status if status != "completed" else ("promoted" if (result or {}).get("promoted") else "rejected")
                self.metrics.trainings.labels(model=self.name, outcome=outcome).inc()

    def recover(self) -> list[str]:
        """Fail the jobs a killed process left unfinished (TRAINING_FAILED, reason 'interrupted') and clear their files."""
        def interrupted(record: dict[str, Any]) -> None:
            shutil.rmtree(self.registry.folder / ".staging" / record["job_id"], ignore_errors=True)
            self.record("TRAINING_FAILED", "Model training failed: the process running it stopped",
                        {"error": "the process running this job stopped", "reason": "interrupted",
                         "job_id": record["job_id"], "trigger": record["trigger"]})

        return self.runner.recover_interrupted(interrupted)

    # -- serving ---------------------------------------------------------------------------

    def load_version(self, version: str) -> tuple[dict[str, Any], Pipeline]:
        """Load and check one version; on failure log MODEL_LOAD_FAILED, mark it failed, and raise ArtifactError."""
        record = self.registry.version(version)
        try:
            if record["status"] == "pruned":
                raise ArtifactError(f"version {version} was pruned; its artifact is gone")
            pipeline = load_checked(Path(record["model_path"]), {**self.registry.metadata(version), **record})
        except (ArtifactError, OSError, ValueError) as exc:
            reason = str(exc)
            log.error("model %s version %s not loaded: %s", self.name, version, reason)
            if record["status"] != "pruned":
                self.registry.set_status(version, "failed", reason)
            self.record("MODEL_LOAD_FAILED", f"Version {version} could not be loaded", {"version": version, "error": reason})
            raise ArtifactError(reason) from exc
        mismatch = version_mismatch(record)
        if mismatch:
            log.warning("model %s version %s: %s", self.name, version, mismatch)
            self.registry.annotate(version, {"load_warning": mismatch})
        return record, pipeline

    def load_active(self) -> ServedModel | None:
        """Serve the active version; if it will not load or verify, the newest version that does."""
        state = self.registry.state()
        order = [state["active"]] if state["active"] else []
        order += [r["version"] for r in self.registry.versions() if r["status"] == "inactive"]
        for version in order:
            try:
                record, pipeline = self.load_version(version)
            except ArtifactError:
                continue
            if version != state["active"]:
                self.registry.activate(version)
                self.record("MODEL_ACTIVATED", f"Version {version} serves in place of a version that failed to load",
                            {"version": version, "previous_version": state["active"], "reason": "load_failed"})
            self.served = served_from_record(record, pipeline)
            return self.served
        self.served = None
        return None

    def current(self) -> ServedModel | None:
        """Return the served model, noticing cheaply when another process moved the registry's active pointer.

        The request path pays one ``stat`` (and a clock read); when the registry
        file changed, or a second has passed, a background thread re-reads it
        and loads the newly active version. No request waits for that load.
        """
        try:
            info = os.stat(self.registry.path)
            seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            seen = None
        now = time.monotonic()
        if (seen != self._registry_seen or now >= self._next_sync) and not self._syncing.locked():
            self._registry_seen, self._next_sync = seen, now + 1.0
            threading.Thread(target=self.sync_with_registry, name=f"refit-sync-{self.name}", daemon=True).start()
        return self.served

    def sync_with_registry(self) -> None:
        """Serve what the registry says is active, if that is not what this process serves."""
        if not self._syncing.acquire(blocking=False):
            return
        try:
            active = self.registry.state()["active"]
            if active is None or (self.served is not None and self.served.version == active):
                return
            try:
                record, pipeline = self.load_version(active)
            except ArtifactError:
                return  # logged as MODEL_LOAD_FAILED; the current version keeps serving
            with self.switch_lock:
                if self.registry.state()["active"] == active:
                    self.served = served_from_record(record, pipeline)
                    log.info("model %s now serves %s (changed by another process)", self.name, active)
        finally:
            self._syncing.release()

    def require_served(self) -> ServedModel:
        """Return the served model or raise 503 when there is none."""
        served = self.current()
        if served is None:
            if self.registry.state()["versions"]:
                raise Unavailable(f"No version of model '{self.name}' could be loaded; see MODEL_LOAD_FAILED in the "
                                  "history, then train or activate a good version.", code="no_loadable_version",
                                  details={"model": self.name})
            raise Unavailable(
                f"Model '{self.name}' has no trained version yet; post samples and train it (POST /api/{self.name}/train).",
                code="model_not_ready", details={"model": self.name},
            )
        return served

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

    def submit_training(self, trigger: str, overrides: dict[str, Any] | None = None, *, wait: bool = False) -> Job:
        """Check the overrides and start a training job; 409 if one is running, 422 on a bad override."""
        overrides = dict(overrides or {})
        job_options: dict[str, Any] = {"force": bool(overrides.pop("force", False))}
        if overrides.get("dataset_id"):
            overrides["csv_path"] = dataset_path(self.data_dir, overrides.pop("dataset_id"))
        if overrides.get("csv_path") is not None:
            job_options["csv_path"] = str(self.resolve_data_path(overrides.pop("csv_path")))
        job_options["training"] = options.effective(self.config, overrides)
        job_options["overrides"] = sorted(k for k, v in overrides.items() if v is not None)
        return self.runner.submit(trigger, job_options, wait=wait)

    def resolve_data_path(self, requested: str) -> Path:
        """Resolve a request's path against the data folder; refuse anything whose real path is outside it."""
        root = Path(os.path.realpath(self.data_dir))
        try:
            candidate = Path(os.path.realpath(root / requested))
            inside = candidate == root or root in candidate.parents
            is_file = inside and candidate.is_file()
        except (ValueError, OSError):  # a NUL byte, a name too long: not a path we could ever read
            inside, is_file = True, False
        if not inside:
            raise Invalid("csv_path must name a file inside the data folder", code="invalid_path",
                          details={"field": "csv_path", "csv_path": requested[:200]})
        if not is_file:
            raise Invalid(f"csv_path '{requested[:200]}' is not a file in the data folder", code="invalid_path",
                          details={"field": "csv_path", "csv_path": requested[:200]})
        return candidate

    def data_quality(self, csv_path: str | None = None, dataset_id: str | None = None) -> dict[str, Any]:
        """The data-quality report of the sample store (or of a file in the data folder) as training would see it."""
        if dataset_id:
            csv_path = dataset_path(self.data_dir, dataset_id)
        path, limit = (self.resolve_data_path(csv_path), None) if csv_path else (self.store.path, self.store.snapshot()[1])
        settings = self.config.training
        try:
            frame, skipped = read_samples(path, limit)
            found = quality.report(training_window(frame, settings.training_window), self.config.target,
                                   list(self.config.features or []) or None, self.config.task, settings.test_size,
                                   settings.data_quality["max_invalid_fraction"])
        except DataQualityError as exc:
            found, skipped = {"rows": 0, "problems": [{"problem": exc.problem, "message": str(exc)}], "warnings": []}, 0
        if skipped:
            found["warnings"].append(f"{skipped} malformed line(s) would be skipped")
        return {"model": self.name, "source": path.name, "ok": not found["problems"], **found}

    def tick(self) -> Job | None:
        """The scheduler's check: train when enough new samples arrived, else log TRAINING_SKIPPED."""
        if self.runner.running_anywhere() is not None:
            log.info("model %s: tick skipped, a training is running", self.name)
            return None
        total, new = self.sample_counts()
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

    def add_samples(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Append validated rows durably; return the counts ``POST /samples`` answers with."""
        total = self.store.append(rows)
        if self.metrics is not None:
            self.metrics.samples.labels(model=self.name).inc(len(rows))
        return {"accepted": len(rows), "total_samples": total, "samples_since_last_training": self.new_since_training(total)}

    def status(self) -> dict[str, Any]:
        """Return the training status document of ``GET /api/<m>/training/status``."""
        state = self.registry.state()
        total = self.store.count()
        new = self.new_since_training(total, state["trained_rows"])
        running = self.runner.running_anywhere()
        current = None
        if running is not None:
            try:
                current = self.runner.get(running)
            except NotFound:
                current = {"job_id": running, "status": "running"}
        training = self.config.training
        return {
            "model": self.name,
            "training_in_progress": running is not None,
            "last_training_time": state["last_training_time"],
            "auto_training_enabled": training.auto_train,
            "auto_training_interval_hours": training.auto_train_interval_hours,
            "min_samples_required": training.min_samples_for_training,
            "recent_training_history": self.history.tail(model=self.name, limit=10),
            "active_version": self.served.version if self.served else None,
            "total_samples": total,
            "samples_since_last_training": new,
            "current_job": current,
        }
