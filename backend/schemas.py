"""Request bodies: strict JSON decoding, the fixed schemas, and per-model row checks.

Predict and sample rows depend on each model's feature list, so they are
checked by small functions rather than a schema class per model; both report
which row and field failed and why, in the 422 details.
"""
from __future__ import annotations

import math
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from flask import Request
from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from . import jsoncodec
from .options import OptionsSchema, Strict
from .errors import BadRequest, Invalid, TooLarge, UnsupportedMedia
from .serving import columns_of, text_column


_Strict = Strict  # unknown fields are a 422, not silently dropped


# A request may spell an option as config.json does (camelCase) or as the PARIMA guide does (snake_case).
_SNAKE_ALIASES = {name: f.data_key for name, f in OptionsSchema().fields.items() if f.data_key and f.data_key != name}


class TrainRequest(OptionsSchema):
    """``POST /api/<m>/train``: any training option of config.json for this run, plus where the rows come from.

    Loaded with ``partial=True``: an absent option keeps the model's configured value (``options.merge``).
    """

    force = fields.Boolean()
    csv_path = fields.String(allow_none=True, validate=validate.Length(min=1, max=4096))
    dataset_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=64))

    @pre_load
    def _aliases(self, data: Any, **_: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for snake, camel in _SNAKE_ALIASES.items():
            if snake in out:
                if camel in out:
                    raise ValidationError(f"give {camel} or {snake}, not both", snake)
                out[camel] = out.pop(snake)
        return out

    @validates_schema
    def _one_source(self, data: dict, **_: Any) -> None:
        if data.get("csv_path") and data.get("dataset_id"):
            raise ValidationError("give csv_path or dataset_id, not both", "dataset_id")


class DataQualityRequest(_Strict):
    csv_path = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=4096))
    dataset_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


class HistoryQuery(_Strict):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=10_000))
    event_type = fields.String(load_default=None)


class JobsQuery(_Strict):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    status = fields.String(load_default=None)


class ActivateRequest(_Strict):
    force = fields.Boolean(load_default=False)


class RollbackRequest(_Strict):
    to_version = fields.String(load_default=None, allow_none=True)


class CompareRequest(_Strict):
    versions = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=20))
    evaluate_on = fields.String(load_default="recorded", validate=validate.OneOf(["recorded", "current"]))


class TrainAllRequest(_Strict):
    force = fields.Boolean(load_default=False)


