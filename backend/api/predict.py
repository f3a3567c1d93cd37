"""Predictions: from the active version, a pinned version or an experiment's arm, each logged with its id."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request

from ..errors import Conflict, Invalid, NotFound
from ..columnar import parse_predict_body
from ..schemas import json_body
from ..serving import predict_columns
from ..state import refit, runtime

bp = Blueprint("predict", __name__)


def _routing(body: Any) -> tuple[str | None, str | None]:
    """The body's pinned ``version`` and its ``routing_key`` (alias ``user_id``); 422 when of the wrong kind."""
    if not isinstance(body, dict):
        return None, None
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise Invalid("'version' must be a version id such as \"v3\"", details={"field": "version"})
    key = body.get("routing_key", body.get("user_id"))
    if key is not None:
        if isinstance(key, bool) or not isinstance(key, (str, int)) or len(str(key)) > 256:
            raise Invalid("'routing_key' (or 'user_id') must be text or an integer of at most 256 characters",
                          details={"field": "routing_key"})
        key = str(key)
    return version, key


@bp.post("/api/<model>/predict")
def predict(model: str):
    rt = runtime(model)
    body = json_body(request, required=True)
    pinned, routing_key = _routing(body)
    experiment = None
    if pinned is not None:  # bypasses experiments and is not counted in an arm (CONTRACT §9)
        served = rt.slot.model_of(pinned)
    else:
        route = rt.rollout.route(routing_key)
        served = rt.slot.require()  # read once: the whole request is answered by this version
        if route.version is not None and route.version != served.version:
            try:
                served = rt.slot.model_of(route.version)
            except (Conflict, NotFound):  # an arm that can no longer load: the active version answers, uncounted
                route = None
        experiment = route.experiment if route is not None else None
    columns, ignored, single = parse_predict_body(body, served.numeric, served.categorical,
                                                  refit().config.security.max_batch_rows)
    predictions, probabilities = predict_columns(served, columns)
    rows = [list(r) for r in zip(*(columns[name].tolist() for name in served.features))]
    ids = rt.predictions.append(served.version, served.features, rows, predictions, probabilities, experiment)
    if pinned is None and experiment is None:
        shadow = rt.rollout.shadow_model(served.version)
        if shadow is not None:
            rt.shadow.submit(shadow, columns, rows)
    g.model_version = served.version  # for the request log
    answer = {"model": model, "model_version": served.version}
    if single:
        answer["prediction"] = predictions[0]
        answer["prediction_id"] = ids[0]
        if probabilities is not None:
            answer["probabilities"] = probabilities[0]
    else:
        answer["predictions"] = predictions
        answer["prediction_ids"] = ids
        if probabilities is not None:
            answer["probabilities"] = probabilities
    if experiment is not None:
        answer["experiment"] = experiment
    if ignored:
        answer["ignored_features"] = ignored
    return answer
