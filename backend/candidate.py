"""What a candidate is made of: read the rows, fit, score against the active version and a baseline, save.

``train_candidate`` runs inside the training process (``training_process``)
and returns a ``Candidate``: the saved artifact's facts, its scores and the
active version's score on the same held-out rows. It has no Flask and no
registry; the parent gates, registers and serves it.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import joblib
import sklearn
from sklearn.pipeline import Pipeline

from . import catalogue, evaluation, plots, preprocessing, training, tuning
from .errors import ArtifactError, CatalogueError, TrainingFailed
from .files import sha256_file
from .options import TrainingOptions
from .registry import ARTIFACT
from .serving import load_artifact, predict_frame, to_native

CHECK_ROWS = 5


@dataclass(frozen=True)
class TrainingSpec:
    """Everything the training process needs; plain values so it pickles."""

    model: str
    csv_path: str
    limit_bytes: int | None
    target: str
    features: tuple[str, ...] | None
    task: str | None
    options: TrainingOptions
    staging_dir: str
    active_path: str | None = None
    active_sha256: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A trained, saved candidate and how it scored; ``record()`` is what its version record keeps."""

    task: str
    algorithm: str
    model_type: str
    estimator: str
    params: dict[str, Any]
    options: dict[str, Any]
    metric: str
    metrics: dict[str, Any]
    evaluation: dict[str, Any]
    cv: dict[str, Any] | None
    selection: dict[str, Any] | None
    tuning: dict[str, Any] | None
    feature_importance: dict[str, Any] | None
    plots: list[str]
    data_quality: dict[str, Any]
    candidate_score: float | None
    active_score: float | None
    active_score_error: str | None
    baseline_score: float | None
    n_rows_read: int
    n_samples: int
    n_test_samples: int
    training_seconds: float
    features: list[str]
    numeric_features: list[str]
    categorical_features: list[str]
    dtypes: dict[str, str]
    classes: list[Any] | None
    warnings: list[str]
    sha256: str
    library_versions: dict[str, str]
    check_rows: list[dict[str, Any]]
    check_predictions: list[Any]

    def record(self) -> dict[str, Any]:
        """The fields a version record keeps (the scores go into its ``promotion`` block)."""
        out = asdict(self)
        for name in _SCORES:
            out.pop(name)
        return out


_SCORES = ("candidate_score", "active_score", "active_score_error", "baseline_score")


Report = Callable[..., None]


def _stage(send: Report, low: float, high: float) -> tuning.Progress:
    return lambda fraction, stage: send("progress", low + (high - low) * fraction, stage)


