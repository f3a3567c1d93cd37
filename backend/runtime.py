"""ModelRuntime: one configured model's sample store, registry, served model, history and job runner."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from . import retrain
from .config import MODEL_TYPES, ModelConfig, StorageConfig
from .errors import Conflict, Invalid, Unavailable
from .history import HistoryLog
from .jobs import Job, JobRunner
from .registry import Registry
from .samples import SampleStore, read_header
from .serving import ArtifactError, ServedModel, load_artifact, served_from_record
from .training import feature_kinds

log = logging.getLogger(__name__)


class ModelRuntime:
    """Everything one model needs at run time; the API, scheduler and CLI share it."""

    def __init__(self, config: ModelConfig, storage: StorageConfig, history: HistoryLog):
        self.config = config
        self.name = config.name
        self.data_dir = storage.data_dir
        self.history = history
        self.registry = Registry(storage.models_dir / config.name, config.name)
        self.store = SampleStore(config.training.log_file, self._new_file_columns())
        self.served: ServedModel | None = None
        self.runner = JobRunner(config.name, self._run, lock_path=self.registry.folder / ".training.lock")

    def _new_file_columns(self) -> list[str]:
        features = list(self.config.features or ())
        return features + [self.config.target]

    def _run(self, job: Job) -> None:
        retrain.run_job(self, job)

    # -- serving ---------------------------------------------------------------------------

    def load_active(self) -> ServedModel | None:
        """Serve the active version; if it will not load or verify, the newest version that does."""
        state = self.registry.state()
        order = [state["active"]] if state["active"] else []
        order += [r["version"] for r in self.registry.versions() if r["status"] == "inactive"]
        for version in order:
            record = self.registry.version(version)
            try:
                pipeline = load_artifact(Path(record["model_path"]), record["sha256"])
            except ArtifactError as exc:
                log.error("model %s version %s not loaded: %s", self.name, version, exc)
                self.history.append("MODEL_LOAD_FAILED", self.name, f"Version {version} could not be loaded",
                                    {"version": version, "error": str(exc)})
                self.registry.set_status(version, "failed", str(exc))
                continue
            if version != state["active"]:
                self.registry.activate(version)
                self.history.append("MODEL_ACTIVATED", self.name, f"Version {version} activated in place of a version that failed to load",
                                    {"version": version, "previous_version": state["active"], "reason": "load_failed"})
            self.served = served_from_record(record, pipeline)
            return self.served
        self.served = None
        return None

    def require_served(self) -> ServedModel:
        """Return the served model or raise 503 when there is none yet."""
        served = self.served
        if served is None:
            raise Unavailable(
                f"Model '{self.name}' has no trained version yet; post samples and train it (POST /api/{self.name}/train).",
                code="model_not_ready", details={"model": self.name},
            )
        return served

    # -- samples -----------------------------------------------------------------------------

    def sample_columns(self) -> list[str] | None:
        """Feature columns a sample row must carry (target excluded), or None when not yet known."""
        if self.config.features:
            return list(self.config.features)
        header = read_header(self.store.path)
        return [c for c in header if c != self.config.target] if header else None

    def feature_kinds(self) -> dict[str, str]:
        """Map each known feature to 'numeric' or 'categorical' (served model first, else the data so far)."""
        served = self.served
        if served is not None:
            return {**{c: "numeric" for c in served.numeric}, **{c: "categorical" for c in served.categorical}}
        try:
            head = pd.read_csv(self.store.path, nrows=200, encoding="utf-8-sig", on_bad_lines="skip")
        except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            return {}
        if head.empty:
            return {}
        columns = [c for c in (self.sample_columns() or []) if c in head.columns]
        numeric, categorical = feature_kinds(head[columns])
        return {**{c: "numeric" for c in numeric}, **{c: "categorical" for c in categorical}}

    def sample_counts(self) -> tuple[int, int]:
        """Return (total rows, rows added since the last training on the store)."""
        total = self.store.count()
        return total, self.new_since_training(total)

    def new_since_training(self, total: int) -> int:
        """Rows beyond those the last training consumed; all of them if the file was replaced by a smaller one."""
        trained = self.registry.state()["trained_rows"]
        return total - trained if total >= trained else total

    # -- training ----------------------------------------------------------------------------

    def submit_training(self, trigger: str, options: dict[str, Any] | None = None, *, wait: bool = False) -> Job:
        """Check the overrides and start a training job; 409 if one is running, 422 on a bad override."""
        options = dict(options or {})
        model_type = options.get("model_type")
        if model_type is not None:
            allowed = MODEL_TYPES.get(self.config.task) or sorted({t for ts in MODEL_TYPES.values() for t in ts})
            if model_type not in allowed:
                raise Invalid(f"model_type '{model_type}' is not available; choose one of {', '.join(allowed)}",
                              code="invalid_model_type", details={"field": "model_type", "allowed": list(allowed)})
        if options.get("csv_path") is not None:
            options["csv_path"] = str(self.resolve_data_path(options["csv_path"]))
        return self.runner.submit(trigger, options, wait=wait)

    def resolve_data_path(self, requested: str) -> Path:
        """Resolve a request's path against the data folder; refuse anything whose real path is outside it."""
        root = Path(os.path.realpath(self.data_dir))
        candidate = Path(os.path.realpath(root / requested))
        if candidate != root and root not in candidate.parents:
            raise Invalid("csv_path must name a file inside the data folder", code="invalid_path",
                          details={"field": "csv_path", "csv_path": requested})
        if not candidate.is_file():
            raise Invalid(f"csv_path '{requested}' is not a file in the data folder", code="invalid_path",
                          details={"field": "csv_path", "csv_path": requested})
        return candidate

    def tick(self) -> Job | None:
        """The scheduler's check: train when enough new samples arrived, else log TRAINING_SKIPPED."""
        if self.runner.current is not None:
            log.info("model %s: tick skipped, a training is running", self.name)
            return None
        total, new = self.sample_counts()
        minimum = self.config.training.min_samples_for_training
        if new < minimum:
            self.history.append("TRAINING_SKIPPED", self.name, f"Not enough new samples ({new} < {minimum})",
                                {"n_samples": new, "min_required": minimum, "total_samples": total,
                                 "reason": "not_enough_new_samples", "trigger": "auto"})
            return None
        try:
            return self.submit_training("auto")
        except Conflict:
            log.info("model %s: tick found a training running in another process", self.name)
            return None

    def add_samples(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Append validated rows durably; return the counts ``POST /samples`` answers with."""
        if self.config.features is None and read_header(self.store.path) is None:
            self.store.columns = [k for k in rows[0] if k != self.config.target] + [self.config.target]
        total = self.store.append(rows)
        return {"accepted": len(rows), "total_samples": total, "samples_since_last_training": self.new_since_training(total)}

    def status(self) -> dict[str, Any]:
        """Return the training status document of ``GET /api/<m>/training/status``."""
        state = self.registry.state()
        total, new = self.sample_counts()
        current = self.runner.current
        training = self.config.training
        return {
            "model": self.name,
            "training_in_progress": current is not None,
            "last_training_time": state["last_training_time"],
            "auto_training_enabled": training.auto_train,
            "auto_training_interval_hours": training.auto_train_interval_hours,
            "min_samples_required": training.min_samples_for_training,
            "recent_training_history": self.history.tail(model=self.name, limit=10),
            "active_version": self.served.version if self.served else None,
            "total_samples": total,
            "samples_since_last_training": new,
            "current_job": current.to_dict() if current else None,
        }
