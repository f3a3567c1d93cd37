"""Controlled rollout (CONTRACT §9): promote and reject staged versions, experiments, feedback, logged predictions."""
from __future__ import annotations

from flask import Blueprint, request

from .. import feedback
from ..errors import NotFound
from ..schemas import experiment_request, json_body, load, stop_experiment_request
from ..state import refit, runtime

bp = Blueprint("rollout", __name__)


@bp.post("/api/<model>/versions/<version>/promote")
def promote(model: str, version: str):
    return runtime(model).rollout.promote(version)


@bp.post("/api/<model>/versions/<version>/reject")
def reject(model: str, version: str):
    return runtime(model).rollout.reject(version)


@bp.get("/api/<model>/experiments")
def list_experiments(model: str):
    return {"experiments": runtime(model).rollout.experiments()}


@bp.post("/api/<model>/experiments")
def start_experiment(model: str):
    rt = runtime(model)
    body = load(experiment_request, json_body(request, required=True))
    versions = body["versions"]
    split = body["split"] if body["split"] is not None else [1 / len(versions)] * len(versions)
    return rt.rollout.start_experiment(body["name"], versions, split), 201


@bp.get("/api/<model>/experiments/<experiment_id>")
def get_experiment(model: str, experiment_id: str):
    return runtime(model).rollout.experiment(experiment_id)


@bp.post("/api/<model>/experiments/<experiment_id>/stop")
def stop_experiment(model: str, experiment_id: str):
    rt = runtime(model)
    body = load(stop_experiment_request, json_body(request, required=False))
    return rt.rollout.stop_experiment(experiment_id, body["promote"])


@bp.post("/api/<model>/feedback")
def post_feedback(model: str):
    rt = runtime(model)
    pairs = feedback.parse(json_body(request, required=True), refit().config.security.max_batch_rows)
    return feedback.submit(rt, pairs), 201


@bp.get("/api/<model>/predictions/<prediction_id>")
def get_prediction(model: str, prediction_id: str):
    found = runtime(model).predictions.lookup(prediction_id)
    if found is None:
        raise NotFound(f"No logged prediction '{prediction_id[:100]}' for model '{model}' (unknown, or older than "
                       "predictionLog.keepHours)", code="prediction_not_found",
                       details={"prediction_id": prediction_id[:100]})
    return found.public()
