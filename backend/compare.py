"""Compare versions side by side: as recorded, or re-scored on a held-out split of today's data."""
from __future__ import annotations

from typing import Any

from . import evaluation, training
from .errors import ArtifactError
from .runtime import ModelRuntime

_RECORDED = ("version", "status", "created_at", "algorithm", "metric", "metrics", "n_samples", "n_test_samples", "trigger")


def compare(rt: ModelRuntime, versions: list[str], evaluate_on: str) -> dict[str, Any]:
    """Return the versions' recorded metrics and, for ``evaluate_on='current'``, their scores on today's data."""
    records = [rt.registry.version(v) for v in dict.fromkeys(versions)]
    answer: dict[str, Any] = {"model": rt.name, "versions": [{k: r.get(k) for k in _RECORDED} for r in records]}
    if evaluate_on != "current":
        return answer
    _, offset = rt.store.snapshot()
    frame, _ = training.read_samples(rt.store.path, offset)  # a DataQualityError is the 422 it should be
    settings = rt.config.training.options
    data = training.prepare(frame, rt.config.target, list(rt.config.features or []) or None, rt.config.task,
                            settings.test_size, settings.data_quality.max_invalid_fraction)
    _, X_test, _, y_test = training.split(data, settings.test_size, settings.random_state)
    metric = settings.metric or evaluation.DEFAULT_METRIC[data.task]
    scores: dict[str, Any] = {}
    for record in records:
        try:
            _, loaded = rt.slot.load(record["version"])
            scores[record["version"]] = evaluation.evaluate(loaded.pipeline, X_test, y_test, data.task)
        except (ArtifactError, ValueError, KeyError, TypeError) as exc:
            scores[record["version"]] = {"error": str(exc)}
    ranked = [v for v, s in scores.items() if s.get(metric) is not None]
    best = None
    for version in ranked:
        if best is None or evaluation.improvement(metric, scores[version][metric], scores[best][metric]) > 0:
            best = version
    answer["current"] = {"metric": metric, "n_rows": len(data.y), "n_test_samples": len(y_test),
                         "scores": scores, "best": best}
    return answer
