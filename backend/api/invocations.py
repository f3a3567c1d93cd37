"""MLflow's scoring protocol, so a client written for ``mlflow models serve`` works unchanged (CONTRACT §11).

    GET  /ping                      200 while every model serves
    POST /api/<m>/invocations       {"predictions": [...]}
    POST /invocations               the same, when one model is configured

Bodies: MLflow's four JSON shapes (``dataframe_split``, ``dataframe_records``,
``instances``, ``inputs``; the last two as records, as rows of values in the
features' order, or as one list per feature) or ``text/csv`` with a header.
``params`` is accepted and ignored (a scikit-learn model takes none), as
MLflow does. Errors are Refit's envelope, like every route outside ``/v2``.
The version that answered is in the ``Refit-Model-Version`` header.
"""
from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
from flask import Blueprint, g, request

from ..columnar import from_mapping, from_matrix
from ..errors import BadRequest, Invalid, NotFound, Unavailable
from ..runtime import ModelRuntime
from ..schemas import json_body, parse_predict
from ..serving import ServedModel, answer_lists, predict_answers
from ..state import refit, runtime

bp = Blueprint("invocations", __name__)

SHAPES = ("dataframe_split", "dataframe_records", "instances", "inputs")


@bp.get("/ping")
def ping():
    waiting = sorted(name for name, rt in refit().runtimes.items() if rt.slot.served is None)
    if waiting:
        raise Unavailable(f"Not every model serves yet: {', '.join(waiting)}", code="not_ready",
                          details={"models": waiting})
    return {"status": "ok"}


@bp.post("/api/<model>/invocations")
def model_invocations(model: str):
    return _invoke(runtime(model))


@bp.post("/invocations")
def invocations():
    runtimes = refit().runtimes
    if len(runtimes) != 1:
        raise NotFound(f"/invocations serves a single configured model; this server has {len(runtimes)}: use "
                       "/api/<model>/invocations", code="model_required", details={"models": sorted(runtimes)})
    return _invoke(next(iter(runtimes.values())))


def _invoke(rt: ModelRuntime) -> tuple[dict[str, Any], int, dict[str, str]]:
    served = rt.slot.require()  # read once: the whole request is answered by this version
    columns = request_columns(rt, served)
    predictions, _ = answer_lists(predict_answers(served, columns), None)
    g.model_version = served.version  # for the request log
    return {"predictions": predictions}, 200, {"Refit-Model-Version": served.version}


def request_columns(rt: ModelRuntime, served: ServedModel) -> dict[str, np.ndarray]:
    """The feature columns of an MLflow scoring request (CSV or one of the four JSON shapes)."""
    numeric, categorical = served.numeric, served.categorical
    max_rows = refit().config.security.max_batch_rows
    if (request.mimetype or "") == "text/csv":
        names, rows = _csv(request.get_data(cache=True))
        return from_matrix(rows, names, numeric, categorical, max_rows, "csv")[0]
    body = json_body(request, required=True)
    if not isinstance(body, dict):
        raise Invalid(f"The body must be a JSON object with one of {', '.join(SHAPES)}", code="validation_error")
    given = [key for key in SHAPES if key in body]
    if len(given) != 1:
        raise Invalid(f"Send exactly one of {', '.join(SHAPES)} (got {', '.join(given) or 'none'})",
                      code="validation_error", details={"fields": list(SHAPES)})
    shape = given[0]
    value = body[shape]
    if shape == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or "data" not in value:
            raise Invalid("'dataframe_split' must be an object with 'columns' (the names) and 'data' (the rows)",
                          code="validation_error", details={"field": "dataframe_split"})
        if not all(isinstance(name, str) for name in value["columns"]):
            raise Invalid("'dataframe_split.columns' must list column names", code="validation_error",
                          details={"field": "dataframe_split.columns"})
        return from_matrix(value["data"], value["columns"], numeric, categorical, max_rows, "dataframe_split.data")[0]
    if isinstance(value, dict):  # instances / inputs as one list per feature
        return from_mapping(value, numeric, categorical, max_rows, shape)[0]
    if shape != "dataframe_records" and isinstance(value, list) and value and isinstance(value[0], list):
        # rows of values: the features in the config's order (a tensor, as TF serving sends it)
        return from_matrix(value, feature_order(rt, served), numeric, categorical, max_rows, shape)[0]
    if not isinstance(value, list):
        raise Invalid(f"'{shape}' must be a list of rows", code="validation_error", details={"field": shape})
    return parse_predict({"instances": value}, numeric, categorical, max_rows)[0]


def feature_order(rt: ModelRuntime, served: ServedModel) -> tuple[str, ...]:
    """The column order of a matrix of values: the config's ``features``, else the served model's."""
    configured = rt.config.features
    return tuple(configured) if configured and set(configured) == set(served.features) else served.features


def _csv(raw: bytes) -> tuple[list[str], list[list[Any]]]:
    """A CSV body with a header: the names and the rows (empty cells are missing values)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The CSV body is not UTF-8", code="malformed_csv") from None
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise BadRequest(f"The CSV body cannot be read: {exc}", code="malformed_csv") from None
    records = [r for r in records if r]
    if len(records) < 2:
        raise Invalid("The CSV body needs a header line and at least one row", code="validation_error")
    names = [name.strip() for name in records[0]]
    return names, [[cell if cell != "" else None for cell in row] for row in records[1:]]
