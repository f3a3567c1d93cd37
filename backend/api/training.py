"""Training: start a job, its status, the history log, and jobs."""
from __future__ import annotations

from flask import Blueprint, request

from ..errors import Invalid, RefitError
from ..status import of as status_of
from ..history import EVENT_TYPES
from ..jobs import STATUSES
from ..schemas import data_quality_request, history_query, jobs_query, json_body, load, train_all_request, train_request
from ..state import refit, runtime

bp = Blueprint("training", __name__)


@bp.post("/api/<model>/train")
def train(model: str):
    rt = runtime(model)
    job = rt.submit_training("manual", load(train_request, json_body(request, required=False)))
    return {"success": True, "message": "Training started in background", "status": "training_in_progress",
            "job_id": job.job_id}, 202


@bp.post("/api/models/train")
def train_all():
    options = load(train_all_request, json_body(request, required=False))
    jobs = {}
    for name, rt in refit().runtimes.items():
        try:
            jobs[name] = {"job_id": rt.submit_training("manual", {"force": options["force"]}).job_id}
        except RefitError as exc:  # one model's conflict or bad state must not stop the others
            jobs[name] = exc.to_dict()
    return {"success": True, "message": "Training started in background", "jobs": jobs}, 202


@bp.post("/api/<model>/data-quality")
def data_quality(model: str):
    rt = runtime(model)
    options = load(data_quality_request, json_body(request, required=False))
    return rt.data_quality(csv_path=options["csv_path"], dataset_id=options["dataset_id"])


@bp.get("/api/<model>/training/status")
def status(model: str):
    rt = runtime(model)
    scheduler = refit().scheduler
    found = status_of(rt, scheduler.next_run(model) if scheduler else None)
    return found.training(rt.history.tail(model=model, limit=10))


@bp.get("/api/<model>/training/history")
def history(model: str):
    rt = runtime(model)
    query = load(history_query, request.args.to_dict())
    if query["event_type"] is not None and query["event_type"] not in EVENT_TYPES:
        raise Invalid(f"event_type must be one of {', '.join(EVENT_TYPES)}", details={"field": "event_type"})
    return {"events": rt.history.tail(model=model, limit=query["limit"], event_type=query["event_type"])}


@bp.get("/api/<model>/jobs")
def list_jobs(model: str):
    rt = runtime(model)
    query = load(jobs_query, request.args.to_dict())
    if query["status"] is not None and query["status"] not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", details={"field": "status"})
    return {"jobs": rt.runner.list(query["status"], query["limit"])}


@bp.get("/api/<model>/jobs/<job_id>")
def get_job(model: str, job_id: str):
    return runtime(model).runner.get(job_id)


@bp.delete("/api/<model>/jobs/<job_id>")
def cancel_job(model: str, job_id: str):
    return runtime(model).runner.cancel(job_id), 202
