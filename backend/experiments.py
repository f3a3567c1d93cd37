"""Experiments (A/B tests) between versions: sticky assignment, per-arm scores and the test that concludes them.

Assignment hashes the routing key with the experiment id (sha256, not
Python's salted ``hash``), so every worker and every restart sends a key to the
same arm. The conclusion test is two-sided at 95 % (CONTRACT §9): a
two-proportion z-test on accuracy for classifiers, computed as scipy's
chi-square test of the 2×2 table without continuity correction (the same
p-value), and Welch's t-test on per-row errors for regressors.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .evaluation import LOWER_IS_BETTER

ALPHA = 0.05
EXPERIMENT_ID_PREFIX = "e"


def assign(experiment_id: str, versions: list[str], split: list[float], routing_key: str | None) -> str:
    """The arm a request goes to: fixed by its routing key, at random without one."""
    if routing_key is None:
        point = random.random()
    else:
        digest = hashlib.sha256(f"{experiment_id}\0{routing_key}".encode("utf-8")).digest()
        point = int.from_bytes(digest[:8], "big") / 2.0**64
    total = 0.0
    for version, share in zip(versions, split):
        total += share
        if point < total:
            return version
    return versions[-1]


def error_of(task: str, metric: str, label: Any, prediction: Any) -> float:
    """One row's outcome as a number: 1.0 when a classifier was right; a regressor's error in the metric's sense."""
    if task == "classification":
        return 1.0 if str(label) == str(prediction) else 0.0
    difference = float(prediction) - float(label)
    return abs(difference) if metric == "mae" else difference * difference


@dataclass(frozen=True)
class Conclusion:
    """The test's verdict between the two best arms."""

    best: str
    runner_up: str
    p_value: float
    significant: bool
    statistic: str  # which test ran


def conclude(task: str, arms: dict[str, list[float]]) -> Conclusion:
    """Test the best arm against the runner-up on their per-row outcomes (``error_of`` values)."""
    better_high = task == "classification"  # accuracy: higher is better; errors: lower is better
    means = {v: (float(np.mean(o)) if o else math.nan) for v, o in arms.items()}
    ranked = sorted(means, key=lambda v: means[v], reverse=better_high)
    best, runner_up = ranked[0], ranked[1]
    a, b = arms[best], arms[runner_up]
    if task == "classification":
        table = np.array([[sum(a), len(a) - sum(a)], [sum(b), len(b) - sum(b)]])
        if (table.sum(axis=0) == 0).any():  # both arms always right (or always wrong): no difference to find
            p_value = 1.0
        else:
            p_value = float(stats.chi2_contingency(table, correction=False).pvalue)
        name = "two-proportion z-test"
    else:
        if np.var(a) == 0 and np.var(b) == 0:
            p_value = 1.0 if means[best] == means[runner_up] else 0.0
        else:
            p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        name = "Welch's t-test"
    if not math.isfinite(p_value):
        p_value = 1.0
    return Conclusion(best=best, runner_up=runner_up, p_value=p_value, significant=p_value < ALPHA, statistic=name)


def arm_score(task: str, metric: str, outcomes: list[float]) -> float | None:
    """An arm's score as the experiment shows it: accuracy for classifiers, the error metric for regressors."""
    if not outcomes:
        return None
    mean = float(np.mean(outcomes))
    if task == "classification":
        return mean
    return math.sqrt(mean) if metric != "mae" else mean


def score_name(task: str, metric: str) -> str:
    """What ``arm_score`` measures."""
    if task == "classification":
        return "accuracy"
    return "mae" if metric == "mae" else "rmse"


def better(metric: str, candidate: float, reference: float) -> bool:
    """Whether ``candidate`` is at least as good as ``reference`` for ``metric``."""
    return candidate <= reference if metric in LOWER_IS_BETTER else candidate >= reference
