"""What is served: an immutable loaded-model record, verified loading, and prediction.

A runtime's ``served`` attribute holds one ``ServedModel`` and is replaced
whole on a promotion. A request reads it once into a local, so a batch is
answered by one version even if a swap happens half-way.

Every predict route (Refit's own, MLflow's protocol, the Open Inference
Protocol) calls ``predict_answers`` (or ``predict_columns``, its JSON-ready
form), which asks the version's ``predictor``: scikit-learn itself
(``SklearnPredictor``) or ONNX Runtime on the converted model
(``onnx_serving.OnnxPredictor``), and counts the rows per runtime.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

import sklearn

from .errors import ArtifactError
from .files import sha256_file


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answers:
    """A prediction of n rows: the labels (or values), and for classifiers the [n, n_classes] probabilities."""

    labels: np.ndarray
    probabilities: np.ndarray | None  # float64, columns in the order of the model's classes


class Predictor(Protocol):
    """What answers for a version: scikit-learn or ONNX Runtime; ``runtime`` names it."""

    runtime: str

    def predict(self, columns: dict[str, np.ndarray]) -> Answers: ...


@dataclass(frozen=True)
class Loaded:
    """A verified version's pipeline and the predictor chosen to answer for it."""

    pipeline: Pipeline
    predictor: Predictor
    reason: str | None = None  # why scikit-learn answers for it, when it does


@dataclass(frozen=True)
class ServedModel:
    version: str
    pipeline: Pipeline
    task: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    classes: tuple[Any, ...] | None
    model_path: str
    predictor: Predictor
    class_keys: tuple[str, ...] | None = None  # the classes as probability keys ("0", "yes")
    counter: Callable[[int], Any] | None = None  # counts predicted rows (refit_predictions_total)

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def runtime(self) -> str:
        return self.predictor.runtime


class SklearnPredictor:
    """scikit-learn answers: the fitted pipeline on the frame it was fitted on."""

    runtime = "sklearn"

    def __init__(self, pipeline: Pipeline, features: tuple[str, ...], task: str):
        self.pipeline = pipeline
        self.features = features
        self.task = task

    def predict(self, columns: dict[str, np.ndarray]) -> Answers:
        return answers_of(self.pipeline, frame_of(columns, self.features), self.task)


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


def served_from_record(record: dict[str, Any], pipeline: Pipeline, predictor: Predictor | None = None,
                       counter: Callable[[int], Any] | None = None) -> ServedModel:
    """Build the served record for a version from its metadata, loaded pipeline and predictor (scikit-learn by default)."""
    classes = record.get("classes")
    numeric, categorical = tuple(record["numeric_features"]), tuple(record["categorical_features"])
    return ServedModel(
        version=record["version"],
        pipeline=pipeline,
        task=record["task"],
        numeric=numeric,
        categorical=categorical,
        classes=tuple(classes) if classes is not None else None,
        model_path=record["model_path"],
        predictor=predictor or SklearnPredictor(pipeline, numeric + categorical, record["task"]),
        class_keys=tuple(str(c) for c in classes) if classes is not None else None,
        counter=counter,
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


def answers_of(pipeline: Pipeline, frame: pd.DataFrame, task: str) -> Answers:
    """scikit-learn's answers on a prepared frame; a classifier runs once and predicts the class of highest probability."""
    # The frame holds only finite numbers, NaN for missing values (which the pipeline's imputer fills)
    # and text: every value was checked on the way in. Each step re-scanning it for infinities costs
    # ~15% of a one-row prediction, so scikit-learn is told to skip that scan.
    with sklearn.config_context(assume_finite=True):
        if task != "classification" or not hasattr(pipeline, "predict_proba"):
            return Answers(np.asarray(pipeline.predict(frame)), None)
        matrix = pipeline.predict_proba(frame)
    return Answers(pipeline.classes_[matrix.argmax(axis=1)], matrix)


def answer_lists(answers: Answers, class_keys: tuple[str, ...] | list[str] | None
                 ) -> tuple[list[Any], list[dict[str, float]] | None]:
    """JSON-ready answers: the labels, and each row's probabilities keyed by class label text."""
    labels = _native_list(answers.labels)
    if answers.probabilities is None or class_keys is None:
        return labels, None
    return labels, [dict(zip(class_keys, row)) for row in answers.probabilities.tolist()]


def predict_frame(pipeline: Pipeline, frame: pd.DataFrame, task: str) -> tuple[list[Any], list[dict[str, float]] | None]:
    """Predict a prepared frame with scikit-learn (as ``answers_of``), JSON-ready."""
    answers = answers_of(pipeline, frame, task)
    keys = [str(to_native(c)) for c in pipeline.classes_] if answers.probabilities is not None else None
    return answer_lists(answers, keys)


def _native_list(values: np.ndarray) -> list[Any]:
    if values.dtype.kind == "f" and np.isfinite(values).all() or values.dtype.kind in "iub":
        return values.tolist()
    return [to_native(v) for v in values]


def predict_answers(served: ServedModel, columns: dict[str, np.ndarray]) -> Answers:
    """Predict checked feature columns with the version's runtime, counting the rows; every predict route calls this."""
    answers = served.predictor.predict(columns)
    if served.counter is not None:
        served.counter(len(answers.labels))
    return answers


def predict_columns(served: ServedModel, columns: dict[str, np.ndarray]) -> tuple[list[Any], list[dict[str, float]] | None]:
    """Predict checked feature columns; return predictions and, for classifiers, probabilities keyed by class label text."""
    return answer_lists(predict_answers(served, columns), served.class_keys)


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
