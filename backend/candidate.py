"""What a candidate is made of: read the rows, fit, score against the active version and a baseline, save.

``train_candidate`` runs inside the training process (``training_process``)
and returns a ``Candidate``: the saved artifact's facts, its scores and the
active version's score on the same held-out rows. It has no Flask and no
registry; the parent gates, registers and serves it. Its fits (windows,
candidates, folds, trials, the final fit and the refit) go through an
executor (``executor``): here, or as tasks of a Dask cluster, which hands back
the fitted pipeline; scoring, plots and the artifact are made here either way.
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

from . import catalogue, evaluation, fits, onnx_conversion, plots, preprocessing, training, tuning, windows
from .errors import ArtifactError, CatalogueError, TrainingFailed
from .executor import ComputeConfig, Executor, open_executor
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
    active_trained_end: int | None = None  # one past the last store row the active version trained on
    other_file: bool = False  # the rows come from another file than the sample store
    serving_runtime: str = "auto"  # config serving.runtime: convert a promoted candidate to ONNX unless "sklearn"
    compute: ComputeConfig = ComputeConfig()  # where the fits run (config ``compute``)


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
    decision: evaluation.Decision
    window_scores: list[dict[str, Any]]  # each window tried and its holdout score
    holdout: dict[str, int]
    comparison: str
    training_window: str | int
    refit: bool
    trained_rows: dict[str, int]
    n_rows_read: int
    n_samples: int
    n_test_samples: int
    training_seconds: float
    timings: dict[str, float]
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
    executor: str  # where the fits ran: "local" or "dask"
    scheduler: str | None  # the Dask scheduler's address
    tasks_run: int  # Dask tasks completed for this job (0 locally)
    # how it will be served (CONTRACT §11): see onnx_conversion.Conversion.fields
    serving_runtime: str = "sklearn"
    serving_runtime_reason: str | None = None
    conversion_seconds: float | None = None
    onnx: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """The fields a version record keeps (the scores go into its ``promotion`` block)."""
        out = asdict(self)
        for name in _SCORES:
            out.pop(name)
        return out


_SCORES = ("candidate_score", "active_score", "active_score_error", "baseline_score", "decision", "window_scores",
           "holdout", "comparison")


Report = Callable[..., None]


def _stage(send: Report, low: float, high: float) -> tuning.Progress:
    return lambda fraction, stage: send("progress", low + (high - low) * fraction, stage)


def train_candidate(spec: TrainingSpec, send: Report) -> Candidate:
    """Produce and save a candidate for ``spec``; raise DataQualityError or TrainingFailed."""
    # a cluster is connected to first: one that does not answer fails the job before any row is read
    executor = open_executor(spec.compute, spec.options.n_jobs, Path(spec.staging_dir).name)
    try:
        return _train(spec, send, executor)
    finally:
        executor.close()


def _train(spec: TrainingSpec, send: Report, executor: Executor) -> Candidate:
    opts = spec.options
    random_state = opts.random_state
    send("progress", 3, "loading")
    frame, skipped = training.read_samples(Path(spec.csv_path), spec.limit_bytes)
    send("loaded", len(frame))
    send("progress", 8, "checking data")
    data = training.prepare(frame, spec.target, list(spec.features) if spec.features else None, spec.task,
                            opts.test_size, opts.data_quality.max_invalid_fraction)
    prep = opts.preprocessing
    if prep.missing_values == "drop":
        data = training.drop_incomplete(data)
    metric = opts.metric or evaluation.DEFAULT_METRIC[data.task]
    if metric not in evaluation.METRICS[data.task]:
        raise TrainingFailed("config", f"metric '{metric}' does not apply to a {data.task} target")
    n_rows = len(data.y)
    row_numbers = data.X.index.to_numpy()
    held_out = windows.holdout(row_numbers, opts.test_size, opts.split_strategy, setting=opts.training_window,
                               active_end=spec.active_trained_end,
                               has_active=spec.active_path is not None, other_file=spec.other_file,
                               random_state=random_state,
                               classes=data.y.to_numpy() if data.task == "classification" else None)
    X_test, y_test = data.X.iloc[held_out.positions], data.y.iloc[held_out.positions]
    rows = fits.Rows(data.X, data.y, held_out)
    if executor.kind != "local":
        send("progress", 10, "sending the rows to the cluster")
    executor.share(rows)  # once per job: every fit below refers to these rows
    steps = preprocessing.build(prep, data.numeric, data.categorical, data.task, random_state)
    send("progress", 12, "choosing a window")
    started = time.perf_counter()
    window, tried = _search_windows(executor, opts, data.task, rows, metric, steps, send)
    search_seconds = time.perf_counter() - started
    train_at = windows.training_positions(n_rows, window, held_out)
    X_train, y_train = data.X.iloc[train_at], data.y.iloc[train_at]
    search = opts.tuning
    cv_strategy = opts.cv_strategy or ("timeseries" if opts.split_strategy == "time" else None)
    cv = tuning.splitter(data.task, cv_strategy, search.cv, random_state, y_train)
    folds = _Folds(window, cv, cv.get_n_splits(X_train, y_train))
    try:
        estimator, algorithm, selection, tuned = _choose(executor, opts, data.task, metric, steps, folds, search, send)
    except CatalogueError as exc:
        raise TrainingFailed("config", str(exc)) from None

    template = Pipeline(steps + [("model", estimator)])
    if opts.cross_validate and not tuned and not (selection and "candidates" in selection):
        cross = tuning.cross_validate(executor, template, window, data.task, metric, cv, folds.n)
        selection = {"cross_validation": cross.to_dict()}
    send("progress", 65, "fitting")
    started = time.perf_counter()
    pipeline = _fit(executor, template, window, with_holdout=False)
    fit_seconds = time.perf_counter() - started

    send("progress", 76, "evaluating")
    metrics = evaluation.evaluate(pipeline, X_test, y_test, data.task)
    baseline_score = fits.finite(evaluation.METRICS[data.task][metric](evaluation.baseline(data.task, X_train, y_train),
                                                                  X_test, y_test))
    if held_out.comparison in ("unseen_rows", "other_file"):
        active_score, active_error = _score_active(spec, metric, data.task, X_test, y_test)
    else:  # no unseen row (or no active version): the active version is not scored on rows it learnt
        active_score, active_error = None, None
    decision = evaluation.decide(metric, metrics.get(metric), active_score, baseline_score, opts.min_improvement,
                                 has_active=spec.active_path is not None, comparison=held_out.comparison)
    warnings = list(data.warnings) + ([f"{skipped} malformed line(s) were skipped"] if skipped else [])
    importance = None
    try:
        importance = evaluation.feature_importance(pipeline, X_test, y_test, random_state)
    except (ValueError, TypeError, AttributeError) as exc:
        warnings.append(f"feature importance unavailable: {exc}")

    staging = Path(spec.staging_dir)
    made: list[str] = []
    if opts.plots:
        send("progress", 84, "plotting")
        made, problems = plots.render(pipeline, X_test, y_test, data.task, importance, staging / "plots")
        warnings += problems
    served, trained_at, refit_seconds = pipeline, train_at, 0.0
    if decision.promoted:  # no labelled row is wasted: the version that serves learns its holdout too
        send("progress", 88, "refitting")
        trained_at = windows.window_positions(n_rows, window)
        started = time.perf_counter()
        served = _fit(executor, template, window, with_holdout=True)
        refit_seconds = time.perf_counter() - started

    send("progress", 92, "saving")
    staging.mkdir(parents=True, exist_ok=True)
    artifact = staging / ARTIFACT
    joblib.dump(served, artifact)
    with open(artifact, "rb+") as handle:
        os.fsync(handle.fileno())
    conversion = onnx_conversion.skipped(spec.serving_runtime, decision.promoted)
    if conversion is None:  # checked on the whole held-out split, here, so serving never converts
        send("progress", 94, "converting to ONNX")
        conversion = onnx_conversion.convert(spec.serving_runtime, served, X_test, data.task, data.numeric,
                                             data.categorical, staging)
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
        "baseline_score": baseline_score,
        "decision": decision,
        "window_scores": [{"window": windows.describe(w), "score": score} for w, score in tried.items()],
        "holdout": held_out.to_dict(),
        "comparison": held_out.comparison,
        "training_window": windows.describe(window),
        "refit": decision.promoted,
        "trained_rows": {"start": int(row_numbers[trained_at[0]]), "end": int(row_numbers[trained_at[-1]]) + 1},
        "n_rows_read": data.n_rows_read,
        "n_samples": len(trained_at),
        "n_test_samples": held_out.n,
        "training_seconds": round(search_seconds + fit_seconds + refit_seconds, 4),
        "timings": {"window_search": round(search_seconds, 4), "fit": round(fit_seconds, 4),
                    "refit": round(refit_seconds, 4)},
        "features": data.numeric + data.categorical,
        "numeric_features": data.numeric,
        "categorical_features": data.categorical,
        "dtypes": {c: str(X_train[c].dtype) for c in X_train.columns},
        "classes": [to_native(c) for c in served.classes_] if data.task == "classification" else None,
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
        "check_predictions": predict_frame(served, check, data.task)[0],  # as serving will predict them
        **conversion.fields(),
        **executor.summary(),
    })


def _search_windows(executor: Executor, opts: TrainingOptions, task: str, rows: fits.Rows, metric: str, steps: list,
                    send: Report) -> tuple[windows.Window, dict[windows.Window, float | None]]:
    """Score the configured estimator fitted on each window, on the holdout; return the chosen window and the scores.

    The search only ranks windows, so a forest is grown with a quarter of its trees here (the chosen
    window is then fitted in full): the windows cost about half of one full fit together, since
    each is half the length of the one before. Each window is one call of the executor.
    """
    ladder = windows.ladder(len(rows.y), rows.holdout.n, opts.training_window)
    if len(ladder) == 1:
        return ladder[0], {ladder[0]: None}
    scorer = evaluation.METRICS[task][metric]
    estimator = catalogue.with_parameters(catalogue.make(task, _plain_model(opts.model_type, task), opts.random_state,
                                                         opts.n_jobs), opts.hyperparameters if opts.model_type
                                          not in catalogue.ENSEMBLES else {})
    if "n_estimators" in estimator.get_params() and "warm_start" in estimator.get_params():
        estimator.set_params(n_estimators=max(25, estimator.get_params()["n_estimators"] // 4))
    template = Pipeline(steps + [("model", estimator)])
    done = {"windows": 0}

    def on_done() -> None:
        done["windows"] += 1
        send("progress", 12 + 8 * done["windows"] / len(ladder), "choosing a window")

    found = executor.run([(fits.score_window, (template, window, task, metric)) for window in ladder], on_done)
    scores: dict[windows.Window, float | None] = {window: result.score for window, result in zip(ladder, found)}
    scored = [w for w in ladder if scores[w] is not None]
    if not scored:
        return "all", scores
    best = max(scored, key=lambda w: evaluation.improvement(metric, scores[w], scores[scored[0]]))
    # the longest window within one standard error of the best: a shorter one must win clearly.
    # The best window predicted the holdout once; each bootstrap resample only re-scores those answers.
    answers, tolerance = found[ladder.index(best)].answers, 0.0
    if answers is not None:
        y_test = rows.test()[1]
        tolerance = windows.standard_error(
            lambda resample: scorer(answers.subset(resample), None, y_test.iloc[resample]), rows.holdout.n,
            opts.random_state)
    return windows.choose(scores, lambda a, b: evaluation.improvement(metric, a, b), tolerance), scores


def _plain_model(model_type: str, task: str) -> str:
    """The algorithm that stands for an ensemble or ``auto`` in the window search (a forest: either task)."""
    return "random_forest" if model_type in catalogue.ENSEMBLES else model_type


@dataclass(frozen=True)
class _Folds:
    """The cross-validation every candidate and trial is scored by: a splitter over a window's training rows."""

    window: windows.Window
    cv: Any
    n: int


def _fit(executor: Executor, template: Pipeline, window: windows.Window, *, with_holdout: bool) -> Pipeline:
    """Fit ``template`` on a window through the executor (a cluster sends the fitted pipeline back)."""
    return executor.run([(fits.fit_window, (template, window, with_holdout))])[0]


def _choose(executor: Executor, opts: TrainingOptions, task: str, metric: str, steps: list, folds: _Folds,
            search: tuning.Tuning, send: Report) -> tuple[Any, str, dict[str, Any] | None, dict[str, Any] | None]:
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
            chosen, table = tuning.select(executor, members, folds.window, task, metric, folds.cv, folds.n,
                                          _stage(send, 20, 40))
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
                tuned = tuning.search(executor, Pipeline(steps + [("model", estimator)]), folds.window, task, metric,
                                      search, space, folds.cv, folds.n, random_state, _stage(send, 40, 62))
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
        return fits.finite(evaluation.METRICS[task][metric](active, X_test, y_test)), None
    except (ArtifactError, ValueError, KeyError, TypeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


