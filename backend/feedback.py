"""Delayed labels for logged predictions (``POST /api/<m>/feedback``, CONTRACT §9).

A batch is all or nothing: every item is checked first (known, unexpired,
not labelled before, not twice in the batch, a label of the right kind);
then, under the model's feedback lock, the joined rows are appended to the
sample store (durable, as ``POST /samples``), the labels are noted in the
prediction log (so a second label is refused), and the labels are scored for
the version and experiment arm that answered.

If the process dies between the store append and the label note, a retry
appends the rows again: a duplicate sample rather than a lost one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import Invalid
from .files import locked
from .predictionlog import Logged
from .schemas import rows_of, check_value

if TYPE_CHECKING:
    from .runtime import ModelRuntime


def parse(body: Any, max_rows: int) -> list[tuple[str, Any]]:
    """The (prediction id, label) pairs of a feedback body; 422 naming the first malformed item."""
    items, _ = rows_of(body, None, "feedback", max_rows)
    pairs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"prediction_id", "label"}:
            _reject(index, "invalid_item", "each item is an object with exactly 'prediction_id' and 'label'")
        if not isinstance(item.get("prediction_id"), str):
            _reject(index, "invalid_item", "'prediction_id' must be the text a predict answer gave")
        if "label" not in item or item["label"] is None:
            _reject(index, "invalid_label", "'label' is required and must not be null")
        pairs.append((item["prediction_id"], item["label"]))
    return pairs


def _reject(index: int, reason: str, message: str, prediction_id: str | None = None) -> None:
    details: dict[str, Any] = {"index": index, "reason": reason}
    if prediction_id is not None:
        details["prediction_id"] = prediction_id[:100]
    raise Invalid(f"feedback[{index}]: {message}; nothing was stored", code="invalid_feedback", details=details)


def _label(value: Any, task: str) -> Any:
    """A label as the store keeps it; ValueError when it is the wrong kind for the task."""
    if task == "regression":
        return check_value(value, "numeric")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_value(value, "categorical")


def submit(rt: "ModelRuntime", pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Join, store and score a checked feedback batch; return what ``POST /feedback`` answers."""
    with locked(rt.registry.folder / ".feedback.lock", thread_lock=rt.feedback_lock):
        joined: list[tuple[Logged, Any]] = []
        seen: set[str] = set()
        for index, (prediction_id, raw) in enumerate(pairs):
            logged = rt.predictions.lookup(prediction_id)
            if logged is None:
                _reject(index, "unknown_prediction", f"no logged prediction '{prediction_id[:100]}' (unknown or older "
                        f"than predictionLog.keepHours)", prediction_id)
            if logged.labelled or prediction_id in seen:
                _reject(index, "already_labelled", f"prediction '{prediction_id}' already has its label"
                        + (" (twice in this batch)" if prediction_id in seen else ""), prediction_id)
            seen.add(prediction_id)
            task = rt.served.task if rt.served else (rt.config.task or "classification")
            try:
                label = _label(raw, task)
            except ValueError as exc:
                _reject(index, "invalid_label", f"the label is the wrong kind for a {task} model ({exc})", prediction_id)
            joined.append((logged, label))
        rows = [{**logged.features, rt.config.target: label} for logged, label in joined]
        counts = rt.add_samples(rows, score_live=False)
        rt.predictions.record_labels((logged.prediction_id, label) for logged, label in joined)
    rt.score_live()
    rt.rollout.labelled(joined)
    rt.rollout.check_watch()
    return counts
