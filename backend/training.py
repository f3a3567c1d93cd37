"""Pure training: read a sample CSV, check it, split it, build and fit a pipeline.

No Flask, no registry: the worker process, the tests and the benchmarks call
these functions on DataFrames. The fitted artifact is one scikit-learn
``Pipeline`` with its preprocessing inside, so serving takes raw values.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

MIN_ROWS = 10
# A numeric target with at most this many distinct integer values is read as classes.
MAX_INFERRED_CLASSES = 20


class DataQualityError(Exception):
    """The data cannot train a model; ``problem`` is a stable short name."""

    def __init__(self, problem: str, message: str, report: dict[str, Any] | None = None):
        super().__init__(message)
        self.problem = problem
        self.report = report or {}


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


def infer_task(y: pd.Series) -> str:
    """Guess classification or regression from the target column."""
    values = y.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    return "classification" if integral and values.nunique() <= MAX_INFERRED_CLASSES else "regression"


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


def prepare(frame: pd.DataFrame, target: str, features: list[str] | None, task: str | None) -> PreparedData:
    """Check the frame can train a model and return features, target and task; raise DataQualityError if not."""
    n_rows = len(frame)
    report: dict[str, Any] = {"rows": n_rows, "columns": list(frame.columns)}
    if n_rows == 0:
        raise DataQualityError("no_rows", "the data has a header but no rows", report)
    if target not in frame.columns:
        raise DataQualityError("target_missing", f"the target column '{target}' is not in the data", report)
    wanted = list(features) if features else [c for c in frame.columns if c != target]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        report["missing_features"] = missing
        raise DataQualityError("features_missing", f"feature column(s) not in the data: {', '.join(missing)}", report)
    if not wanted:
        raise DataQualityError("no_features", "the data has no feature columns besides the target", report)

    notes: list[str] = []
    usable = frame[frame[target].notna()]
    dropped = n_rows - len(usable)
    if dropped:
        notes.append(f"{dropped} row(s) without a target were left out")
    report["rows_with_target"] = len(usable)
    y = usable[target]
    if isinstance(y.dtype, pd.StringDtype) or y.dtype == object:
        y = y.astype(str).str.strip()
    task = task or infer_task(y)
    report["task"] = task
    if len(usable) < MIN_ROWS:
        raise DataQualityError(
            "too_few_rows", f"{len(usable)} usable row(s); at least {MIN_ROWS} are needed to train and test", report
        )
    if task == "classification":
        counts = y.value_counts()
        report["class_balance"] = {str(k): int(v) for k, v in counts.items()}
        if len(counts) < 2:
            raise DataQualityError("single_class", f"the target '{target}' has a single class", report)
    elif not pd.api.types.is_numeric_dtype(y):
        raise DataQualityError("target_not_numeric", f"a regression target must be numeric; '{target}' is not", report)

    X = usable[wanted]
    empty = [c for c in wanted if X[c].isna().all()]
    if len(empty) == len(wanted):
        raise DataQualityError("no_usable_rows", "every feature column is empty", report)
    if empty:
        notes.append(f"feature(s) with no values at all: {', '.join(empty)}")
    numeric, categorical = feature_kinds(X)
    return PreparedData(
        X=coerce_features(X, numeric, categorical),
        y=y,
        task=task,
        numeric=numeric,
        categorical=categorical,
        n_rows_read=n_rows,
        warnings=notes,
    )


def split(data: PreparedData, test_size: float, random_state: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Hold out ``test_size`` of the rows, stratified by class when every class can appear on both sides."""
    stratify = None
    if data.task == "classification":
        counts = data.y.value_counts()
        n_test = int(np.ceil(test_size * len(data.y)))
        if counts.min() >= 2 and n_test >= len(counts) and len(data.y) - n_test >= len(counts):
            stratify = data.y
    return train_test_split(data.X, data.y, test_size=test_size, random_state=random_state, stratify=stratify)


def make_estimator(task: str, model_type: str, random_state: int, n_jobs: int = 1) -> BaseEstimator:
    """Return the unfitted estimator named ``model_type`` for ``task``."""
    catalogue = {
        "classification": {
            "random_forest": lambda: RandomForestClassifier(n_estimators=100, random_state=random_state, n_jobs=n_jobs),
            "svm": lambda: SVC(probability=True, random_state=random_state),
            "logistic": lambda: LogisticRegression(max_iter=2000),
        },
        "regression": {
            "random_forest": lambda: RandomForestRegressor(n_estimators=100, random_state=random_state, n_jobs=n_jobs),
            "linear": lambda: LinearRegression(),
            "ridge": lambda: Ridge(),
        },
    }[task]
    if model_type not in catalogue:
        raise ValueError(f"model type '{model_type}' is not available for {task}; choose one of {', '.join(catalogue)}")
    return catalogue[model_type]()


def apply_hyperparameters(estimator: BaseEstimator, hyperparameters: dict[str, Any]) -> BaseEstimator:
    """Set fixed parameters, refusing names the estimator does not have."""
    known = estimator.get_params(deep=False)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) for {type(estimator).__name__}: {', '.join(unknown)}")
    return estimator.set_params(**hyperparameters)


def build_pipeline(estimator: BaseEstimator, numeric: list[str], categorical: list[str]) -> Pipeline:
    """Wrap ``estimator`` with imputation, scaling and one-hot encoding of the given columns."""
    transformers = []
    if numeric:
        transformers.append(
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric)
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            )
        )
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("model", estimator)])


def fit(template: Pipeline, X: pd.DataFrame, y: pd.Series) -> Pipeline:
    """Fit a fresh clone of ``template``; the template itself is never fitted."""
    return clone(template).fit(X, y)
