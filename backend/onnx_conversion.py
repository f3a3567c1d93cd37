"""Converting a promoted pipeline to ONNX in the training process, and proving it answers as scikit-learn does.

The conversion runs where the candidate was trained, on its held-out split,
so the serving process never spends seconds converting. Tries, in order:

    1. the whole pipeline (all-numeric data): the raw feature matrix in, the answer out;
    2. the estimator alone, after scikit-learn's own preprocessing: float32 rounding
       of preprocessed values can move a row across a tree threshold, which
       converting only the estimator (fed scikit-learn's values) does not;
    3. neither converts or agrees: scikit-learn serves, and the record says why.

A try counts only when ONNX Runtime reproduces scikit-learn on every held-out
row (``onnx_serving.disagreement``: the same labels; probabilities and
regression outputs within 1e-4). skl2onnx converts the estimator; the numeric
preprocessing in front of it (imputer, scalers, and our own ``OutlierCapper``
and ``SelectK``) is written here as plain ONNX operators in float64, the
operations scikit-learn performs in its order, so a whole-pipeline model feeds
the estimator scikit-learn's own values. An estimator skl2onnx cannot convert
(xgboost and lightgbm need converters of their own, ...) falls back to
scikit-learn with the reason.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from .errors import TrainingFailed
from .files import sha256_file
from .onnx_serving import ONNX_ARTIFACT, OnnxPredictor, disagreement, max_difference, session
from .preprocessing import OutlierCapper, SelectK
from .serving import answers_of

log = logging.getLogger(__name__)

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
FOREST_TIE = 1e-6  # float32 vote shares of a forest: an exact tie comes out a few ulps apart


@dataclass(frozen=True)
class Conversion:
    """What the conversion decided for one version; ``fields()`` is what its record keeps."""

    runtime: str  # "onnx" | "sklearn"
    reason: str | None = None  # why scikit-learn serves it
    seconds: float | None = None
    scope: str | None = None  # "pipeline" | "estimator"
    sha256: str | None = None
    tie_tolerance: float = 0.0
    rows_checked: int = 0
    max_difference: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The version record's fields: ``serving_runtime``, ``serving_runtime_reason``, ``conversion_seconds``, ``onnx``."""
        onnx = None
        if self.attempts:
            onnx = {"scope": self.scope, "sha256": self.sha256, "tie_tolerance": self.tie_tolerance,
                    "rows_checked": self.rows_checked, "max_difference": self.max_difference, "attempts": self.attempts}
        return {"serving_runtime": self.runtime, "serving_runtime_reason": self.reason,
                "conversion_seconds": self.seconds, "onnx": onnx}


def skipped(setting: str, promoted: bool) -> Conversion | None:
    """The decision when no conversion is attempted (scikit-learn asked for, or a candidate that will not serve)."""
    if setting == "sklearn":
        return Conversion("sklearn", 'serving.runtime is "sklearn"')
    if not promoted:
        return Conversion("sklearn", "not converted: the candidate was not promoted")
    return None


def convert(setting: str, pipeline: Pipeline, X_check: pd.DataFrame, task: str, numeric: list[str],
            categorical: list[str], folder: Path) -> Conversion:
    """Convert ``pipeline``, check it on ``X_check`` and write ``model.onnx`` to ``folder`` when it agrees.

    With ``serving.runtime: "onnx"`` a conversion that fails or disagrees raises
    TrainingFailed('conversion_failed'); with ``"auto"`` scikit-learn serves and the reason is kept.
    """
    started = time.perf_counter()
    features = tuple(numeric) + tuple(categorical)
    reference = answers_of(pipeline, X_check, task)
    columns = {name: X_check[name].to_numpy() for name in features}
    classes = tuple(pipeline.classes_) if task == "classification" else None
    estimator = pipeline.steps[-1][1]
    tie = FOREST_TIE if isinstance(estimator, (RandomForestClassifier, ExtraTreesClassifier)) else 0.0
    attempts: list[dict[str, Any]] = []
    scopes = ["estimator"] if categorical else ["pipeline", "estimator"]
    if categorical:
        attempts.append({"scope": "pipeline", "ok": False,
                         "reason": "text features: scikit-learn's imputer and encoder run before the ONNX estimator"})
    for scope in scopes:
        try:
            model = _to_onnx(pipeline, scope, X_check, task)
            predictor = OnnxPredictor(session(model), scope, pipeline, features, task, classes, tie)
            answers = predictor.predict(columns)
        except Exception as exc:  # skl2onnx and onnxruntime raise many kinds; each one means "cannot serve this way"
            attempts.append({"scope": scope, "ok": False, "reason": _short(exc)})
            continue
        problem = disagreement(reference, answers, task)
        if problem:
            attempts.append({"scope": scope, "ok": False, "reason": f"disagrees with scikit-learn: {problem}"})
            continue
        attempts.append({"scope": scope, "ok": True, "reason": None})
        path = folder / ONNX_ARTIFACT
        _write(path, model)
        return Conversion("onnx", None, round(time.perf_counter() - started, 4), scope, sha256_file(path), tie,
                          len(X_check), max_difference(reference, answers), attempts)
    reason = "; ".join(f"{a['scope']}: {a['reason']}" for a in attempts)
    if setting == "onnx":
        raise TrainingFailed("conversion_failed", f"the model could not be served by ONNX Runtime ({reason})",
                             {"attempts": attempts})
    log.info("ONNX conversion not used: %s", reason)
    return Conversion("sklearn", f"ONNX conversion not used: {reason}", round(time.perf_counter() - started, 4),
                      rows_checked=len(X_check), attempts=attempts)


