"""Serving a converted version through ONNX Runtime: the session, the predictor, and when its answers count as equal.

A version converted at training time (``onnx_conversion``) has ``model.onnx``
beside ``model.joblib`` and its sha256, scope and checks in the record's
``onnx`` block. Its scope says what the ONNX graph holds:

    pipeline    the whole pipeline: the raw float64 feature matrix in, the answer out
    estimator   only the estimator: scikit-learn's own preprocessing runs first
                (the model has text features, or float32 preprocessing moved a
                held-out row across a tree threshold)

One ``InferenceSession`` per version per worker process, built when the
version is loaded; ``run`` is thread-safe and releases the GIL, so request
threads share it. Its intra-op pool is ``serving.onnxThreads`` (default 1):
a one-row prediction is far too small to split, and on a small machine the
request threads already keep the cores busy.

scikit-learn stays the reference: the same check rows must come out of the
session before it serves, and anything that stops it from serving (no file,
a wrong sha256, another onnxruntime that refuses the graph) leaves the
version served by scikit-learn, with the reason in its record.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.pipeline import Pipeline

from .errors import ArtifactError
from .files import sha256_file
from .serving import Answers, Predictor, SklearnPredictor, columns_of, frame_of

log = logging.getLogger(__name__)

ONNX_ARTIFACT = "model.onnx"
TOLERANCE = 1e-4  # probabilities and regression outputs: relative difference allowed against scikit-learn
NOT_CONVERTED = "trained before ONNX conversion"


def session(model: bytes, threads: int = 1) -> Any:
    """An ONNX Runtime session for one prediction at a time per calling thread, on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the converted graphs carry harmless optimiser notes
    # no busy-waiting pool threads between requests: they would take CPU from the request threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxPredictor:
    """ONNX Runtime answers for one version, in scikit-learn's terms (labels of the highest probability)."""

    runtime = "onnx"

    def __init__(self, onnx_session: Any, scope: str, pipeline: Pipeline, features: tuple[str, ...], task: str,
                 classes: tuple[Any, ...] | None, tie_tolerance: float = 0.0):
        self._session = onnx_session
        given = onnx_session.get_inputs()[0]
        self._input = given.name
        # a whole pipeline takes the raw float64 values; an estimator alone takes float32, as scikit-learn's trees do
        self._dtype = np.float64 if given.type == "tensor(double)" else np.float32
        outputs = [o.name for o in onnx_session.get_outputs()]
        # classifiers: the probability matrix (the labels follow from it); regressors: the one output
        self._output = outputs[1] if task == "classification" and len(outputs) > 1 else outputs[0]
        self._prepare = pipeline[:-1] if scope == "estimator" else None
        self.scope = scope
        self.features = features
        self.task = task
        self._classes = np.asarray(classes, dtype=object if any(isinstance(c, str) for c in classes) else None) \
            if classes is not None else None
        self._tie = tie_tolerance

    def _matrix(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        if self._prepare is None:  # all-numeric: the graph imputes and scales itself
            return np.column_stack([columns[name] for name in self.features]).astype(self._dtype, copy=False)
        with sklearn.config_context(assume_finite=True):
            prepared = self._prepare.transform(frame_of(columns, self.features))
        if hasattr(prepared, "toarray"):  # one-hot output may be sparse
            prepared = prepared.toarray()
        return np.asarray(prepared, dtype=np.float32)

    def predict(self, columns: dict[str, np.ndarray]) -> Answers:
        out = self._session.run([self._output], {self._input: self._matrix(columns)})[0]
        if self.task != "classification" or self._classes is None:
            return Answers(np.asarray(out, dtype=np.float64).reshape(-1), None)
        probabilities = np.asarray(out, dtype=np.float64)
        if self._tie:
            # A forest's probabilities are vote shares: an exact tie in scikit-learn's float64 sums
            # (50 of 100 trees) comes out of float32 sums a few ulps apart. scikit-learn's argmax picks
            # the first of tied classes, so the first class within the tolerance of the best wins.
            best = (probabilities >= probabilities.max(axis=1, keepdims=True) - self._tie).argmax(axis=1)
        else:
            best = probabilities.argmax(axis=1)
        return Answers(self._classes[best], probabilities)


def disagreement(reference: Answers, candidate: Answers, task: str) -> str | None:
    """Say how ``candidate`` differs from scikit-learn's ``reference`` answers, or None when they count as equal.

    Classifiers: the same label on every row, probabilities within 1e-4 (they lie in [0, 1]).
    Regressors: every value within 1e-4 relative, relative to the mean magnitude of the
    reference values where a value is near zero.
    """
    n = len(reference.labels)
    if len(candidate.labels) != n:
        return f"{len(candidate.labels)} answers for {n} rows"
    if task == "classification":
        wrong = np.flatnonzero(np.asarray(reference.labels, dtype=object) != np.asarray(candidate.labels, dtype=object))
        if len(wrong):
            return f"{len(wrong)} of {n} labels differ (first at row {int(wrong[0])})"
        if reference.probabilities is not None and candidate.probabilities is not None:
            gap = float(np.max(np.abs(reference.probabilities - candidate.probabilities))) if n else 0.0
            if gap > TOLERANCE:
                return f"probabilities differ by up to {gap:.2g} (more than {TOLERANCE:g})"
        return None
    want = np.asarray(reference.labels, dtype=np.float64)
    got = np.asarray(candidate.labels, dtype=np.float64)
    scale = np.maximum(np.abs(want), float(np.mean(np.abs(want))) if n else 0.0)
    off = np.flatnonzero(np.abs(got - want) > TOLERANCE * np.where(scale > 0, scale, 1.0))
    if len(off):
        return f"{len(off)} of {n} values differ by more than {TOLERANCE:g} relative (first at row {int(off[0])})"
    return None


def max_difference(reference: Answers, candidate: Answers) -> float:
    """The largest absolute difference between two sets of answers' probabilities (or regression values)."""
    if reference.probabilities is not None and candidate.probabilities is not None:
        pairs = (reference.probabilities, candidate.probabilities)
    else:
        pairs = (np.asarray(reference.labels, dtype=np.float64), np.asarray(candidate.labels, dtype=np.float64))
    return float(np.max(np.abs(pairs[0] - pairs[1]))) if pairs[0].size else 0.0


def predictor_from(model: bytes, record: dict[str, Any], pipeline: Pipeline, threads: int = 1) -> OnnxPredictor:
    """Build the ONNX predictor for a version record from the converted model's bytes."""
    onnx = record["onnx"]
    return OnnxPredictor(session(model, threads), onnx["scope"], pipeline,
                         tuple(record["numeric_features"]) + tuple(record["categorical_features"]), record["task"],
                         tuple(record["classes"]) if record.get("classes") is not None else None,
                         onnx.get("tie_tolerance") or 0.0)


def load_predictor(folder: Path, record: dict[str, Any], pipeline: Pipeline, threads: int = 1) -> OnnxPredictor:
    """Load a version's ONNX model (sha256 first) and check it answers its recorded check rows as scikit-learn did."""
    path = folder / ONNX_ARTIFACT
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    if actual != record["onnx"]["sha256"]:
        raise ArtifactError(f"{path} does not match its recorded sha256 (tampered or truncated)")
    try:
        predictor = predictor_from(path.read_bytes(), record, pipeline, threads)
        rows = record.get("check_rows") or []
        got = predictor.predict(columns_of(rows, tuple(record["numeric_features"]),
                                           tuple(record["categorical_features"]))) if rows else None
    except Exception as exc:  # onnxruntime's own errors (a graph this version cannot run): scikit-learn serves
        raise ArtifactError(f"{path} could not be served by ONNX Runtime: {exc}") from exc
    if got is not None:
        want = Answers(np.asarray(record.get("check_predictions") or [], dtype=object), None)
        problem = disagreement(want, Answers(got.labels, None), record["task"])
        if problem:
            raise ArtifactError(f"{path} answers its check rows differently from scikit-learn: {problem}")
    return predictor


def choose(folder: Path, record: dict[str, Any], pipeline: Pipeline, setting: str, threads: int = 1
           ) -> tuple[Predictor, str | None]:
    """The predictor that serves a verified version under ``serving.runtime``, and why when it is scikit-learn."""
    sklearn_predictor = SklearnPredictor(pipeline, tuple(record["numeric_features"]) +
                                         tuple(record["categorical_features"]), record["task"])
    if setting == "sklearn":
        return sklearn_predictor, 'serving.runtime is "sklearn"'
    onnx = record.get("onnx")
    if not onnx or not onnx.get("sha256"):
        if "serving_runtime" not in record:
            return sklearn_predictor, NOT_CONVERTED
        return sklearn_predictor, record.get("serving_runtime_reason") or "not converted to ONNX"
    try:
        return load_predictor(folder, record, pipeline, threads), None
    except ArtifactError as exc:
        log.warning("version %s: ONNX Runtime will not serve it, scikit-learn does: %s", record.get("version"),
                    exc.message)
        return sklearn_predictor, exc.message
