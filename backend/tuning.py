"""Choosing among algorithms and their parameters by cross-validation on the training rows.

Our own folds rather than GridSearchCV: each fold of each trial or candidate is
one call an executor runs (``executor``: in the training process, or as a task
of a Dask cluster), so progress moves with every fold wherever it ran, the time
budget is checked between trials, and the promotion metric ranks candidates the
way the gate does, lower-is-better metrics included. The test split is never
seen here.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import KFold, ParameterGrid, ParameterSampler, StratifiedKFold, TimeSeriesSplit
from sklearn.pipeline import Pipeline

from . import evaluation, fits
from .executor import Call, Executor
from .windows import Window

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


def fold_calls(template: Pipeline, window: Window, cv: Any, n_folds: int, task: str, metric: str) -> list[Call]:
    """One call per fold: fit ``template`` on the fold's training part of a window, score its test part."""
    return [(fits.score_fold, (template, window, cv, fold, task, metric)) for fold in range(n_folds)]


def summarize(folds: list[fits.FoldScore]) -> CVResult:
    """The folds' mean and std (undefined folds left out); ValueError with the first fold's error if one failed."""
    for fold in folds:
        if fold.error is not None:
            raise ValueError(fold.error)
    values = [fold.value for fold in folds if fold.value is not None]
    if not values:
        return CVResult(None, None, [])
    return CVResult(float(np.mean(values)), float(np.std(values)), [round(v, 6) for v in values])


def cross_validate(executor: Executor, template: Pipeline, window: Window, task: str, metric: str, cv: Any,
                   n_folds: int, on_fold: Callable[[], None] = lambda: None) -> CVResult:
    """Score ``template`` on each fold of a window's training rows with the promotion metric."""
    return summarize(executor.run(fold_calls(template, window, cv, n_folds, task, metric), on_fold))


def _as_param(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _distribution(spec: Any) -> Any:
    if isinstance(spec, list):
        return spec
    low, high = spec["low"], spec["high"]
    if isinstance(low, int) and isinstance(high, int) and not spec.get("log"):
        return stats.randint(low, high + 1)
    return stats.loguniform(low, high) if spec.get("log") else stats.uniform(low, high - low)


def search(executor: Executor, template: Pipeline, window: Window, task: str, metric: str, tuning: Tuning,
           space: dict[str, Any], cv: Any, n_folds: int, random_state: int, progress: Progress) -> dict[str, Any]:
    """Search ``space`` for the ``model`` step of ``template``; return the best parameters and every trial's scores.

    Grid and random trials are handed to the executor all at once (a trial not begun by the time
    budget is left out); Optuna asks as many trials at a time as keep the executor's slots busy
    (one at a time locally), since each proposal learns from the scores before it.
    """
    started = time.monotonic()
    deadline = started + tuning.timeout_seconds if tuning.timeout_seconds else None
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

    def on_fold() -> None:
        done["fits"] += 1
        progress(min(1.0, done["fits"] / max(1, planned * n_folds)),
                 f"tuning {min(planned, (done['fits'] - 1) // n_folds + 1)}/{planned}")

    def evaluate(batch: list[dict[str, Any]], until: float | None = None) -> list[float | None]:
        calls = []
        for params in batch:
            model = clone(template).set_params(**{f"model__{k}": _as_param(v) for k, v in params.items()})
            calls += fold_calls(model, window, cv, n_folds, task, metric)
        results = executor.run(calls, on_fold, until, group=n_folds)
        means: list[float | None] = []
        for number, params in enumerate(batch):
            folds = results[number * n_folds:(number + 1) * n_folds]
            if any(fold is None for fold in folds):  # not begun within the time budget
                means.append(None)
                continue
            try:
                result = summarize(folds)
            except ValueError as exc:  # a parameter combination the estimator refuses
                trials.append({"params": params, "mean": None, "std": None, "error": str(exc)})
                means.append(None)
                continue
            trials.append({"params": params, "mean": result.mean, "std": result.std})
            means.append(result.mean)
        return means

    if candidates is not None:
        evaluate([{k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()} for params in candidates],
                 deadline)
    else:
        _optuna(evaluate, space, tuning, metric, random_state, deadline, max(1, -(-executor.slots // n_folds)))

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


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    params = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            # choices may be lists (hidden_layer_sizes), which Optuna cannot store: suggest an index
            params[name] = spec[trial.suggest_categorical(name, list(range(len(spec))))]
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return params


def _optuna(evaluate: Callable[[list[dict[str, Any]]], list[float | None]], space: dict[str, Any], tuning: Tuning,
            metric: str, random_state: int, deadline: float | None, batch: int) -> None:
    """Ask, score and tell ``batch`` trials at a time (what ``study.optimize`` does for a batch of one)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if metric in evaluation.LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=random_state))
    asked = 0
    while asked < tuning.n_iter and not (asked and deadline is not None and time.monotonic() > deadline):
        trials = [study.ask() for _ in range(min(batch, tuning.n_iter - asked))]
        asked += len(trials)
        for trial, value in zip(trials, evaluate([_suggest(trial, space) for trial in trials])):
            if value is None:  # a combination the estimator refused: pruned, as optimize() records it
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, value)


def select(executor: Executor, members: dict[str, Pipeline], window: Window, task: str, metric: str, cv: Any,
           n_folds: int, progress: Progress) -> tuple[str, dict[str, Any]]:
    """Cross-validate every candidate (all their folds handed to the executor at once); return the best and every score."""
    total = len(members) * n_folds
    done = {"fits": 0}

    def on_fold() -> None:
        done["fits"] += 1
        progress(done["fits"] / total, f"selecting {done['fits']}/{total}")

    calls = [call for template in members.values() for call in fold_calls(template, window, cv, n_folds, task, metric)]
    results = executor.run(calls, on_fold)
    table: dict[str, Any] = {}
    for number, name in enumerate(members):
        try:
            table[name] = summarize(results[number * n_folds:(number + 1) * n_folds]).to_dict()
        except ValueError as exc:
            table[name] = {"mean": None, "std": None, "folds": [], "error": str(exc)}
    ranked = [n for n in table if table[n]["mean"] is not None]
    if not ranked:
        raise ValueError("no candidate algorithm could be cross-validated")
    return max(ranked, key=lambda n: _goodness(metric, table[n]["mean"])), table
