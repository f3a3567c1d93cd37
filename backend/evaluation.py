"""Pure evaluation: metrics with their direction, the trivial baseline, the promotion decision."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    explained_variance_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2"}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mape"})


def _proba_metric(fn: Callable[..., float]) -> Callable[[BaseEstimator, pd.DataFrame, pd.Series], float]:
    def score(model: BaseEstimator, X: pd.DataFrame, y: pd.Series) -> float:
        if not hasattr(model, "predict_proba"):
            return math.nan
        proba = model.predict_proba(X)
        classes = list(model.classes_)
        if not set(pd.unique(y)) <= set(classes):
            return math.nan  # the model never saw some test class; the metric is undefined for it
        return fn(y, proba, classes)

    return score


def _roc_auc(y: pd.Series, proba: np.ndarray, classes: list[Any]) -> float:
    if len(set(y)) < 2:
        return math.nan
    if len(classes) == 2:
        return roc_auc_score(y == classes[1], proba[:, 1])
    return roc_auc_score(y, proba, multi_class="ovr", labels=classes)


def _label_metric(fn: Callable[[Any, Any], float]) -> Callable[[BaseEstimator, pd.DataFrame, pd.Series], float]:
    return lambda model, X, y: fn(y, model.predict(X))


METRICS: dict[str, dict[str, Callable[[BaseEstimator, pd.DataFrame, pd.Series], float]]] = {
    "classification": {
        "accuracy": _label_metric(accuracy_score),
        "f1_macro": _label_metric(lambda y, p: f1_score(y, p, average="macro", zero_division=0)),
        "f1_weighted": _label_metric(lambda y, p: f1_score(y, p, average="weighted", zero_division=0)),
        "precision_macro": _label_metric(lambda y, p: precision_score(y, p, average="macro", zero_division=0)),
        "recall_macro": _label_metric(lambda y, p: recall_score(y, p, average="macro", zero_division=0)),
        "precision_weighted": _label_metric(lambda y, p: precision_score(y, p, average="weighted", zero_division=0)),
        "recall_weighted": _label_metric(lambda y, p: recall_score(y, p, average="weighted", zero_division=0)),
        "roc_auc": _proba_metric(_roc_auc),
        "log_loss": _proba_metric(lambda y, proba, classes: log_loss(y, proba, labels=classes)),
    },
    "regression": {
        "r2": _label_metric(r2_score),
        "rmse": _label_metric(lambda y, p: math.sqrt(mean_squared_error(y, p))),
        "mae": _label_metric(mean_absolute_error),
        "mape": _label_metric(mean_absolute_percentage_error),
        "explained_variance": _label_metric(explained_variance_score),
    },
}
PERMUTATION_ROWS = 2000
PROBA_METRICS = frozenset({"roc_auc", "log_loss"})


class Replay:
    """Hands a metric of ``METRICS`` answers a model already gave, so scoring them again predicts nothing.

    Live scores (``monitoring``) and bootstrap resamples of a holdout (``candidate``) use it, so every
    score shares one definition of each metric and its direction.
    """

    def __init__(self, predictions: np.ndarray, proba: np.ndarray | None, classes: Any = None):
        self._predictions = predictions
        self._proba = proba
        self.classes_ = np.asarray(classes) if classes is not None else None

    def predict(self, X: Any) -> np.ndarray:
        return self._predictions

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._proba

    def subset(self, positions: np.ndarray) -> Replay:
        """The answers at ``positions`` (a resample)."""
        return Replay(self._predictions[positions], None if self._proba is None else self._proba[positions],
                      self.classes_)



def evaluate(model: BaseEstimator, X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, float | None]:
    """Score ``model`` on held-out rows with every metric of ``task``; undefined metrics are None."""
    scores: dict[str, float | None] = {}
    for name, metric in METRICS[task].items():
        value = float(metric(model, X, y))
        scores[name] = value if math.isfinite(value) else None
    return scores


def details(model: BaseEstimator, X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, Any]:
    """The confusion matrix and per-class report of a classifier on held-out rows (empty for regression)."""
    if task != "classification":
        return {}
    predicted = model.predict(X)
    labels = list(model.classes_)
    report = classification_report(y, predicted, labels=labels, output_dict=True, zero_division=0)
    return {
        "confusion_matrix": {"labels": [_plain(c) for c in labels],
                             "matrix": confusion_matrix(y, predicted, labels=labels).tolist()},
        "per_class": {str(k): {m: float(v) for m, v in row.items()} if isinstance(row, dict) else float(row)
                      for k, row in report.items()},
    }


def feature_importance(model: Any, X: pd.DataFrame, y: pd.Series, random_state: int) -> dict[str, Any]:
    """Feature importance: the estimator's own (trees, linear coefficients), else permutation on held-out rows."""
    estimator = model[-1]
    native = getattr(estimator, "feature_importances_", None)
    if native is None and getattr(estimator, "coef_", None) is not None:
        coef = np.abs(np.asarray(estimator.coef_, dtype=float))
        native = coef.mean(axis=0) if coef.ndim > 1 else coef
    if native is not None:
        try:
            names = [str(n) for n in model[:-1].get_feature_names_out()]
        except (AttributeError, ValueError):
            names = [f"feature_{i}" for i in range(len(native))]
        if len(names) == len(native):
            return {"method": "native", "features": _ranked(dict(zip(names, map(float, native))))}
    sample = X.iloc[:PERMUTATION_ROWS]
    result = permutation_importance(model, sample, y.iloc[:PERMUTATION_ROWS], n_repeats=5, random_state=random_state)
    return {"method": "permutation", "features": _ranked(dict(zip(X.columns, map(float, result.importances_mean))))}


