"""What is served: an immutable loaded-model record, verified loading, and prediction.

A runtime's ``served`` attribute holds one ``ServedModel`` and is replaced
whole on a promotion. A request reads it once into a local, so a batch is
answered by one version even if a swap happens half-way.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

import sklearn

from .errors import ArtifactError
from .files import sha256_file


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    version: str
    pipeline: Pipeline
    task: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    classes: tuple[Any, ...] | None
    model_path: str

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


def load_artifact(path: Path, sha256: str) -> Pipeline:
    """Load a pipeline only after its bytes match the recorded sha256; never unpickle an unverified file."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {path} is missing") from None
    if actual != sha256:
        raise ArtifactError(f"artifact {path} does not match its recorded sha256 (tampered or truncated)")
    try:
        return joblib.load(path)
    except Exception as exc:  # a verified file that still fails to unpickle: report, never crash the server
        raise ArtifactError(f"artifact {path} failed to load: {exc}") from exc


def served_from_record(record: dict[str, Any], pipeline: Pipeline) -> ServedModel:
    """Build the served record for a version from its metadata and loaded pipeline."""
    classes = record.get("classes")
    return ServedModel(
        version=record["version"],
        pipeline=pipeline,
        task=record["task"],
        numeric=tuple(record["numeric_features"]),
        categorical=tuple(record["categorical_features"]),
        classes=tuple(classes) if classes is not None else None,
        model_path=record["model_path"],
    )


def to_native(value: Any) -> Any:
    """Turn a numpy scalar into a JSON-ready Python value (NaN becomes None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def columns_of(rows: list[dict[str, Any]], numeric: tuple[str, ...], categorical: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One array per feature from checked rows: floats (NaN for missing) and text (NaN for missing)."""
    columns = {name: np.array([row.get(name) for row in rows], dtype=float) for name in numeric}
    for name in categorical:
        columns[name] = text_column([v if v is None or isinstance(v, str) else str(v) for v in (row.get(name) for row in rows)])
    return columns


def text_column(values: list[str | None]) -> np.ndarray:
    """A categorical column as the pipeline was fitted on it: text, NaN where missing."""
    return np.array([np.nan if v is None else v for v in values], dtype=object)


def frame_of(columns: dict[str, np.ndarray], names: tuple[str, ...]) -> pd.DataFrame:
    """The frame a pipeline was fitted on; all-float columns become one block without a per-column copy."""
    arrays = [columns[name] for name in names]
    if all(a.dtype == np.float64 for a in arrays):
        return pd.DataFrame(np.column_stack(arrays), columns=list(names))
    return pd.DataFrame(dict(zip(names, arrays)), columns=list(names))


def rows_to_frame(rows: list[dict[str, Any]], numeric: tuple[str, ...], categorical: tuple[str, ...]) -> pd.DataFrame:
    """Build the frame a pipeline was fitted on straight from checked rows."""
    return frame_of(columns_of(rows, numeric, categorical), numeric + categorical)


def predict_frame(pipeline: Pipeline, frame: pd.DataFrame, task: str) -> tuple[list[Any], list[dict[str, float]] | None]:
    """Predict a prepared frame; a classifier runs once and predicts the class of highest probability."""
    # The frame holds only finite numbers, NaN for missing values (which the pipeline's imputer fills)
    # and text: every value was checked on the way in. Each step re-scanning it for infinities costs
    # ~15% of a one-row prediction, so scikit-learn is told to skip that scan.
    with sklearn.config_context(assume_finite=True):
        if task != "classification" or not hasattr(pipeline, "predict_proba"):
            return _native_list(pipeline.predict(frame)), None
        matrix = pipeline.predict_proba(frame)
    classes = pipeline.classes_
    labels = [str(to_native(c)) for c in classes]
    return _native_list(classes[matrix.argmax(axis=1)]), [dict(zip(labels, row)) for row in matrix.tolist()]


def _native_list(values: np.ndarray) -> list[Any]:
    if values.dtype.kind == "f" and np.isfinite(values).all() or values.dtype.kind in "iub":
        return values.tolist()
    return [to_native(v) for v in values]


def predict_columns(served: ServedModel, columns: dict[str, np.ndarray]) -> tuple[list[Any], list[dict[str, float]] | None]:
    """Predict checked feature columns; return predictions and, for classifiers, probabilities keyed by class label text."""
    return predict_frame(served.pipeline, frame_of(columns, served.features), served.task)


def predict_rows(served: ServedModel, rows: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, float]] | None]:
    """Predict checked rows (as ``predict_columns``)."""
    return predict_columns(served, columns_of(rows, served.numeric, served.categorical))


def load_checked(path: Path, record: dict[str, Any]) -> Pipeline:
    """Load a version as serving will (sha256 first) and check it predicts its recorded rows as it did when trained."""
    pipeline = load_artifact(path, record["sha256"])
    probe = served_from_record({**record, "version": record.get("version", "candidate"), "model_path": str(path)}, pipeline)
    try:
        predictions, _ = predict_rows(probe, record.get("check_rows") or [])
    except Exception as exc:  # any failure to predict means this version must not serve
        raise ArtifactError(f"artifact {path} could not predict on its check rows: {exc}") from exc
    if not _same(predictions, record.get("check_predictions") or []):
        raise ArtifactError(f"artifact {path} predicts differently from when it was trained")
    return pipeline


def version_mismatch(record: dict[str, Any]) -> str | None:
    """Say so when a version was trained under another scikit-learn than the one loading it."""
    trained = (record.get("library_versions") or {}).get("scikit-learn")
    if trained and trained != sklearn.__version__:
        return f"trained with scikit-learn {trained}, loaded with {sklearn.__version__}"
    return None


def _same(left: list[Any], right: list[Any]) -> bool:
    if len(left) != len(right):
        return False
    for a, b in zip(left, right):
        if isinstance(a, float) and isinstance(b, float):
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif a != b:
            return False
    return True
