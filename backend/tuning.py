"""Choosing among algorithms and their parameters by cross-validation on the training rows.

Our own loop over folds (rather than GridSearchCV) so that progress moves with
every fold, the time budget is checked between fits, and the promotion metric
ranks candidates the way the gate does, lower-is-better metrics included.
The test split is never seen here.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import KFold, ParameterGrid, ParameterSampler, StratifiedKFold, TimeSeriesSplit
from sklearn.pipeline import Pipeline

from . import evaluation

log = logging.getLogger(__name__)

METHODS = ("none", "grid", "random", "optuna")
CV_STRATEGIES = ("kfold", "stratified", "timeseries")
MAX_TRIALS_RECORDED = 200

Progress = Callable[[float, str], None]  # (fraction done, stage)


@dataclass(frozen=True)
class Tuning:
    """``training.tuning``: how to search an algorithm's parameters."""

    method: str = "none"
    n_iter: int = 20
    cv: int = 5
    timeout_seconds: float | None = None
    search_space: dict[str, Any] | None = None


@dataclass
class CVResult:
    mean: float | None
    std: float | None
    folds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "folds": self.folds}


def splitter(task: str, strategy: str | None, folds: int, random_state: int, y: pd.Series) -> Any:
    """The CV splitter: stratified by default for classes, k-fold for numbers, or time-ordered folds."""
    if strategy is None:
        strategy = "stratified" if task == "classification" else "kfold"
    if strategy == "stratified" and task == "classification":
        folds = max(2, min(folds, int(y.value_counts().min())))
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    if strategy == "timeseries":
        return TimeSeriesSplit(n_splits=max(2, folds))
    return KFold(n_splits=max(2, folds), shuffle=True, random_state=random_state)


def _goodness(metric: str, value: float) -> float:
    return -value if metric in evaluation.LOWER_IS_BETTER else value


def cross_validate(template: Pipeline, X: pd.DataFrame, y: pd.Series, task: str, metric: str, cv: Any,
                   on_fold: Callable[[], None] = lambda: None) -> CVResult:
    """Score ``template`` on each fold with the promotion metric; failed or undefined folds are left out."""
    score = evaluation.METRICS[task][metric]
    values = []
    for train_index, test_index in cv.split(X, y):
        model = clone(template).fit(X.iloc[train_index], y.iloc[train_index])
        value = float(score(model, X.iloc[test_index], y.iloc[test_index]))
        if math.isfinite(value):
            values.append(value)
        on_fold()
    if not values:
        return CVResult(None, None, [])
    return CVResult(float(np.mean(values)), float(np.std(values)), [round(v, 6) for v in values])


def _as_param(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _distribution(spec: Any) -> Any:
    if isinstance(spec, list):
        return spec
    low, high = spec["low"], spec["high"]
    if isinstance(low, int) and isinstance(high, int) and not spec.get("log"):
        return stats.randint(low, high + 1)
    return stats.loguniform(low, high) if spec.get("log") else stats.uniform(low, high - low)


def search(template: Pipeline, X: pd.DataFrame, y: pd.Series, task: str, metric: str, tuning: Tuning,
           space: dict[str, Any], cv: Any, random_state: int, progress: Progress) -> dict[str, Any]:
    """Search ``space`` for the ``model`` step of ``template``; return the best parameters and every trial's scores."""
    started = time.monotonic()
    deadline = started + tuning.timeout_seconds if tuning.timeout_seconds else math.inf
    n_folds = cv.get_n_splits(X, y)
    if tuning.method == "grid":
        if any(not isinstance(v, list) for v in space.values()):
            raise ValueError("a grid search needs a list of values for every parameter")
        candidates: list[dict[str, Any]] | None = list(ParameterGrid(space))
    elif tuning.method == "random":
        candidates = list(ParameterSampler({k: _distribution(v) for k, v in space.items()}, n_iter=tuning.n_iter,
                                           random_state=random_state))
    else:
        candidates = None
    planned = len(candidates) if candidates is not None else tuning.n_iter
    trials: list[dict[str, Any]] = []
    done = {"fits": 0}

    def evaluate(params: dict[str, Any]) -> float | None:
        model = clone(template).set_params(**{f"model__{k}": _as_param(v) for k, v in params.items()})

        def on_fold() -> None:
            done["fits"] += 1
            progress(min(1.0, done["fits"] / max(1, planned * n_folds)), f"tuning {len(trials) + 1}/{planned}")

        try:
            result = cross_validate(model, X, y, task, metric, cv, on_fold)
        except (ValueError, ArithmeticError) as exc:  # a parameter combination the estimator refuses
            trials.append({"params": params, "mean": None, "std": None, "error": str(exc)[:300]})
            return None
        trials.append({"params": params, "mean": result.mean, "std": result.std})
        return result.mean

    if candidates is not None:
        for params in candidates:
            if trials and time.monotonic() > deadline:
                break
            evaluate({k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()})
    else:
        _optuna(evaluate, space, tuning, metric, random_state, deadline)

    scored = [t for t in trials if t["mean"] is not None]
    if not scored:
        raise ValueError("no parameter combination could be scored")
    best = max(scored, key=lambda t: _goodness(metric, t["mean"]))
    return {
        "method": tuning.method,
        "best_params": best["params"],
        "best_score": best["mean"],
        "best_std": best["std"],
        "n_trials": len(trials),
        "stopped_by_time_budget": len(trials) < planned,
        "seconds": round(time.monotonic() - started, 3),
        "trials": trials[:MAX_TRIALS_RECORDED],
    }


def _optuna(evaluate: Callable[[dict[str, Any]], float | None], space: dict[str, Any], tuning: Tuning, metric: str,
            random_state: int, deadline: float) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        params = {}
        for name, spec in space.items():
            if isinstance(spec, list):
                # choices may be lists (hidden_layer_sizes), which Optuna cannot store: suggest an index
                params[name] = spec[trial.suggest_categorical(name, list(range(len(spec))))]
            elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
                params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")))
            else:
                params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
        value = evaluate(params)
        if value is None:
            raise optuna.TrialPruned()
        return value

    direction = "minimize" if metric in evaluation.LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=random_state))
    remaining = deadline - time.monotonic()
    study.optimize(objective, n_trials=tuning.n_iter, timeout=None if math.isinf(remaining) else max(1.0, remaining))


def select(members: dict[str, Pipeline], X: pd.DataFrame, y: pd.Series, task: str, metric: str, cv: Any,
           progress: Progress) -> tuple[str, dict[str, Any]]:
    """Cross-validate every candidate; return the best one's name and every candidate's scores."""
    table: dict[str, Any] = {}
    n_folds = cv.get_n_splits(X, y)
    total = len(members) * n_folds
    done = {"fits": 0}

    def on_fold() -> None:
        done["fits"] += 1
        progress(done["fits"] / total, f"selecting {done['fits']}/{total}")

    for name, template in members.items():
        try:
            table[name] = cross_validate(template, X, y, task, metric, cv, on_fold).to_dict()
        except (ValueError, ArithmeticError) as exc:
            table[name] = {"mean": None, "std": None, "folds": [], "error": str(exc)[:300]}
    ranked = [n for n in table if table[n]["mean"] is not None]
    if not ranked:
        raise ValueError("no candidate algorithm could be cross-validated")
    return max(ranked, key=lambda n: _goodness(metric, table[n]["mean"])), table
