"""The response schemas of the main endpoints, for ``/openapi.json`` (OpenAPI 3.0: ``nullable`` marks None).

They say what every answer holds at least (``required``); answers may carry
more fields (``additionalProperties`` stays open), so a field added later
breaks no client generated from them.
"""
from __future__ import annotations

from typing import Any

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
OBJECT = {"type": "object"}
ANY: dict[str, Any] = {}  # a prediction is a number or a label


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {**schema, "nullable": True}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object that has every key of ``required`` (and may have those of ``optional``, and others)."""
    return {"type": "object", "required": sorted(required), "properties": {**required, **(optional or {})}}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


JOB_STATUS = {"type": "string", "enum": ["queued", "running", "completed", "skipped", "failed", "cancelled"]}

MODEL_HEALTH = obj({"model_loaded": BOOLEAN, "model_path": nullable(STRING), "last_training_time": nullable(STRING),
                    "training_in_progress": BOOLEAN, "auto_training_enabled": BOOLEAN, "version": nullable(STRING)},
                   {"model_age_hours": nullable(NUMBER), "samples_since_training": INTEGER,
                    "drift_detected": BOOLEAN})

# where trainings run their fits (CONTRACT §12): {"kind": "local"} or the Dask scheduler and whether it answers
EXECUTOR = obj({"kind": {"type": "string", "enum": ["local", "dask"]}},
               {"scheduler": STRING, "scheduler_answers": BOOLEAN})

EVENT = obj({"timestamp": STRING, "event_type": STRING, "model": STRING, "message": STRING, "details": OBJECT})

JOB = obj({"job_id": STRING, "model": STRING, "trigger": STRING, "status": JOB_STATUS, "progress": INTEGER,
           "stage": STRING, "created_at": STRING, "started_at": nullable(STRING), "finished_at": nullable(STRING),
           "result": nullable(OBJECT), "error": nullable(OBJECT)})

VERSION = obj({"version": STRING, "status": STRING, "created_at": STRING},
              {"algorithm": nullable(STRING), "params": nullable(OBJECT), "metrics": nullable(OBJECT),
               "n_samples": nullable(INTEGER), "n_test_samples": nullable(INTEGER), "model_path": nullable(STRING),
               "sha256": nullable(STRING), "training_seconds": nullable(NUMBER), "trigger": nullable(STRING),
               "promotion": nullable(OBJECT), "executor": {"type": "string", "enum": ["local", "dask"]},
               "scheduler": nullable(STRING), "tasks_run": INTEGER})

NOTIFICATION = obj({"id": INTEGER, "timestamp": STRING, "level": {"type": "string", "enum": ["success", "warning", "error"]},
                    "model": STRING, "version": nullable(STRING), "event_type": STRING, "message": STRING,
                    "details": OBJECT}, {"active_version": nullable(STRING)})

SCHEMAS: dict[str, dict[str, Any]] = {
    "Health": obj({"status": {"type": "string", "enum": ["healthy", "degraded"]}, **MODEL_HEALTH["properties"],
                   "pid": INTEGER, "auth_required": BOOLEAN, "models": {"type": "object", "additionalProperties": MODEL_HEALTH},
                   "executor": EXECUTOR}),
    "Ready": obj({"ready": BOOLEAN, "models": OBJECT}, {"pid": INTEGER}),
    "ModelList": obj({"models": array(obj({"name": STRING, "target": STRING, "active_version": nullable(STRING),
                                           "total_samples": INTEGER, "auto_training_enabled": BOOLEAN},
                                          {"task": nullable(STRING), "features": nullable(array(STRING))}))}),
    "Prediction": obj({"model": STRING, "model_version": STRING},
                      {"prediction": ANY, "probabilities": ANY, "predictions": array(ANY),
                       "ignored_features": array(STRING)}),
    "SamplesAccepted": obj({"accepted": INTEGER, "total_samples": INTEGER, "samples_since_last_training": INTEGER}),
    "TrainingStarted": obj({"success": BOOLEAN, "message": STRING, "status": STRING, "job_id": STRING}),
    "TrainAll": obj({"success": BOOLEAN, "message": STRING, "jobs": OBJECT}),
    "TrainingStatus": obj({"training_in_progress": BOOLEAN, "last_training_time": nullable(STRING),
                           "auto_training_enabled": BOOLEAN, "auto_training_interval_hours": NUMBER,
                           "min_samples_required": INTEGER, "recent_training_history": array(ref("Event")),
                           "active_version": nullable(STRING), "total_samples": INTEGER,
                           "samples_since_last_training": INTEGER, "next_check_time": nullable(STRING),
                           "current_job": nullable(OBJECT)},
                          {"model_age_hours": nullable(NUMBER), "drift_detected": BOOLEAN}),
    "Event": EVENT,
    "History": obj({"events": array(ref("Event"))}),
    "Job": JOB,
    "Jobs": obj({"jobs": array(ref("Job"))}),
    "Version": VERSION,
    "Versions": obj({"versions": array(ref("Version"))}),
    "Switch": obj({"model": STRING, "active_version": STRING, "previous_version": nullable(STRING)}),
    "Comparison": obj({"model": STRING, "versions": array(OBJECT)}, {"current": OBJECT}),
    "Notification": NOTIFICATION,
    "Notifications": obj({"notifications": array(ref("Notification"))}),
    "Monitoring": obj({"model": STRING, "active_version": nullable(STRING), "metric": nullable(STRING), "live": OBJECT,
                       "windows": array(OBJECT), "drift": OBJECT, "staleness": OBJECT}),
}
