"""The data-quality report: what is wrong with a sample table, and whether it blocks training.

Blocking problems (``problems``) end a job as ``failed`` with reason
``data_quality``; the rest (``warnings``) are recorded with the version.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MIN_ROWS = 10
# A numeric target with at most this many distinct integer values is read as classes.
MAX_INFERRED_CLASSES = 20
# A text column whose values are at least this share numbers is a numeric column with bad cells.
NUMERIC_SHARE = 0.9


def infer_task(y: pd.Series) -> str:
    """Guess classification or regression from the target column."""
    values = y.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    return "classification" if integral and values.nunique() <= MAX_INFERRED_CLASSES else "regression"


def mostly_numeric(column: pd.Series) -> pd.Series | None:
    """Return the column as numbers when it is text that is nearly all numbers, else None."""
    if pd.api.types.is_numeric_dtype(column):
        return None
    present = column.dropna()
    if present.empty:
        return None
    numbers = pd.to_numeric(present, errors="coerce")
    return pd.to_numeric(column, errors="coerce") if numbers.notna().mean() >= NUMERIC_SHARE else None


def report(frame: pd.DataFrame, target: str, features: list[str] | None, task: str | None,
           test_size: float = 0.2) -> dict[str, Any]:
    """Describe ``frame`` for training on ``target``; ``problems`` lists what blocks it."""
    out: dict[str, Any] = {"rows": int(len(frame)), "columns": list(frame.columns), "problems": [], "warnings": []}

    def problem(name: str, message: str) -> dict[str, Any]:
        out["problems"].append({"problem": name, "message": message})
        return out

    if len(frame) == 0:
        return problem("no_rows", "the data has a header but no rows")
    if target not in frame.columns:
        return problem("target_missing", f"the target column '{target}' is not in the data")
    wanted = list(features) if features else [c for c in frame.columns if c != target]
    missing_columns = [c for c in wanted if c not in frame.columns]
    if missing_columns:
        out["missing_features"] = missing_columns
        return problem("features_missing", f"feature column(s) not in the data: {', '.join(missing_columns)}")
    if not wanted:
        return problem("no_features", "the data has no feature columns besides the target")

    out["missing"] = {c: int(n) for c, n in frame[wanted + [target]].isna().sum().items()}
    out["duplicate_rows"] = int(frame.duplicated().sum())
    out["constant_columns"] = [c for c in wanted if frame[c].nunique(dropna=True) <= 1]
    out["non_numeric"], out["infinite"] = {}, {}
    for column in wanted:
        numbers = mostly_numeric(frame[column])
        if numbers is not None:
            bad = frame[column][numbers.isna() & frame[column].notna()]
            out["non_numeric"][column] = {"count": int(len(bad)), "examples": [str(v) for v in bad.unique()[:5]]}
        values = numbers if numbers is not None else frame[column]
        if pd.api.types.is_numeric_dtype(values):
            infinite = int(np.isinf(values.to_numpy(dtype=float, na_value=np.nan)).sum())
            if infinite:
                out["infinite"][column] = infinite

    labelled = frame[frame[target].notna()]
    y = labelled[target]
    task = task or infer_task(y)
    out["task"] = task
    out["rows_with_target"] = int(len(labelled))
    if len(labelled) == 0:
        return problem("no_usable_rows", f"no row has a value in the target column '{target}'")
    if labelled[wanted].isna().all(axis=None):
        return problem("no_usable_rows", "every feature cell is empty")
    if task == "classification":
        counts = y.astype(str).str.strip().value_counts()
        out["class_balance"] = {str(k): int(v) for k, v in counts.items()}
        if len(counts) < 2:
            return problem("single_class", f"the target '{target}' has a single class")
        n_test = int(np.ceil(test_size * len(y)))
        if counts.min() < 2 or n_test < len(counts):
            out["warnings"].append("too few rows per class for a stratified split; the split is not stratified")
    elif mostly_numeric(y) is None and not pd.api.types.is_numeric_dtype(y):
        return problem("target_not_numeric", f"a regression target must be numeric; '{target}' is not")
    if len(labelled) < MIN_ROWS:
        return problem("too_few_rows", f"{len(labelled)} usable row(s); at least {MIN_ROWS} are needed to train and test")

    if len(labelled) < len(frame):
        out["warnings"].append(f"{len(frame) - len(labelled)} row(s) without a target are left out")
    for column, n in out["missing"].items():
        if n and column != target:
            out["warnings"].append(f"'{column}' has {n} missing value(s); they are imputed")
    if out["duplicate_rows"]:
        out["warnings"].append(f"{out['duplicate_rows']} duplicate row(s)")
    for column in out["constant_columns"]:
        out["warnings"].append(f"'{column}' is constant (or empty) and carries no information")
    for column, bad in out["non_numeric"].items():
        if bad["count"]:
            out["warnings"].append(f"'{column}' is numeric but has {bad['count']} non-numeric value(s) "
                                   f"(e.g. {', '.join(bad['examples'][:3])}); they are treated as missing")
    for column, n in out["infinite"].items():
        out["warnings"].append(f"'{column}' has {n} infinite value(s); they are treated as missing")
    return out
