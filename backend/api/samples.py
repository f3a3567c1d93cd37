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
    # the served model's kinds stand once one serves; until then, the data's so far
    kinds = ({**dict.fromkeys(served.numeric, "numeric"), **dict.fromkeys(served.categorical, "categorical")}
             if served else rt.store.kinds())
    rows = parse_samples(body, rt.store.features(), rt.config.target, kinds, target_numeric,
                         refit().config.security.max_batch_rows)
    return rt.add_samples(rows), 201
