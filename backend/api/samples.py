"""New labelled samples for a model's store."""
from __future__ import annotations

from flask import Blueprint, request

from ..schemas import json_body, parse_samples
from ..state import refit, runtime

bp = Blueprint("samples", __name__)


@bp.post("/api/<model>/samples")
def add_samples(model: str):
    rt = runtime(model)
    body = json_body(request, required=True)
    served = rt.served
    target_numeric = (served.task if served else rt.config.task) == "regression"
    rows = parse_samples(body, rt.sample_columns(), rt.config.target, rt.feature_kinds(), target_numeric,
                         refit().config.security.max_batch_rows)
    return rt.add_samples(rows), 201
