"""The fair holdout and the training windows a candidate may use (CONTRACT §8): pure functions.

Rows are numbered as the sample store holds them (0-based data rows in file
order). The holdout is drawn only from rows newer than the active version's
training data, so the model in service is never scored on rows it learnt;
with ``splitStrategy: "time"`` it is the newest of them. A window of N rows
is the newest N rows, holdout included: a candidate is fitted on the
window's other rows and scored on the holdout, so every window, the active
version and the baseline are judged on the same rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.model_selection import train_test_split

MIN_TRAINING_ROWS = 50  # a window shorter than this (after its holdout) is not tried
MIN_FIT_ROWS = 10  # the holdout always leaves at least this many rows to fit on
MAX_WINDOWS = 6  # all rows and at most five shorter ones

Window = str | int  # "all" or a number of newest rows


@dataclass(frozen=True)
class Holdout:
    """Which rows score every candidate, and how the active version can be compared on them."""

    positions: np.ndarray  # positions (iloc) of the held-out rows in the prepared data, ascending
    comparison: str  # "unseen_rows" | "no_unseen_rows" | "first_version" | "other_file"
    start: int  # the first and one past the last held-out row number
    end: int

    @property
    def n(self) -> int:
        return len(self.positions)

    def to_dict(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end, "n": self.n}


def holdout(rows: np.ndarray, test_size: float, strategy: str, *, setting: Window, active_end: int | None,
            has_active: bool, other_file: bool, random_state: int, classes: np.ndarray | None = None) -> Holdout:
    """Choose the held-out rows: the newest min(⌈test_size·N⌉, unseen) rows (or as many at random among the unseen).

    ``rows`` are the row numbers of the prepared data, ascending; N is the longest window tried (all rows,
    or a pinned window's); ``active_end`` is one past the last row the active version trained on (None
    when unknown). With no unseen row the candidate still needs a test set to beat the baseline on: the
    newest ⌈test_size·N⌉ rows, and the active version is not scored.
    """
    span = len(rows) if setting in ("auto", "all") else min(int(setting), len(rows))
    first = len(rows) - span
    wanted = max(1, math.ceil(test_size * span))
    window = np.arange(first, len(rows))
    if not has_active:
        comparison, pool = "first_version", window
    elif other_file:  # another file's rows: which of them the active version saw cannot be known
        comparison, pool = "other_file", window
    else:
        unseen = window[rows[first:] >= (active_end or 0)]
        comparison, pool = ("unseen_rows", unseen) if len(unseen) else ("no_unseen_rows", window)
    size = min(wanted, len(pool), max(1, span - MIN_FIT_ROWS))
    if strategy == "time":
        chosen = pool[-size:]
    elif size == len(pool):
        chosen = pool
    else:
        chosen = np.sort(_random_rows(pool, size, random_state, None if classes is None else classes[pool]))
    return Holdout(positions=chosen, comparison=comparison, start=int(rows[chosen[0]]), end=int(rows[chosen[-1]]) + 1)


def _random_rows(pool: np.ndarray, size: int, random_state: int, classes: np.ndarray | None) -> np.ndarray:
    """``size`` rows of ``pool`` at random, stratified by class when every class can be split."""
    stratify = None
    if classes is not None:
        _, counts = np.unique(classes, return_counts=True)
        if counts.min() >= 2 and size >= len(counts) and len(pool) - size >= len(counts):
            stratify = classes
    _, test = train_test_split(pool, test_size=size, random_state=random_state, stratify=stratify)
    return test


def ladder(n_rows: int, n_test: int, setting: Window) -> list[Window]:
    """The windows to try: ``"all"`` and, for ``"auto"``, halvings while each still trains on ≥ 50 rows."""
    if setting == "all":
        return ["all"]
    if setting != "auto":
        return [int(setting)] if int(setting) < n_rows else ["all"]
    windows: list[Window] = ["all"]
    size = n_rows // 2
    while size - n_test >= MIN_TRAINING_ROWS and len(windows) < MAX_WINDOWS:
        windows.append(size)
        size //= 2
    return windows


def training_positions(n_rows: int, window: Window, held_out: Holdout) -> np.ndarray:
    """Positions of the rows a window trains on before the refit: its newest rows less the holdout."""
    first = 0 if window == "all" else max(0, n_rows - int(window))
    inside = np.arange(first, n_rows)
    return np.setdiff1d(inside, held_out.positions, assume_unique=True)


def window_positions(n_rows: int, window: Window) -> np.ndarray:
    """Positions of all of a window's rows, holdout included (what a promoted candidate is refit on)."""
    return np.arange(0 if window == "all" else max(0, n_rows - int(window)), n_rows)


def choose(scores: dict[Window, float | None], better: Callable[[float, float], float], tolerance: float) -> Window:
    """The longest window whose score is within ``tolerance`` of the best (longer windows are steadier).

    ``better(a, b)`` is how much better score ``a`` is than ``b`` (positive when better), so the rule
    holds for lower-is-better metrics too. ``scores`` are in ladder order: longest first.
    """
    usable = {w: s for w, s in scores.items() if s is not None and s == s}
    if not usable:
        return next(iter(scores))
    best = max(usable, key=lambda w: (better(usable[w], 0.0), _length(w)))
    for window, score in usable.items():  # longest first
        if better(usable[best], score) <= tolerance:
            return window
    return best


def _length(window: Window) -> float:
    return math.inf if window == "all" else float(window)


def standard_error(metric_of: Callable[[np.ndarray], float], n: int, random_state: int, draws: int = 100) -> float:
    """The bootstrap standard error of a holdout score (``metric_of`` scores a resample of holdout positions)."""
    if n < 2:
        return 0.0
    rng = np.random.default_rng(random_state)
    values = []
    for _ in range(draws):
        try:
            value = metric_of(rng.integers(0, n, size=n))
        except ValueError:  # a resample with one class for a metric that needs two
            continue
        if value == value:
            values.append(value)
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def describe(window: Window) -> Any:
    """A window as records write it: ``"all"`` or its row count."""
    return window if window == "all" else int(window)