def _ranked(values: dict[str, float]) -> dict[str, float]:
    return dict(sorted(values.items(), key=lambda kv: -abs(kv[1]))[:100])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def baseline(task: str, X: pd.DataFrame, y: pd.Series) -> BaseEstimator:
    """Fit the trivial model a first version must beat: the majority class or the mean."""
    dummy = DummyClassifier(strategy="prior") if task == "classification" else DummyRegressor(strategy="mean")
    return dummy.fit(X, y)


@dataclass(frozen=True)
class Decision:
    """Whether a candidate replaces the served model, and why."""

    promoted: bool
    reason: str
    metric: str
    candidate: float | None
    reference: float | None
    reference_kind: str  # "active" or "baseline"


def improvement(metric: str, candidate: float, reference: float) -> float:
    """How much better ``candidate`` is than ``reference``, positive when better, whatever the metric's direction."""
    return reference - candidate if metric in LOWER_IS_BETTER else candidate - reference


def decide(
    metric: str,
    candidate: float | None,
    active: float | None,
    baseline_score: float | None,
    min_improvement: float,
    has_active: bool,
    comparison: str = "unseen_rows",
) -> Decision:
    """Apply the promotion gate; all scores come from the same held-out rows.

    ``comparison`` says whether the active version could be scored on rows it never saw: with
    ``"no_unseen_rows"`` it is not compared, and the candidate must only beat the baseline.
    """
    if candidate is None:
        return Decision(False, f"the candidate's {metric} could not be computed", metric, None, active, "active")
    if has_active and comparison == "no_unseen_rows":
        if baseline_score is None or improvement(metric, candidate, baseline_score) > 0:
            return Decision(True, "no rows newer than the active version's training data to compare on; "
                            "beats the trivial baseline", metric, candidate, baseline_score, "baseline")
        return Decision(False, f"no unseen rows to compare on, and does not beat the trivial baseline "
                        f"({metric} {baseline_score:.4f})", metric, candidate, baseline_score, "baseline")
    if not has_active:
        if baseline_score is None or improvement(metric, candidate, baseline_score) > 0:
            return Decision(True, "first model; beats the trivial baseline", metric, candidate, baseline_score, "baseline")
        return Decision(
            False, f"does not beat the trivial baseline ({metric} {baseline_score:.4f})", metric, candidate,
            baseline_score, "baseline",
        )
    if active is None:
        return Decision(True, "the active model could not be scored on the new test rows", metric, candidate, None, "active")
    gain = improvement(metric, candidate, active)
    # a tiny tolerance so a candidate that ties exactly is not lost to float rounding
    if gain + 1e-12 >= min_improvement:
        return Decision(True, f"{metric} {candidate:.4f} vs active {active:.4f}", metric, candidate, active, "active")
    wanted = f"at least {min_improvement:g} better than" if min_improvement else "as good as"
    return Decision(False, f"{metric} {candidate:.4f} is not {wanted} the active {active:.4f}",
                    metric, candidate, active, "active")