def train_candidate(spec: TrainingSpec, send: Report) -> Candidate:
    """Produce and save a candidate for ``spec``; raise DataQualityError or TrainingFailed."""
    opts = spec.options
    random_state = opts.random_state
    send("progress", 3, "loading")
    frame, skipped = training.read_samples(Path(spec.csv_path), spec.limit_bytes)
    send("loaded", len(frame))
    send("progress", 8, "checking data")
    frame = training.window(frame, opts.training_window)
    data = training.prepare(frame, spec.target, list(spec.features) if spec.features else None, spec.task,
                            opts.test_size, opts.data_quality.max_invalid_fraction)
    prep = opts.preprocessing
    if prep.missing_values == "drop":
        data = training.drop_incomplete(data)
    metric = opts.metric or evaluation.DEFAULT_METRIC[data.task]
    if metric not in evaluation.METRICS[data.task]:
        raise TrainingFailed("config", f"metric '{metric}' does not apply to a {data.task} target")
    X_train, X_test, y_train, y_test = training.split(data, opts.test_size, random_state, opts.split_strategy)
    steps = preprocessing.build(prep, data.numeric, data.categorical, data.task, random_state)
    search = opts.tuning
    cv_strategy = opts.cv_strategy or ("timeseries" if opts.split_strategy == "time" else None)
    cv = tuning.splitter(data.task, cv_strategy, search.cv, random_state, y_train)
    try:
        estimator, algorithm, selection, tuned = _choose(opts, data.task, metric, steps, X_train, y_train, cv, search,
                                                         send)
    except CatalogueError as exc:
        raise TrainingFailed("config", str(exc)) from None

    template = Pipeline(steps + [("model", estimator)])
    if opts.cross_validate and not tuned and not (selection and "candidates" in selection):
        cross = tuning.cross_validate(template, X_train, y_train, data.task, metric, cv)
        selection = {"cross_validation": cross.to_dict()}
    send("progress", 65, "fitting")
    started = time.perf_counter()
    pipeline = training.fit(template, X_train, y_train)
    fit_seconds = time.perf_counter() - started

    send("progress", 78, "evaluating")
    metrics = evaluation.evaluate(pipeline, X_test, y_test, data.task)
    baseline_score = evaluation.METRICS[data.task][metric](evaluation.baseline(data.task, X_train, y_train), X_test, y_test)
    active_score, active_error = _score_active(spec, metric, data.task, X_test, y_test)
    warnings = list(data.warnings) + ([f"{skipped} malformed line(s) were skipped"] if skipped else [])
    importance = None
    try:
        importance = evaluation.feature_importance(pipeline, X_test, y_test, random_state)
    except (ValueError, TypeError, AttributeError) as exc:
        warnings.append(f"feature importance unavailable: {exc}")

    staging = Path(spec.staging_dir)
    made: list[str] = []
    if opts.plots:
        send("progress", 86, "plotting")
        made, problems = plots.render(pipeline, X_test, y_test, data.task, importance, staging / "plots")
        warnings += problems

    send("progress", 92, "saving")
    staging.mkdir(parents=True, exist_ok=True)
    artifact = staging / ARTIFACT
    joblib.dump(pipeline, artifact)
    with open(artifact, "rb+") as handle:
        os.fsync(handle.fileno())
    check = X_test.head(CHECK_ROWS)
    cv_summary = None  # the chosen model's cross-validation score on the training rows, when one was computed
    if tuned:
        cv_summary = {"mean": tuned["best_score"], "std": tuned["best_std"]}
    elif selection and "candidates" in selection:
        cv_summary = {k: selection["candidates"][algorithm][k] for k in ("mean", "std", "folds")}
    elif selection and "cross_validation" in selection:
        cv_summary, selection = selection["cross_validation"], None
    return Candidate(**{
        "task": data.task,
        "algorithm": algorithm,
        "model_type": opts.model_type,
        "estimator": type(estimator).__name__,
        "params": {k: _plain(v) for k, v in estimator.get_params(deep=False).items()},
        "options": opts.to_dict(),
        "metric": metric,
        "metrics": metrics,
        "evaluation": evaluation.details(pipeline, X_test, y_test, data.task),
        "cv": cv_summary,
        "selection": selection,
        "tuning": tuned,
        "feature_importance": importance,
        "plots": made,
        "data_quality": data.report,
        "candidate_score": metrics.get(metric),
        "active_score": active_score,
        "active_score_error": active_error,
        "baseline_score": _finite(baseline_score),
        "n_rows_read": data.n_rows_read,
        "n_samples": len(X_train),
        "n_test_samples": len(X_test),
        "training_seconds": round(fit_seconds, 4),
        "features": data.numeric + data.categorical,
        "numeric_features": data.numeric,
        "categorical_features": data.categorical,
        "dtypes": {c: str(X_train[c].dtype) for c in X_train.columns},
        "classes": [to_native(c) for c in pipeline.classes_] if data.task == "classification" else None,
        "warnings": warnings,
        "sha256": sha256_file(artifact),
        "library_versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__,
            "pandas": training.pd.__version__,
            "numpy": training.np.__version__,
        },
        "check_rows": [{k: to_native(v) for k, v in row.items()} for row in check.to_dict(orient="records")],
        "check_predictions": predict_frame(pipeline, check, data.task)[0],  # as serving will predict them
    })


def _choose(opts: TrainingOptions, task: str, metric: str, steps: list, X, y, cv, search: tuning.Tuning,
            send: Report) -> tuple[Any, str, dict[str, Any] | None, dict[str, Any] | None]:
    """Pick the estimator: the configured one, the best cross-validated candidate, or an ensemble; tune it if asked."""
    model_type, random_state, n_jobs = opts.model_type, opts.random_state, opts.n_jobs
    selection = tuned = None
    if model_type in ("voting", "stacking"):
        names = opts.candidates or catalogue.DEFAULT_CANDIDATES[task]
        members = [(n, catalogue.make(task, n, random_state, n_jobs)) for n in names]
        return catalogue.ensemble(task, model_type, members), model_type, {"members": list(names)}, None
    if model_type == "auto":
        names = opts.candidates or catalogue.DEFAULT_CANDIDATES[task]
        members = {n: Pipeline(steps + [("model", catalogue.make(task, n, random_state, n_jobs))]) for n in names}
        try:
            chosen, table = tuning.select(members, X, y, task, metric, cv, _stage(send, 20, 40))
        except ValueError as exc:
            raise TrainingFailed("error", str(exc)) from None
        selection = {"chosen": chosen, "candidates": table}
        estimator = catalogue.make(task, chosen, random_state, n_jobs)
    else:
        chosen = model_type
        estimator = catalogue.with_parameters(catalogue.make(task, chosen, random_state, n_jobs), opts.hyperparameters)
    if search.method != "none":
        space = catalogue.search_space(chosen, search.search_space)
        if space:
            try:
                tuned = tuning.search(Pipeline(steps + [("model", estimator)]), X, y, task, metric, search, space, cv,
                                      random_state, _stage(send, 40, 62))
            except ValueError as exc:
                raise TrainingFailed("config", f"tuning failed: {exc}") from None
            estimator.set_params(**{k: tuple(v) if isinstance(v, list) else v for k, v in tuned["best_params"].items()})
    return estimator, chosen, selection, tuned


def _score_active(spec: TrainingSpec, metric: str, task: str, X_test, y_test) -> tuple[float | None, str | None]:
    """Score the model in service on the candidate's test rows, so both are judged on the same rows."""
    if not spec.active_path or not spec.active_sha256:
        return None, None
    try:
        active = load_artifact(Path(spec.active_path), spec.active_sha256)
        return _finite(evaluation.METRICS[task][metric](active, X_test, y_test)), None
    except (ArtifactError, ValueError, KeyError, TypeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _finite(value: float) -> float | None:
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


