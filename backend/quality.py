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


def numeric_share_needed(max_invalid_fraction: float = 0.0) -> float:
    """The share of numbers among a text column's cells from which the model treats it as numeric.

    ``NUMERIC_SHARE`` by default; a larger tolerance for invalid cells lowers
    it, but never below a half, so a column that is mostly text stays categorical.
    """
    return 1 - min(max(max_invalid_fraction, 1 - NUMERIC_SHARE), 0.5)


def mostly_numeric(column: pd.Series, max_invalid_fraction: float = 0.0) -> pd.Series | None:
    """Return the column as numbers (bad cells NaN) when it is text the model treats as numeric, else None."""
    if pd.api.types.is_numeric_dtype(column):
        return None
    present = column.dropna()
    if present.empty:
        return None
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().mean() < numeric_share_needed(max_invalid_fraction):
        return None
    return pd.to_numeric(column, errors="coerce")


def is_numeric(column: pd.Series, max_invalid_fraction: float = 0.0) -> bool:
    """Say whether the model treats ``column`` as numeric (numbers, or text that is nearly all numbers)."""
    if pd.api.types.is_bool_dtype(column):
        return False
    return pd.api.types.is_numeric_dtype(column) or mostly_numeric(column, max_invalid_fraction) is not None


def _row_number(frame: pd.DataFrame, label: Any, position: int) -> int:
    """The 1-based data row (1 = the first row after the header) of a frame read from a CSV."""
    return int(label) + 1 if pd.api.types.is_integer_dtype(frame.index) else position + 1


def report(frame: pd.DataFrame, target: str, features: list[str] | None, task: str | None,
           test_size: float = 0.2, max_invalid_fraction: float = 0.0) -> dict[str, Any]:
    """Describe ``frame`` for training on ``target``; ``problems`` lists what blocks it.

    A numeric column with text that is not a number (``"forty"``) blocks it
    (``invalid_numbers``) unless those cells are at most ``max_invalid_fraction``
    of the rows; tolerated cells become missing and are counted in ``warnings``.
    Rows are numbered from 1 for the first row after the header.
    """
    out: dict[str, Any] = {"rows": int(len(frame)), "columns": list(frame.columns), "problems": [], "warnings": []}

    def problem(name: str, message: str, **details: Any) -> dict[str, Any]:
        out["problems"].append({"problem": name, "message": message, **details})
        return out

    def invalid(values: pd.Series, numbers: pd.Series) -> dict[str, Any]:
        mask = numbers.isna() & values.notna()
        bad = values[mask]
        found = {"count": int(len(bad)), "examples": [str(v) for v in bad.unique()[:5]]}
        if len(bad):
            position = int(np.flatnonzero(mask.to_numpy())[0])
            found.update(first_row=_row_number(frame, bad.index[0], position), first_value=str(bad.iloc[0]))
        return found

    def too_many_invalid(found: dict[str, Any]) -> bool:
        return bool(found["count"]) and found["count"] / len(frame) > max_invalid_fraction

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
        numbers = mostly_numeric(frame[column], max_invalid_fraction)
        if numbers is not None:
            out["non_numeric"][column] = invalid(frame[column], numbers)
        values = numbers if numbers is not None else frame[column]
        if pd.api.types.is_numeric_dtype(values):
            infinite = int(np.isinf(values.to_numpy(dtype=float, na_value=np.nan)).sum())
            if infinite:
                out["infinite"][column] = infinite
    for column, found in out["non_numeric"].items():
        if too_many_invalid(found):
            return problem("invalid_numbers", _invalid_message(column, found, len(frame)), column=column,
                           count=found["count"], first_row=found["first_row"], first_value=found["first_value"])

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
    elif not pd.api.types.is_numeric_dtype(y):
        numbers = mostly_numeric(y, max_invalid_fraction)
        if numbers is None:
            return problem("target_not_numeric", f"a regression target must be numeric; '{target}' is not")
        found = invalid(y, numbers)
        if too_many_invalid(found):
            return problem("invalid_numbers", _invalid_message(target, found, len(frame)), column=target,
                           count=found["count"], first_row=found["first_row"], first_value=found["first_value"])
        if found["count"]:
            out["invalid_targets"] = found["count"]
            out["warnings"].append(f"{found['count']} row(s) whose target '{target}' is not a number are left out")
    usable = len(labelled) - out.get("invalid_targets", 0)
    if usable < MIN_ROWS:
        return problem("too_few_rows", f"{usable} usable row(s); at least {MIN_ROWS} are needed to train and test")

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


def _invalid_message(column: str, found: dict[str, Any], rows: int) -> str:
    return (f"column '{column}' has text that is not a number in {found['count']} of {rows} rows "
            f"(first at data row {found['first_row']}: {found['first_value']!r}; row 1 is the first after the header)")
