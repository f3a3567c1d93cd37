"""Feature columns from column-shaped bodies: ``{"columns": {...}}``, MLflow's ``dataframe_split``, matrices, tensors.

A 1,000-row body in rows is 1,000 dicts whose keys are looked up one by one;
in columns it is one list per feature, which NumPy turns into an array in one
call. The rules are those of row bodies (CONTRACT §7): every feature present
(422 naming the missing ones), other names ignored and reported, ``null`` is
missing, numbers finite, text where text belongs. A column of plain JSON
numbers (or of text) is converted at once; anything else is checked cell by
cell, so the 422 names the row and field at fault.
"""
from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from .errors import Invalid, TooLarge
from .schemas import check_value, describe_errors, parse_predict
from .serving import text_column

_PLAIN_NUMBERS = frozenset({float, int, type(None)})
_PLAIN_TEXT = frozenset({str, type(None)})


def parse_predict_body(body: Any, numeric: tuple[str, ...], categorical: tuple[str, ...],
                       max_rows: int) -> tuple[dict[str, np.ndarray], list[str], bool]:
    """Columns of a predict body, ignored names, and whether it was one row.

    ``{"features": {...}}`` (one row) and ``{"instances": [...]}`` (rows) as
    ``schemas.parse_predict`` checks them; ``{"columns": {"<feature>": [...]}}``
    (one list per feature, the fastest for many rows) here.
    """
    if isinstance(body, dict) and "columns" in body:
        if "features" in body or "instances" in body:
            raise Invalid("Send one of 'features' (one row), 'instances' (a list of rows) or 'columns' (one list per "
                          "feature)", code="validation_error", details={"fields": ["features", "instances", "columns"]})
        columns, ignored = from_mapping(body["columns"], numeric, categorical, max_rows)
        return columns, ignored, False
    return parse_predict(body, numeric, categorical, max_rows)


def from_mapping(mapping: Any, numeric: tuple[str, ...], categorical: tuple[str, ...], max_rows: int,
                 where: str = "columns") -> tuple[dict[str, np.ndarray], list[str]]:
    """Checked feature columns of ``{"<feature>": [values...], ...}``, and the names that are not features."""
    if not isinstance(mapping, dict) or not mapping:
        raise Invalid(f"'{where}' must be an object holding one list of values per feature", code="validation_error",
                      details={"field": where})
    features = numeric + categorical
    missing = [name for name in features if name not in mapping]
    if missing:
        raise Invalid(f"'{where}' is missing feature(s): {', '.join(missing)}", code="invalid_features",
                      details={"errors": [{"row": None, "field": missing, "error": "missing feature(s)"}]})
    lengths = set()
    for name in features:
        values = mapping[name]
        if not isinstance(values, list):
            raise Invalid(f"'{where}.{name}' must be a list of values", code="validation_error",
                          details={"field": f"{where}.{name}"})
        lengths.add(len(values))
    if len(lengths) != 1:
        raise Invalid(f"every list in '{where}' must hold the same number of values (got {sorted(lengths)})",
                      code="validation_error", details={"field": where, "lengths": sorted(lengths)})
    n = lengths.pop()
    if n == 0:
        raise Invalid(f"'{where}' holds no rows", code="validation_error", details={"field": where})
    check_rows(n, max_rows)
    columns, errors = {}, []
    for name in numeric:
        columns[name] = _numbers(mapping[name], name, errors)
    for name in categorical:
        columns[name] = _texts(mapping[name], name, errors)
    if errors:
        raise Invalid(describe_errors(errors), code="invalid_features", details={"errors": errors[:50]})
    return columns, sorted(k for k in mapping if k not in set(features))


def from_matrix(rows: Any, names: list[str] | tuple[str, ...], numeric: tuple[str, ...], categorical: tuple[str, ...],
                max_rows: int, where: str = "data") -> tuple[dict[str, np.ndarray], list[str]]:
    """Checked feature columns of a list of rows whose columns are ``names`` (dataframe_split, a CSV, a matrix)."""
    if not isinstance(rows, list) or not rows:
        raise Invalid(f"'{where}' must be a non-empty list of rows", code="validation_error", details={"field": where})
    check_rows(len(rows), max_rows)
    width = len(names)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise Invalid(f"row {index} of '{where}' must be a list of {width} values, one per column",
                          code="validation_error", details={"field": where, "row": index})
    if len(set(names)) != width:
        raise Invalid("a column is named twice", code="validation_error", details={"field": "columns"})
    cells = list(zip(*rows))  # one tuple per column, built in C
    return from_mapping({name: list(values) for name, values in zip(names, cells)}, numeric, categorical, max_rows,
                        where)


def check_rows(n: int, max_rows: int) -> None:
    """Refuse more rows than ``security.maxBatchRows`` in one request (413)."""
    if n > max_rows:
        raise TooLarge(f"{n} rows is more than the {max_rows} allowed in one request", code="too_many_rows",
                       details={"rows": n, "max_rows": max_rows})


def _numbers(values: list[Any], name: str, errors: list[dict[str, Any]]) -> np.ndarray:
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        try:
            column = np.array(values, dtype=float)  # None becomes NaN, imputed like a missing value
        except OverflowError:
            column = None
        if column is not None and not np.isinf(column).any():
            return column
    out = np.empty(len(values))
    for index, value in enumerate(values):
        try:
            checked = check_value(value, "numeric")
            out[index] = np.nan if checked is None else float(checked)
        except ValueError as exc:
            errors.append({"row": index, "field": name, "error": str(exc)})
    return out


def _texts(values: list[Any], name: str, errors: list[dict[str, Any]]) -> np.ndarray:
    if set(map(type, values)) <= _PLAIN_TEXT:
        return text_column(values)
    clean: list[str | None] = []
    for index, value in enumerate(values):
        try:
            checked = check_value(value, "categorical")
        except ValueError as exc:
            errors.append({"row": index, "field": name, "error": str(exc)})
            checked = None
        clean.append(checked if checked is None or isinstance(checked, str) else str(checked))
    return text_column(clean)


def flat(values: Any) -> list[Any]:
    """The cells of a list nested any number of levels deep, in row-major order (tensor data may come nested)."""
    if not isinstance(values, list) or not values or not isinstance(values[0], list):
        return values
    return flat(list(chain.from_iterable(values)))
