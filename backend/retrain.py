"""One training job from start to end: skip or train, gate, register, hot-reload, log.

The order matters for crash safety: the artifact is staged, the promoted one
is loaded and checked, then the registry write commits it, and only then is
the served model swapped. A crash before the commit leaves the old version
active; the swap itself is one assignment that no request waits on.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import evaluation, lifecycle
from .history import utc_now
from .registry import ARTIFACT
from .serving import ArtifactError, load_checked, served_from_record
from .worker import TrainingFailed, TrainingSpec, run_in_subprocess

if TYPE_CHECKING:
    from .jobs import Job
    from .runtime import ModelRuntime

log = logging.getLogger(__name__)


def run_job(rt: ModelRuntime, job: Job) -> None:
    """Run ``job`` for ``rt``; every outcome ends the job and is written to the history log."""
    options = job.options
    training = rt.config.training
    csv_path = options.get("csv_path")
    trained_rows: int | None = None
    limit: int | None = None
    if csv_path is None:
        trained_rows, limit = rt.store.snapshot()
        new = rt.new_since_training(trained_rows)
        if not options.get("force") and new < training.min_samples_for_training:
            _skip(rt, job, new, trained_rows)
            return
        csv_path = str(rt.store.path)
    settings = options["training"]
    model_type = settings["model_type"]
    served = rt.current()
    active_record = rt.registry.version(served.version) if served else None
    staging = rt.registry.folder / ".staging" / job.job_id
    spec = TrainingSpec(
        model=rt.name, csv_path=csv_path, limit_bytes=limit, target=rt.config.target, features=rt.config.features,
        task=rt.config.task, options=settings, staging_dir=str(staging),
        active_path=active_record["model_path"] if active_record else None,
        active_sha256=active_record["sha256"] if active_record else None,
    )
    started = {"logged": False}

    def log_started(n_rows: int) -> None:
        started["logged"] = True
        rt.record("TRAINING_STARTED", "Model training started", {
            "csv_path": csv_path, "model_type": model_type, "n_samples": n_rows, "trigger": job.trigger,
            "job_id": job.job_id, "pid": os.getpid(),
        })

    def on_message(message: tuple) -> None:
        if message[0] == "progress":
            job.advance(message[1], message[2])
        elif message[0] == "loaded":
            log_started(message[1])

    job.advance(2, "starting")
    try:
        try:
            result = run_in_subprocess(spec, on_message, job.cancelled, training.timeout_seconds)
            if job.cancelled():
                raise TrainingFailed("cancelled", "the job was cancelled")
        except TrainingFailed as exc:
            if not started["logged"]:
                log_started(0)
            _fail(rt, job, exc.reason, str(exc), exc.details)
            return
        _conclude(rt, job, result, staging, trained_rows if options.get("csv_path") is None else None, active_record)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _skip(rt: ModelRuntime, job: Job, new: int, total: int) -> None:
    minimum = rt.config.training.min_samples_for_training
    details = {"n_samples": new, "min_required": minimum, "total_samples": total,
               "reason": "not_enough_new_samples", "trigger": job.trigger, "job_id": job.job_id}
    rt.record("TRAINING_SKIPPED", f"Not enough new samples ({new} < {minimum}); pass force to train anyway", details)
    job.finish("skipped", result={"version": None, "promoted": False, "metrics": None,
                                  "reason": f"not enough new samples ({new} < {minimum})"})


def _fail(rt: ModelRuntime, job: Job, reason: str, message: str, details: dict[str, Any]) -> None:
    if reason == "error":
        log.error("training of %s failed: %s\n%s", rt.name, message, details.get("traceback", ""))
    rt.record("TRAINING_FAILED", f"Model training failed: {message}",
                      {"error": message, "reason": reason, "job_id": job.job_id, "trigger": job.trigger,
                       **{k: v for k, v in details.items() if k != "traceback"}})
    job.finish("cancelled" if reason == "cancelled" else "failed",
               error={"reason": reason, "message": message, "details": {k: v for k, v in details.items() if k != "traceback"}})


def _conclude(rt: ModelRuntime, job: Job, result: dict[str, Any], staging: Path, trained_rows: int | None,
              active_record: dict[str, Any] | None) -> None:
    training = rt.config.training
    decision = evaluation.decide(
        result["metric"], result["candidate_score"], result["active_score"], result["baseline_score"],
        training.min_improvement, has_active=active_record is not None,
    )
    record = _record(job, result, decision, active_record)
    pipeline = None
    if decision.promoted:
        job.advance(92, "verifying")
        try:
            pipeline = load_checked(staging / ARTIFACT, result)
        except ArtifactError as exc:
            record["status"], record["status_reason"] = "failed", str(exc)
            version = rt.registry.add_version(staging, record, activate=False, trained_rows=trained_rows)
            rt.record("MODEL_LOAD_FAILED", f"Candidate {version['version']} failed its load check",
                              {"version": version["version"], "error": str(exc), "job_id": job.job_id})
            _fail(rt, job, "load_check", str(exc), {"version": version["version"]})
            return
    job.advance(96, "registering")
    with rt.switch_lock:
        version = rt.registry.add_version(staging, record, activate=decision.promoted, trained_rows=trained_rows)
        if pipeline is not None:
            rt.served = served_from_record(version, pipeline)  # the hot swap: one assignment
    metric = result["metric"]
    metrics = result["metrics"]
    headline = "accuracy" if result["task"] == "classification" else "r2"
    rt.record("TRAINING_COMPLETED", "Model training completed successfully", {
        headline: metrics.get(headline), metric: metrics.get(metric), "metric": metric,
        "n_samples": result["n_samples"], "n_test_samples": result["n_test_samples"],
        "model_path": version["model_path"], "version": version["version"], "promoted": decision.promoted,
        "job_id": job.job_id, "training_seconds": result["training_seconds"],
    })
    scores = {"metric": metric, "candidate": decision.candidate, decision.reference_kind: decision.reference,
              "active_version": active_record["version"] if active_record else None,
              "min_improvement": training.min_improvement, "reason": decision.reason, "version": version["version"]}
    if decision.promoted:
        rt.record("MODEL_PROMOTED", f"Version {version['version']} promoted and now serving", scores)
    else:
        rt.record("MODEL_REJECTED", f"Version {version['version']} rejected; the active model stays", scores)
    lifecycle.prune(rt)
    job.finish("completed", result={"version": version["version"], "promoted": decision.promoted,
                                    "metrics": metrics, "reason": decision.reason})


def _record(job: Job, result: dict[str, Any], decision: evaluation.Decision,
            active_record: dict[str, Any] | None) -> dict[str, Any]:
    keep = ("task", "algorithm", "model_type", "estimator", "params", "options", "metric", "metrics", "evaluation",
            "cv", "selection", "tuning", "feature_importance", "plots", "data_quality", "n_samples", "n_test_samples",
            "n_rows_read", "sha256", "training_seconds", "features", "numeric_features", "categorical_features",
            "dtypes", "classes", "warnings", "library_versions", "check_rows", "check_predictions")
    return {
        "status": "ok" if decision.promoted else "rejected",
        "created_at": utc_now(),
        **{k: result[k] for k in keep},
        "trigger": job.trigger,
        "job_id": job.job_id,
        "promotion": {
            "promoted": decision.promoted, "reason": decision.reason, "metric": decision.metric,
            "candidate_score": decision.candidate, "active_score": result["active_score"],
            "baseline_score": result["baseline_score"],
            "active_version": active_record["version"] if active_record else None,
        },
    }
