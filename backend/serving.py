"""What is served: an immutable loaded-model record, verified loading, and prediction.

A runtime's ``served`` attribute holds one ``ServedModel`` and is replaced
whole on a promotion. A request reads it once into a local, so a batch is
answered by one version even if a swap happens half-way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .files import sha256_file
from .training import coerce_features


class ArtifactError(Exception):
    """An artifact is missing, does not match its recorded sha256, or will not load."""


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


def predict_rows(served: ServedModel, rows: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, float]] | None]:
    """Predict validated rows; return predictions and, for classifiers, probabilities keyed by class label text."""
    frame = coerce_features(pd.DataFrame.from_records(rows, columns=list(served.features)),
                            list(served.numeric), list(served.categorical))
    predictions = [to_native(p) for p in served.pipeline.predict(frame)]
    if served.task != "classification" or not hasattr(served.pipeline, "predict_proba"):
        return predictions, None
    labels = [str(to_native(c)) for c in served.pipeline.classes_]
    matrix = served.pipeline.predict_proba(frame)
    probabilities = [{label: float(p) for label, p in zip(labels, row)} for row in matrix]
    return predictions, probabilities
