"""Pure training: read a sample CSV, check and clean it, split it, fit a pipeline.

No Flask, no registry: the worker process, the tests and the benchmarks call
these functions on DataFrames. The fitted artifact is one scikit-learn
``Pipeline`` with its preprocessing inside, so serving takes raw values.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from . import quality
from .errors import DataQualityError


@dataclass(frozen=True)
class PreparedData:
    """Features and target ready to split, and what we learned reading them."""

    X: pd.DataFrame
    y: pd.Series
    task: str
    numeric: list[str]
    categorical: list[str]
    n_rows_read: int
    warnings: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def read_samples(path: Path, limit_bytes: int | None = None) -> tuple[pd.DataFrame, int]:
    """Read a sample CSV (BOM, quotes, CRLF allowed); return the frame and the count of malformed lines skipped.

    ``limit_bytes`` stops at a record boundary the sample store counted, so a
    line another process is still writing is not read half-way.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read() if limit_bytes is None else handle.read(limit_bytes)
    except FileNotFoundError:
        raise DataQualityError("missing", f"{path.name} does not exist yet: post samples first") from None
    if not raw.strip():
        raise DataQualityError("empty", f"{path.name} is empty")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", on_bad_lines="warn", skip_blank_lines=True)
        except pd.errors.EmptyDataError:
            raise DataQualityError("empty", f"{path.name} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataQualityError("unreadable", f"{path.name} is not a readable CSV: {exc}") from None
    skipped = sum(str(w.message).count("Skipping line") or 1 for w in caught if issubclass(w.category, pd.errors.ParserWarning))
    frame.columns = [str(column).strip() for column in frame.columns]
    return frame, skipped


def feature_kinds(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Split columns into numeric and categorical, as the preprocessing will treat them."""
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    return numeric, [c for c in X.columns if c not in numeric]


def coerce_features(X: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Give each column the dtype the pipeline was fitted on: float, or text with NaN for missing."""
    out = pd.DataFrame(index=X.index)
    for column in numeric:
        out[column] = pd.to_numeric(X[column], errors="coerce").astype("float64")
    for column in categorical:
        values = X[column]
        out[column] = values.astype(object).where(values.notna(), np.nan).map(
            lambda v: v if isinstance(v, str) or v is np.nan else str(v)
        )
    return out[numeric + categorical]


def prepare(frame: pd.DataFrame, target: str, features: list[str] | None, task: str | None,
            test_size: float = 0.2, max_invalid_fraction: float = 0.0) -> PreparedData:
    """Check the frame can train a model (see quality.report) and return clean features, target and task.

    Text that is not a number in a numeric column fails it (``invalid_numbers``)
    unless at most ``max_invalid_fraction`` of the rows hold such text; those
    cells then become missing (a regression target's row is left out).
    """
    found = quality.report(frame, target, features, task, test_size, max_invalid_fraction)
    if found["problems"]:
        first = found["problems"][0]
        raise DataQualityError(first["problem"], first["message"], found)
    wanted = list(features) if features else [c for c in frame.columns if c != target]
    usable = frame[frame[target].notna()]
    y = usable[target]
    if found["task"] == "regression":
        y = pd.to_numeric(y, errors="coerce").astype("float64")
        usable, y = usable[y.notna()], y[y.notna()]  # tolerated text targets: nothing to learn from
    elif isinstance(y.dtype, pd.StringDtype) or y.dtype == object:
        y = y.astype(str).str.strip()
    X = usable[wanted].copy()
    for column in found["non_numeric"]:
        X[column] = pd.to_numeric(X[column], errors="coerce")
    numeric, categorical = feature_kinds(X)
    X = coerce_features(X, numeric, categorical).replace([np.inf, -np.inf], np.nan)
    return PreparedData(X=X, y=y, task=found["task"], numeric=numeric, categorical=categorical,
                        n_rows_read=len(frame), warnings=list(found["warnings"]), report=found)


def drop_incomplete(data: PreparedData) -> PreparedData:
    """Leave out training rows with any missing feature (``missingValues: drop``)."""
    keep = data.X.notna().all(axis=1)
    if int(keep.sum()) < quality.MIN_ROWS:
        raise DataQualityError("too_few_rows", f"only {int(keep.sum())} row(s) have every feature; "
                               "choose another missingValues strategy", data.report)
    notes = data.warnings + ([f"{int((~keep).sum())} row(s) with missing features were dropped"] if (~keep).any() else [])
    return replace(data, X=data.X[keep], y=data.y[keep], warnings=notes)


def window(frame: pd.DataFrame, training_window: str | int) -> pd.DataFrame:
    """Keep the newest ``training_window`` rows (the file's last ones), or all of them (``"all"``, ``"auto"``)."""
    return frame if training_window in ("all", "auto") else frame.tail(int(training_window))


def split(data: PreparedData, test_size: float, random_state: int, strategy: str = "random"
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Hold out ``test_size`` of the rows: the newest ones (``time``), or at random, stratified by class when possible."""
    if strategy == "time":
        n_test = max(1, int(np.ceil(test_size * len(data.y))))
        return data.X.iloc[:-n_test], data.X.iloc[-n_test:], data.y.iloc[:-n_test], data.y.iloc[-n_test:]
    stratify = None
    if data.task == "classification":
        counts = data.y.value_counts()
        n_test = int(np.ceil(test_size * len(data.y)))
        if counts.min() >= 2 and n_test >= len(counts) and len(data.y) - n_test >= len(counts):
            stratify = data.y
    return train_test_split(data.X, data.y, test_size=test_size, random_state=random_state, stratify=stratify)


def fit(template: Pipeline, X: pd.DataFrame, y: pd.Series) -> Pipeline:
    """Fit a fresh clone of ``template``; the template itself is never fitted."""
    return clone(template).fit(X, y)
