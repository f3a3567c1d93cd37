"""The independent fits of one training, as plain functions over the job's shared rows.

Each fit is a call ``fn(rows, *args)``: an executor (``executor``) runs a list of
them in this process or as Dask tasks on a cluster (``cluster``). ``Rows`` is the
one large value, shared by every call (scattered to a cluster once per job), so
a call's own arguments stay small: a template, a window, a splitter and a fold
number. Positions are recomputed where the call runs, never shipped.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from . import evaluation, windows


@dataclass(frozen=True)
class Rows:
    """A job's prepared rows and its holdout: what every fit reads."""

    X: pd.DataFrame
    y: pd.Series
    holdout: windows.Holdout

    def test(self) -> tuple[pd.DataFrame, pd.Series]:
        """The held-out rows every window, the active version and the baseline are scored on."""
        at = self.holdout.positions
        return self.X.iloc[at], self.y.iloc[at]

    def training(self, window: windows.Window) -> tuple[pd.DataFrame, pd.Series]:
        """A window's rows less the holdout (what candidates, folds and trials learn from)."""
        at = windows.training_positions(len(self.y), window, self.holdout)
        return self.X.iloc[at], self.y.iloc[at]

    def whole(self, window: windows.Window) -> tuple[pd.DataFrame, pd.Series]:
        """All of a window's rows, holdout included (what a promoted candidate is refit on)."""
        at = windows.window_positions(len(self.y), window)
        return self.X.iloc[at], self.y.iloc[at]


@dataclass(frozen=True)
class WindowScore:
    """One window's holdout score and the answers behind it (for the bootstrap of the best one)."""

    score: float | None
    answers: evaluation.Replay | None


@dataclass(frozen=True)
class FoldScore:
    """One cross-validation fold's score (None when undefined), or why the fit failed."""

    value: float | None
    error: str | None = None


def score_window(rows: Rows, template: Pipeline, window: windows.Window, task: str, metric: str) -> WindowScore:
    """Fit ``template`` on a window's training rows and score it on the holdout."""
    X, y = rows.training(window)
    X_test, y_test = rows.test()
    try:
        model = clone(template).fit(X, y)
        score = finite(evaluation.METRICS[task][metric](model, X_test, y_test))
    except ValueError:  # e.g. a short window holding a single class
        return WindowScore(None, None)
    wants_proba = metric in evaluation.PROBA_METRICS
    if wants_proba and not hasattr(model, "predict_proba"):
        return WindowScore(score, None)
    return WindowScore(score, evaluation.Replay(model.predict(X_test), model.predict_proba(X_test) if wants_proba
                                                else None, getattr(model, "classes_", None)))


def score_fold(rows: Rows, template: Pipeline, window: windows.Window, cv: Any, fold: int, task: str,
               metric: str) -> FoldScore:
    """Fit ``template`` on fold ``fold`` of ``cv`` over a window's training rows; score the fold's test part."""
    X, y = rows.training(window)
    train_index, test_index = next(itertools.islice(cv.split(X, y), fold, None))
    try:
        model = clone(template).fit(X.iloc[train_index], y.iloc[train_index])
        value = float(evaluation.METRICS[task][metric](model, X.iloc[test_index], y.iloc[test_index]))
    except (ValueError, ArithmeticError) as exc:  # a parameter combination or a fold the estimator refuses
        return FoldScore(None, str(exc)[:300])
    return FoldScore(value if math.isfinite(value) else None)


def fit_window(rows: Rows, template: Pipeline, window: windows.Window, with_holdout: bool) -> Pipeline:
    """Fit a fresh clone of ``template`` on a window's training rows, or on all its rows (``with_holdout``)."""
    X, y = rows.whole(window) if with_holdout else rows.training(window)
    return clone(template).fit(X, y)


def finite(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite."""
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None