def _to_onnx(pipeline: Pipeline, scope: str, X_check: pd.DataFrame, task: str) -> bytes:
    """The serialised ONNX model of the whole pipeline or of its estimator alone.

    The estimator comes from skl2onnx and takes float32, as scikit-learn's trees
    do. For the whole pipeline its input is prefixed by the preprocessing in
    float64, the same operations scikit-learn performs (``_preprocessing_nodes``),
    so the values reaching the estimator are scikit-learn's to the bit.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    estimator = pipeline.steps[-1][1]
    width = pipeline[:-1].transform(X_check.head(1)).shape[1]
    options = {id(estimator): {"zipmap": False}} if task == "classification" else None
    model = convert_sklearn(estimator, initial_types=[("X", FloatTensorType([None, width]))], options=options,
                            target_opset=TARGET_OPSET)
    if scope == "pipeline":
        _prefix_preprocessing(model, pipeline.steps[:-1], X_check.shape[1])
    return model.SerializeToString()


class Unsupported(Exception):
    """A preprocessing step this module cannot express in ONNX exactly as scikit-learn computes it."""


def _prefix_preprocessing(model: Any, steps: list[tuple[str, Any]], width: int) -> None:
    """Make ``model`` take the raw float64 feature matrix: preprocessing nodes, then a cast to the estimator's float32."""
    from onnx import TensorProto, helper

    graph = model.graph
    estimator_input = graph.input[0].name
    nodes, constants, last = _preprocessing_nodes(steps, "features")
    nodes.append(helper.make_node("Cast", [last], [estimator_input], to=TensorProto.FLOAT, name="to_float32"))
    raw = helper.make_tensor_value_info("features", TensorProto.DOUBLE, [None, width])
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    graph.initializer.extend(constants)
    del graph.input[:]
    graph.input.append(raw)


def _preprocessing_nodes(steps: list[tuple[str, Any]], source: str) -> tuple[list[Any], list[Any], str]:
    """ONNX nodes doing what the numeric preprocessing steps do, in float64 and in scikit-learn's order of operations."""
    from onnx import helper, numpy_helper
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    nodes: list[Any] = []
    constants: list[Any] = []
    current = source

    def op(kind: str, value: np.ndarray | None = None, **attributes: Any) -> None:
        nonlocal current
        inputs = [current]
        if value is not None:
            name = f"c{len(constants)}"
            constants.append(numpy_helper.from_array(np.asarray(value), name))
            inputs.append(name)
        output = f"t{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [output], name=f"n{len(nodes)}", **attributes))
        current = output

    for name, step in steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if isinstance(step, SimpleImputer) and not step.add_indicator and _is_nan(step.missing_values):
            missing = f"m{len(nodes)}"
            nodes.append(helper.make_node("IsNaN", [current], [missing], name=f"n{len(nodes)}"))
            fill = f"c{len(constants)}"
            constants.append(numpy_helper.from_array(np.asarray(step.statistics_, dtype=np.float64), fill))
            output = f"t{len(nodes)}"
            nodes.append(helper.make_node("Where", [missing, fill, current], [output], name=f"n{len(nodes)}"))
            current = output
        elif isinstance(step, StandardScaler):  # X -= mean_; X /= scale_
            if step.with_mean:
                op("Sub", np.asarray(step.mean_, dtype=np.float64))
            if step.with_std:
                op("Div", np.asarray(step.scale_, dtype=np.float64))
        elif isinstance(step, RobustScaler):  # X -= center_; X /= scale_
            if step.with_centering:
                op("Sub", np.asarray(step.center_, dtype=np.float64))
            if step.with_scaling:
                op("Div", np.asarray(step.scale_, dtype=np.float64))
        elif isinstance(step, MinMaxScaler) and not step.clip:  # X *= scale_; X += min_
            op("Mul", np.asarray(step.scale_, dtype=np.float64))
            op("Add", np.asarray(step.min_, dtype=np.float64))
        elif isinstance(step, OutlierCapper):  # np.clip: the lower bound first, then the upper
            op("Max", np.asarray(step.lower_, dtype=np.float64))
            op("Min", np.asarray(step.upper_, dtype=np.float64))
        elif isinstance(step, SelectK):
            op("Gather", np.flatnonzero(step.get_support()).astype(np.int64), axis=1)
        else:
            raise Unsupported(f"step '{name}' ({type(step).__name__}) has no exact ONNX form here")
    return nodes, constants, current


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _write(path: Path, model: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(model)
        handle.flush()
        os.fsync(handle.fileno())


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split()).split(" and attributes=")[0]  # skl2onnx dumps a whole tree's arrays there
    return f"{type(exc).__name__}: {text[:300]}"
