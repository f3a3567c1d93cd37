"""Predictions from the served version of a model."""
from __future__ import annotations

from flask import Blueprint, g, request

from ..columnar import parse_predict_body
from ..schemas import json_body
from ..serving import predict_columns
from ..state import refit, runtime

bp = Blueprint("predict", __name__)


@bp.post("/api/<model>/predict")
def predict(model: str):
    rt = runtime(model)
    body = json_body(request, required=True)
    served = rt.slot.require()  # read once: the whole request is answered by this version
    columns, ignored, single = parse_predict_body(body, served.numeric, served.categorical,
                                                  refit().config.security.max_batch_rows)
    predictions, probabilities = predict_columns(served, columns)
    g.model_version = served.version  # for the request log
    answer = {"model": model, "model_version": served.version}
    if single:
        answer["prediction"] = predictions[0]
        if probabilities is not None:
            answer["probabilities"] = probabilities[0]
    else:
        answer["predictions"] = predictions
        if probabilities is not None:
            answer["probabilities"] = probabilities
    if ignored:
        answer["ignored_features"] = ignored
    return answer
