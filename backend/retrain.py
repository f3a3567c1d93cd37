"""One training job from start to end: skip or train, gate, register, hot-reload, log.

The order matters for crash safety: the artifact is staged, the promoted one
is loaded and checked, then the registry write commits it, and only then is
the served model swapped (``ServingSlot.promote``). A crash before the commit
leaves the old version active.

Every job that logged ``TRAINING_STARTED`` ends with exactly one of
``TRAINING_COMPLETED``, ``TRAINING_FAILED`` or ``TRAINING_SKIPPED``, whatever
raised, in the child or here. ``timeoutSeconds`` is wall-clock for the whole
job, from its start to its decision: the budget is checked while the child
runs and again before anything is committed.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from . import evaluation, lifecycle, training_process
from .candidate import Candidate, TrainingSpec
from .errors import ArtifactError, TrainingFailed
from .history import utc_now
from .jobs import Job
from .options import TrainingRequest
from .runtime import ModelRuntime

log = logging.getLogger(__name__)

# Triggers that checked their own rule for new rows before submitting (CONTRACT §8): they train even
# below minSamplesForTraining, so the skip below applies to the interval tick, start-up and manual runs.
OWN_ROW_RULES = frozenset({"drift", "age", "schedule"})


def run_job(rt: ModelRuntime, job: Job) -> None:
    """Run ``job`` for ``rt``; every outcome ends the job and is written to the history log once."""
    request: TrainingRequest = job.options
    settings = request.options
    started_at = rt.clock()

    def seconds_left() -> float:
        return settings.timeout_seconds - (rt.clock() - started_at)

    trained_rows: int | None = None
    limit: int | None = None
    csv_path = request.csv_path
    if csv_path is None:
        trained_rows, limit = rt.store.snapshot()
        new = rt.new_since_training(trained_rows)
        if not request.force and job.trigger not in OWN_ROW_RULES and new < rt.config.training.min_samples_for_training:
            _skip(rt, job, new, trained_rows)
            return
        csv_path = str(rt.store.path)
    served = rt.slot.served
    active_record = rt.registry.version(served.version) if served else None
    staging = rt.registry.folder / ".staging" / job.job_id
    spec = TrainingSpec(
        model=rt.name, csv_path=csv_path, limit_bytes=limit, target=rt.config.target, features=rt.config.features,
        task=rt.config.task, options=settings, staging_dir=str(staging),
        active_path=active_record["model_path"] if active_record else None,
        active_sha256=active_record["sha256"] if active_record else None,
        active_trained_end=_trained_end(active_record), other_file=request.csv_path is not None,
        serving_runtime=rt.serving.runtime, compute=rt.compute,
    )
    started = {"logged": False}

    def log_started(n_rows: int) -> None:
        started["logged"] = True
        rt.record("TRAINING_STARTED", "Model training started", {
            "csv_path": csv_path, "model_type": settings.model_type, "n_samples": n_rows, "trigger": job.trigger,
            "job_id": job.job_id, "pid": os.getpid(),
        })

    def on_message(message: tuple) -> None:
        if message[0] == "progress":
            job.advance(message[1], message[2])
        elif message[0] == "loaded":
            log_started(message[1])

    job.advance(2, "starting")
    try:
        candidate = training_process.run(spec, on_message, job.cancelled, seconds_left)
        if job.cancelled():
            raise TrainingFailed("cancelled", "the job was cancelled")
        _conclude(rt, job, candidate, staging, trained_rows, active_record, seconds_left)
    except TrainingFailed as exc:
        if not started["logged"]:
            log_started(0)
        _fail(rt, job, exc.reason, _timeout_message(settings.timeout_seconds) if exc.reason == "timeout" else exc.message,
              exc.details)
    except Exception as exc:  # a failure after the child returned: the job still ends with TRAINING_FAILED
        log.exception("concluding training job %s of %s failed", job.job_id, rt.name)
        if not started["logged"]:
            log_started(0)
        if not job.has_outcome:
            _fail(rt, job, "error", f"{type(exc).__name__}: {exc}", {})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _timeout_message(limit: float) -> str:
    return f"the training exceeded its {limit:g} s timeout (timeoutSeconds bounds the whole job)"


def _in_time(seconds_left: Callable[[], float]) -> None:
    if seconds_left() <= 0:
        raise TrainingFailed("timeout", "the job exceeded its time limit")


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
    public = {k: v for k, v in details.items() if k != "traceback"}
    job.finish("cancelled" if reason == "cancelled" else "failed",
               error={"reason": reason, "message": message, "details": public})
    rt.record("TRAINING_FAILED", f"Model training failed: {message}",
              {"error": message, "reason": reason, "job_id": job.job_id, "trigger": job.trigger, **public})


def _conclude(rt: ModelRuntime, job: Job, candidate: Candidate, staging: Path, trained_rows: int | None,
              active_record: dict[str, Any] | None, seconds_left: Callable[[], float]) -> None:
    options = job.options.options
    job.advance(90, "deciding")
    decision = candidate.decision  # the gate ran in the child, which had to know whether to refit
    record = _record(job, candidate, decision, active_record)
    mode = rt.config.promotion.mode
    staged = decision.promoted and active_record is not None and mode != "auto"  # a first version serves at once
    _in_time(seconds_left)
    if decision.promoted:
        job.advance(92, "verifying")
        try:
            pipeline = rt.slot.verify_candidate(staging, record)
        except ArtifactError as exc:
            _in_time(seconds_left)
            record["status"], record["status_reason"] = "failed", exc.message
            version = rt.registry.add_version(staging, record, activate=False, trained_rows=trained_rows)
            rt.record("MODEL_LOAD_FAILED", f"Candidate {version['version']} failed its load check",
                      {"version": version["version"], "error": exc.message, "job_id": job.job_id})
            raise TrainingFailed("load_check", exc.message, {"version": version["version"]}) from None
        _in_time(seconds_left)  # the last moment a late job can still be stopped: nothing is committed yet
        job.advance(96, "registering")
        if staged:  # CONTRACT §9: it waits for a person, a shadow verdict or a canary; the active version serves on
            version = rt.registry.add_version(staging, {**record, "status": "staged"}, activate=False,
                                              trained_rows=trained_rows)
        else:
            version = rt.slot.promote(staging, record, pipeline, trained_rows)
    else:
        job.advance(96, "registering")
        version = rt.registry.add_version(staging, record, activate=False, trained_rows=trained_rows)
    metric, metrics = candidate.metric, candidate.metrics
    promoted = decision.promoted and not staged
    result = {"version": version["version"], "promoted": promoted, "metrics": metrics, "reason": decision.reason}
    if staged:
        result["staged"] = True
    job.finish("completed", result=result)  # from here on the job has its outcome: what follows only reports it
    headline = "accuracy" if candidate.task == "classification" else "r2"
    rt.record("TRAINING_COMPLETED", "Model training completed successfully", {
        headline: metrics.get(headline), metric: metrics.get(metric), "metric": metric,
        "n_samples": candidate.n_samples, "n_test_samples": candidate.n_test_samples,
        "model_path": version["model_path"], "version": version["version"], "promoted": promoted, "staged": staged,
        "job_id": job.job_id, "training_seconds": candidate.training_seconds,
        "training_window": candidate.training_window, "refit": candidate.refit, "candidates": candidate.window_scores,
        "active_score": candidate.active_score, "baseline_score": candidate.baseline_score,
        "comparison": candidate.comparison, "holdout": candidate.holdout,
    })
    scores = {"metric": metric, "candidate": decision.candidate, decision.reference_kind: decision.reference,
              "active_version": active_record["version"] if active_record else None,
              "min_improvement": options.min_improvement, "reason": decision.reason, "version": version["version"]}
    if candidate.active_score_error:
        scores["active_score_error"] = candidate.active_score_error
    if staged:
        rt.rollout.stage(version["version"], active_record["version"])
    elif decision.promoted:
        rt.record("MODEL_PROMOTED", f"Version {version['version']} promoted and now serving", scores)
        if active_record is not None:  # mode auto: its first live labels decide whether it stays
            rt.rollout.watch(version["version"], active_record["version"])
    else:
        rt.record("MODEL_REJECTED", f"Version {version['version']} rejected; the active model stays", scores)
    try:
        lifecycle.prune(rt)
    except OSError as exc:  # the new version is committed and logged; old artifacts stay for the next prune
        log.warning("pruning old versions of %s failed: %s", rt.name, exc)


def _record(job: Job, candidate: Candidate, decision: evaluation.Decision,
            active_record: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "status": "ok" if decision.promoted else "rejected",
        "created_at": utc_now(),
        **candidate.record(),
        "trigger": job.trigger,
        "job_id": job.job_id,
        "promotion": {
            "promoted": decision.promoted, "reason": decision.reason, "metric": decision.metric,
            "candidate_score": decision.candidate, "active_score": candidate.active_score,
            "active_score_error": candidate.active_score_error,
            "baseline_score": candidate.baseline_score,
            "active_version": active_record["version"] if active_record else None,
            "comparison": candidate.comparison,
            "holdout": candidate.holdout,
            "candidates": candidate.window_scores,
        },
    }


def _trained_end(record: dict[str, Any] | None) -> int | None:
    """One past the last store row a version trained on (older records: the rows it read)."""
    if record is None:
        return None
    rows = record.get("trained_rows")
    return rows["end"] if rows else record.get("n_rows_read")
