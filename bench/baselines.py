"""The policies Refit is compared with, in process, under the same prequential protocol (test, then train).

Every forest is Refit's default pipeline (its preprocessing steps for numeric
features and ``catalogue.make("classification", "random_forest", 42)``), so the
comparison is about *when* and *on which rows* a model is retrained, not about
the model. The only difference from Refit's own trainings: a baseline fits on
every row of its window, where Refit keeps 20% back for its gate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from backend import catalogue, preprocessing
from backend.options import TrainingOptions
from bench.streams import TARGET, Stream

RETRAIN_EVERY = 500
FIXED_ROWS = 1000  # the never-retrained forest learns these rows once


@dataclass(frozen=True)
class Outcome:
    """One policy on one stream: a hit (True) or miss per scored row, the trainings it made, their CPU time."""

    policy: str
    hits: np.ndarray  # one bool per row from ``start`` on
    start: int
    trainings: int
    cpu_seconds: float

    @property
    def accuracy(self) -> float:
        return float(self.hits.mean()) if len(self.hits) else float("nan")


def forest(features: list[str], n_jobs: int = 1) -> Pipeline:
    """Refit's default classification pipeline for all-numeric ``features`` (a fresh, unfitted one)."""
    defaults = TrainingOptions()
    steps = preprocessing.build(defaults.preprocessing, features, [], "classification", defaults.random_state)
    model = catalogue.make("classification", defaults.model_type, defaults.random_state, n_jobs)
    return Pipeline(steps + [("model", model)])


def _fit(features: list[str], rows: pd.DataFrame, n_jobs: int) -> tuple[Pipeline, float]:
    started = time.process_time()  # this process's CPU; with n_jobs > 1 the joblib threads count too
    pipeline = forest(features, n_jobs).fit(rows[features], rows[TARGET])
    return pipeline, time.process_time() - started


def retrained(stream: Stream, window: int | None, start: int, n_jobs: int = 1, every: int = RETRAIN_EVERY) -> Outcome:
    """A forest refit every ``every`` rows on the newest ``window`` rows (all rows when None); each predicts the rows
    that arrive until the next refit. The first fit comes after ``every`` rows, as Refit's first training does."""
    frame, features = stream.frame, stream.features
    predicted = np.full(len(frame), False)
    trainings, cpu = 0, 0.0
    for at in range(every, len(frame), every):
        if at + every <= start:
            continue  # this model's rows are all before the scored part: nothing to learn from it
        rows = frame.iloc[max(0, at - window) if window else 0:at]
        pipeline, seconds = _fit(features, rows, n_jobs)
        trainings, cpu = trainings + 1, cpu + seconds
        chunk = frame.iloc[at:at + every]
        predicted[at:at + every] = pipeline.predict(chunk[features]) == chunk[TARGET].to_numpy()
    name = f"retrain every {every}, all rows" if window is None else f"retrain every {every}, newest {window}"
    return Outcome(name, predicted[start:], start, trainings, cpu)


def trained_once(stream: Stream, start: int, n_jobs: int = 1, rows: int = FIXED_ROWS) -> Outcome:
    """A forest fit once on the first ``rows`` rows and never again."""
    frame, features = stream.frame, stream.features
    pipeline, seconds = _fit(features, frame.iloc[:rows], n_jobs)
    rest = frame.iloc[start:]
    return Outcome(f"trained once on the first {rows}", pipeline.predict(rest[features]) == rest[TARGET].to_numpy(),
                   start, 1, seconds)


def river_arf(stream: Stream, start: int, seed: int) -> Outcome:
    """River's adaptive random forest, learning online: ``predict_one`` then ``learn_one``, row by row."""
    from river import forest as river_forest

    model = river_forest.ARFClassifier(seed=seed)
    features = stream.features
    X = stream.frame[features].to_dict("records")
    y = stream.frame[TARGET].tolist()
    hits = np.full(len(y), False)
    started = time.process_time()
    for i, (x, label) in enumerate(zip(X, y)):
        hits[i] = model.predict_one(x) == label
        model.learn_one(x, label)
    return Outcome("River ARF (online)", hits[start:], start, len(y), time.process_time() - started)


def single_fit_seconds(stream: Stream) -> float:
    """Wall seconds of one fit of the default forest (n_jobs 1) on the whole stream, timed as Refit times its fits."""
    pipeline = forest(stream.features, 1)
    started = time.perf_counter()
    pipeline.fit(stream.frame[stream.features], stream.frame[TARGET])
    return time.perf_counter() - started