class NotificationsQuery(_Strict):
    since = fields.Integer(load_default=None, validate=validate.Range(min=0))
    level = fields.String(load_default=None, validate=validate.OneOf(["success", "warning", "error"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=10_000))


class ExperimentRequest(_Strict):
    """``POST /api/<m>/experiments``: the versions to compare and the share of traffic each gets (equal by default)."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    versions = fields.List(fields.String(validate=validate.Length(min=1, max=20)), required=True,
                           validate=validate.Length(min=2, max=10))
    split = fields.List(fields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False)), load_default=None)


class StopExperimentRequest(_Strict):
    promote = fields.String(load_default=None, allow_none=True)


train_request = TrainRequest(partial=True)
experiment_request = ExperimentRequest()
stop_experiment_request = StopExperimentRequest()
data_quality_request = DataQualityRequest()
activate_request = ActivateRequest()
rollback_request = RollbackRequest()
compare_request = CompareRequest()
train_all_request = TrainAllRequest()
notifications_query = NotificationsQuery()
history_query = HistoryQuery()
jobs_query = JobsQuery()


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate ``data`` with ``schema``; 422 with the field messages on failure."""
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object", code="validation_error")
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise Invalid("The request failed validation", code="validation_error", details={"fields": exc.messages}) from None


def json_body(request: Request, *, required: bool) -> Any:
    """Decode the body strictly: JSON content type, no NaN/Infinity; an empty optional body is {}."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadRequest("A JSON body is required", code="missing_body")
        return {}
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMedia("Send the body as JSON with Content-Type: application/json",
                               details={"content_type": request.content_type})
    try:
        return jsoncodec.loads(raw)
    except jsoncodec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}", code="malformed_json") from None


def _number(value: Any) -> float:
    """Return ``value`` as a finite float or raise ValueError saying why not."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"expected a number, got {value!r}" if isinstance(value, str) else "number out of range") from None
    if not math.isfinite(number):
        raise ValueError("numbers must be finite")
    return number


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", str: "text"}.get(type(value), type(value).__name__)


def check_value(value: Any, kind: str | None) -> Any:
    """Check one cell against its feature kind; return the value to use. None stays None (missing)."""
    if value is None:
        return None
    if kind == "numeric":
        number = _number(value)
        return value if isinstance(value, (int, float)) else number
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a single value, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise ValueError("number out of range")
    return value


def rows_of(body: Any, single_key: str | None, batch_key: str, max_rows: int) -> tuple[list[Any], bool]:
    """The rows of a body holding one row under ``single_key`` or a list under ``batch_key``; True when single."""
    if not isinstance(body, dict):
        raise Invalid("The body must be a JSON object", code="validation_error")
    if single_key is None:
        if batch_key not in body:
            raise Invalid(f"Send a list of rows in '{batch_key}'", code="validation_error", details={"field": batch_key})
    elif (single_key in body) == (batch_key in body):
        raise Invalid(f"Send either '{single_key}' (one row) or '{batch_key}' (a list of rows)",
                      code="validation_error", details={"fields": [single_key, batch_key]})
    elif single_key in body:
        return [body[single_key]], True
    rows = body[batch_key]
    if not isinstance(rows, list) or not rows:
        raise Invalid(f"'{batch_key}' must be a non-empty list of objects", code="validation_error",
                      details={"field": batch_key})
    if len(rows) > max_rows:
        raise TooLarge(f"{len(rows)} rows is more than the {max_rows} allowed in one request", code="too_many_rows",
                       details={"rows": len(rows), "max_rows": max_rows})
    return rows, False


def parse_predict(body: Any, numeric: tuple[str, ...], categorical: tuple[str, ...],
                  max_rows: int) -> tuple[dict[str, np.ndarray], list[str], bool]:
    """Return (one array per feature, ignored feature names, single?) for a predict body.

    422 naming the row and field at fault. Well-formed bodies (every row an
    object with every feature, numbers as JSON numbers, categories as text) are
    checked a column at a time; anything else takes the cell-by-cell path that
    says exactly what is wrong.
    """
    rows, single = rows_of(body, "features", "instances", max_rows)
    features = numeric + categorical
    columns = _columns_at_once(rows, numeric, categorical)
    if columns is None:
        checked, extra = _checked_rows(rows, features, {**dict.fromkeys(numeric, "numeric"),
                                                        **dict.fromkeys(categorical, "categorical")})
        return columns_of(checked, numeric, categorical), sorted(extra), single
    extra: set[str] = set()
    if sum(map(len, rows)) != len(rows) * len(features):  # every feature is there, so a longer row has extras
        wanted = set(features)
        extra = {key for row in rows for key in row if key not in wanted}
    return columns, sorted(extra), single


_PLAIN_NUMBERS = frozenset({float, int, type(None)})
_PLAIN_TEXT = frozenset({str, type(None)})


def _columns_at_once(rows: list[Any], numeric: tuple[str, ...],
                     categorical: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Columns of well-formed rows, or None when any row or cell needs the cell-by-cell check."""
    try:
        numbers = _cells(rows, numeric)
        texts = _cells(rows, categorical)
    except (KeyError, TypeError, IndexError):  # a missing feature, or a row that is not an object
        return None
    if not all(type(row) is dict for row in rows):
        return None
    columns: dict[str, np.ndarray] = {}
    if numeric:
        if not set(map(type, chain.from_iterable(numbers))) <= _PLAIN_NUMBERS:
            return None  # booleans and numeric text have their own rules
        try:
            block = np.array(numbers, dtype=float)  # None becomes NaN, imputed like a missing value
        except OverflowError:
            return None
        if np.isinf(block).any():
            return None
        columns.update((name, block[:, i]) for i, name in enumerate(numeric))
    for i, name in enumerate(categorical):
        values = [cells[i] for cells in texts]
        if not set(map(type, values)) <= _PLAIN_TEXT:
            return None
        columns[name] = text_column(values)
    return columns


def _cells(rows: list[Any], names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Each row's values for ``names``, in order; KeyError if one is missing."""
    if not names:
        return []
    getter = itemgetter(*names)
    if len(names) == 1:
        return [(value,) for value in map(getter, rows)]
    return list(map(getter, rows))


def _checked_rows(rows: list[Any], features: tuple[str, ...], kinds: dict[str, str]) -> tuple[list[dict], set[str]]:
    """Check every cell; return the clean rows and the extra field names, or raise a 422 listing what is wrong."""
    checked: list[dict[str, Any]] = []
    ignored: set[str] = set()
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append({"row": index, "field": None, "error": f"expected an object, got {_kind(row)}"})
            continue
        missing = [f for f in features if f not in row]
        if missing:
            errors.append({"row": index, "field": missing, "error": f"missing feature(s): {', '.join(missing)}"})
        ignored.update(k for k in row if k not in kinds)
        clean: dict[str, Any] = {}
        for name in features:
            if name not in row:
                continue
            try:
                clean[name] = check_value(row[name], kinds[name])
            except ValueError as exc:
                errors.append({"row": index, "field": name, "error": str(exc)})
        checked.append(clean)
    if errors:
        raise Invalid(describe_errors(errors), code="invalid_features", details={"errors": errors[:50]})
    return checked, ignored


def parse_samples(body: Any, features: list[str] | None, target: str, kinds: dict[str, str],
                  target_numeric: bool, max_rows: int) -> list[dict[str, Any]]:
    """Return validated sample rows; any bad row rejects the whole batch with a 422 naming it."""
    rows, _ = rows_of(body, None, "samples", max_rows)
    errors: list[dict[str, Any]] = []
    checked: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append({"row": index, "field": None, "error": f"expected an object, got {_kind(row)}"})
            continue
        expected = features if features is not None else [k for k in row if k != target]
        for name in sorted(set(row) - set(expected) - {target}):
            errors.append({"row": index, "field": name, "error": "unknown field"})
        for name in expected:
            if name not in row:
                errors.append({"row": index, "field": name, "error": "missing feature"})
        if row.get(target) is None:
            errors.append({"row": index, "field": target, "error": "the target is required and must not be null"})
        clean: dict[str, Any] = {}
        for name in expected + [target]:
            if name not in row or (name == target and row[name] is None):
                continue
            try:
                kind = "numeric" if name == target and target_numeric else kinds.get(name)
                clean[name] = check_value(row[name], kind)
            except ValueError as exc:
                errors.append({"row": index, "field": name, "error": str(exc)})
        checked.append(clean)
    if errors:
        raise Invalid(describe_errors(errors) + "; nothing was stored", code="invalid_samples", details={"errors": errors[:50]})
    return checked


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """One line for a person: the first problem (row and field) and how many more there are."""
    first = errors[0]
    field = first["field"] if isinstance(first["field"], str) or first["field"] is None else ", ".join(first["field"])
    where = f"row {first['row']}" + (f", field '{field}'" if field else "")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {first['error']}{more}"
