"""A training's effective options: the model's config merged with a request's overrides, checked.

Checked in the server before a job starts, so a bad override is a 422 that
names the field (or the package to install), never a failed job.
"""
from __future__ import annotations

from typing import Any

from . import catalogue, evaluation
from .config import ModelConfig
from .errors import Invalid

OVERRIDABLE = ("model_type", "hyperparameters", "candidates", "tuning", "preprocessing", "split_strategy",
               "cv_strategy", "training_window", "test_size", "metric")
MERGED = ("tuning", "preprocessing")  # overrides change only the keys they give
CONFIG_KEYS = {"model_type": "modelType"}  # the config.json name of a request field, where they differ


def effective(model: ModelConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """Return the plain, picklable options one training runs with."""
    t = model.training
    options: dict[str, Any] = {
        "model_type": t.model_type,
        "hyperparameters": dict(t.hyperparameters),
        "candidates": list(t.candidates) if t.candidates else None,
        "tuning": dict(t.tuning),
        "preprocessing": dict(t.preprocessing),
        "split_strategy": t.split_strategy,
        "cv_strategy": t.cv_strategy,
        "training_window": t.training_window,
        "test_size": t.test_size,
        "metric": t.metric,
        "random_state": t.random_state,
        "n_jobs": t.n_jobs,
        "plots": t.plots,
        "cross_validate": t.cross_validate,
        "data_quality": dict(t.data_quality),
    }
    for key in OVERRIDABLE:
        if overrides.get(key) is not None:
            options[key] = {**options[key], **overrides[key]} if key in MERGED else overrides[key]
    if "model_type" in overrides and "hyperparameters" not in overrides:
        options["hyperparameters"] = {}  # the config's parameters belong to the config's algorithm
    check(options, model.task)
    return options


def check(options: dict[str, Any], task: str | None) -> None:
    """Raise a 422 naming the option that cannot work for ``task`` (either task when not configured)."""
    tasks = [task] if task else ["classification", "regression"]
    model_type = options["model_type"]
    usable = [t for t in tasks if model_type in catalogue.algorithms(t)]
    if not usable:
        allowed = catalogue.algorithms(tasks[0]) if task else catalogue.all_algorithms()
        raise Invalid(f"model_type '{model_type}' is not available; choose one of {', '.join(allowed)}",
                      code="invalid_model_type", details={"field": "model_type", "allowed": allowed})
    if model_type in catalogue.ENSEMBLES:
        names = options["candidates"] or catalogue.DEFAULT_CANDIDATES[usable[0]]
    else:
        names = [model_type]
    for name in names:
        if name in catalogue.ENSEMBLES or not any(name in catalogue.algorithms(t) for t in usable):
            raise Invalid(f"candidate '{name}' is not an algorithm", code="invalid_candidates", details={"field": "candidates"})
    for t in usable:
        for name in names:
            try:
                estimator = catalogue.make(t, name, options["random_state"])
                if name == model_type:
                    catalogue.with_parameters(estimator, options["hyperparameters"])
                    space = options["tuning"].get("search_space") or {}
                    unknown = sorted(set(space) - set(estimator.get_params(deep=False)))
                    if unknown:
                        raise catalogue.CatalogueError(f"searchSpace names unknown parameter(s): {', '.join(unknown)}",
                                                       field="tuning.searchSpace")
            except catalogue.CatalogueError as exc:
                code = "package_missing" if exc.package else "invalid_option"
                details = {"field": exc.field, **({"package": exc.package} if exc.package else {})}
                raise Invalid(str(exc), code=code, details=details) from None
    metric = options["metric"]
    if metric and task and metric not in evaluation.METRICS[task]:
        raise Invalid(f"metric '{metric}' does not apply to {task}", code="invalid_option", details={"field": "metric"})
    if options["tuning"].get("method") == "grid" and any(
            not isinstance(v, list) for v in (options["tuning"].get("search_space") or {}).values()):
        raise Invalid("a grid search needs a list of values for every parameter", code="invalid_option",
                      details={"field": "tuning.searchSpace"})
