"""Evaluation plots as PNG files (matplotlib, Agg backend), made after training.

A plot that fails is reported and skipped: plots never fail a training.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import auc, confusion_matrix, precision_recall_curve, roc_curve  # noqa: E402

log = logging.getLogger(__name__)


def render(model: Any, X: pd.DataFrame, y: pd.Series, task: str, importance: dict[str, Any] | None,
           folder: Path) -> tuple[list[str], list[str]]:
    """Draw every plot that fits ``task`` into ``folder``; return (names made, warnings)."""
    folder.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Callable[[Any], None]] = {}
    predicted = model.predict(X)
    if task == "classification":
        plots["confusion_matrix"] = lambda ax: _confusion(ax, y, predicted, list(model.classes_))
        if hasattr(model, "predict_proba"):
            proba = model.predict_proba(X)
            plots["roc_curve"] = lambda ax: _curves(ax, y, proba, list(model.classes_), roc=True)
            plots["precision_recall"] = lambda ax: _curves(ax, y, proba, list(model.classes_), roc=False)
    else:
        plots["predicted_vs_actual"] = lambda ax: _scatter(ax, y, predicted)
        plots["residuals"] = lambda ax: _residuals(ax, y, predicted)
    if importance and importance.get("features"):
        plots["feature_importance"] = lambda ax: _importance(ax, importance)
    made, problems = [], []
    for name, draw in plots.items():
        figure, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
        try:
            draw(ax)
            figure.tight_layout()
            figure.savefig(folder / f"{name}.png", format="png")
            made.append(name)
        except Exception as exc:  # a plot is a nicety: report it, keep the training
            log.warning("plot %s failed: %s", name, exc)
            problems.append(f"plot {name} failed: {exc}")
        finally:
            plt.close(figure)
    return made, problems


def _confusion(ax: Any, y: pd.Series, predicted: Any, labels: list[Any]) -> None:
    matrix = confusion_matrix(y, predicted, labels=labels)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), [str(v) for v in labels])
    ax.set_yticks(range(len(labels)), [str(v) for v in labels])
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (held-out rows)")


def _curves(ax: Any, y: pd.Series, proba: np.ndarray, classes: list[Any], roc: bool) -> None:
    shown = classes[1:] if len(classes) == 2 else classes
    for label in shown:
        truth = (np.asarray(y) == label).astype(int)
        if truth.min() == truth.max():
            continue
        score = proba[:, classes.index(label)]
        if roc:
            fpr, tpr, _ = roc_curve(truth, score)
            ax.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
        else:
            precision, recall, _ = precision_recall_curve(truth, score)
            ax.plot(recall, precision, label=str(label))
    if roc:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one vs rest)")
    else:
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (one vs rest)")
    ax.legend(loc="best", fontsize="small")


def _scatter(ax: Any, y: pd.Series, predicted: Any) -> None:
    ax.scatter(y, predicted, s=8, alpha=0.6)
    low, high = float(min(np.min(y), np.min(predicted))), float(max(np.max(y), np.max(predicted)))
    ax.plot([low, high], [low, high], linestyle="--", color="grey")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (held-out rows)")


def _residuals(ax: Any, y: pd.Series, predicted: Any) -> None:
    ax.scatter(predicted, np.asarray(y) - predicted, s=8, alpha=0.6)
    ax.axhline(0, linestyle="--", color="grey")
    ax.set(xlabel="predicted", ylabel="actual − predicted", title="Residuals (held-out rows)")


def _importance(ax: Any, importance: dict[str, Any]) -> None:
    top = list(importance["features"].items())[:20][::-1]
    ax.barh([name for name, _ in top], [value for _, value in top])
    ax.set(xlabel="importance", title=f"Feature importance ({importance['method']})")
