"""Live performance (test-then-train) and drift episodes of one model, kept in ``<modelsDir>/<m>/monitoring.json``.

Every labelled row that reaches the sample store while a version serves is
scored by that version before any training can use it: ``update`` runs after
each ``POST /samples`` and at each scheduler tick (for rows an outside writer
appended), reads only the bytes past its cursor, predicts them as one batch
with the served pipeline and keeps, for the active version, the newest
``minLabels`` per-row outcomes (label, prediction, probabilities when the
metric needs them), its label count and one ``windows`` entry per
``minLabels`` labels. The file stays small whatever the store's size.

Drift (CONTRACT §8): performance drift when the live score over the newest
``minLabels`` labels is worse than the version's recorded test score by more
than ``metricDrop``; feature drift when a feature's PSI (``drift.psi``)
between the version's training rows and the newest ``minLabels`` rows passes
``featureThreshold``. One ``DRIFT_DETECTED`` event opens an episode; it ends
when another version serves, or when every check has stayed within its
threshold over ``minLabels`` new labels. The next tick then trains once with
trigger ``drift`` (``ModelRuntime.tick``).

Several gunicorn workers share the file: each change is a read-modify-write
under ``.monitoring.lock`` (never the file itself, which is replaced
atomically), so a row is scored once and an episode logged once.
"""
from __future__ import annotations

import io
import json
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import drift, evaluation
from .config import ModelConfig
from .csvrecords import read_header
from .errors import DataQualityError
from .evaluation import DEFAULT_METRIC, METRICS, Replay, improvement
from .files import atomic_write, locked
from .history import utc_now
from .metrics import Metrics
from .registry import Registry
from .samples import SampleStore
from .serving import ServedModel, predict_frame
from .training import coerce_features, read_samples

log = logging.getLogger(__name__)

Record = Callable[[str, str, dict[str, Any]], Any]  # writes a history event
KEEP_WINDOWS = 200


def score(metric: str, task: str, outcomes: list[list[Any]], classes: list[Any] | None) -> float | None:
    """The metric over stored outcomes ``[label, prediction, probabilities or None]``; None when undefined."""
    if not outcomes:
        return None
    labels = [o[0] for o in outcomes]
    proba = None
    if metric in evaluation.PROBA_METRICS:
        if any(o[2] is None for o in outcomes):
            return None
        proba = np.asarray([o[2] for o in outcomes], dtype=float)
    predictions = [o[1] for o in outcomes]
    if task == "classification" and len({type(v) for v in labels + predictions}) > 1:
        labels, predictions = [str(v) for v in labels], [str(v) for v in predictions]  # an unknown label's text
    y = pd.Series(labels, dtype=None if task == "classification" else float)
    try:
        value = float(METRICS[task][metric](Replay(np.asarray(predictions), proba, classes), None, y))
    except ValueError:  # e.g. one class only in the window for a metric that needs two
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Live:
    """What ``GET /monitoring`` and the gauges read: the state file as last written."""

    version: str | None
    metric: str | None
    score: float | None
    n_labels: int
    recorded_score: float | None
    drop: float | None
    windows: list[dict[str, Any]]
    detected: bool
    kind: str | None
    since: str | None
    psi: dict[str, float]


@dataclass(frozen=True)
class WatchView:
    """What the post-promotion watch compares: a version's first live labels, and its predecessor's last ones."""

    version: str
    metric: str
    n: int
    score: float | None
    previous_version: str | None
    previous_n: int
    previous_score: float | None


class Monitor:
    """Score one model's new labelled rows with the served version and open and close its drift episodes."""

    def __init__(self, config: ModelConfig, store: SampleStore, registry: Registry,
                 served: Callable[[], ServedModel | None], record: Record, metrics: Metrics | None = None):
        self.config = config
        self.store = store
        self.registry = registry
        self._served = served
        self._record = record
        self.path = registry.folder / "monitoring.json"
        self._lock_path = registry.folder / ".monitoring.lock"
        self._thread_lock = threading.Lock()
        if metrics is not None:
            metrics.watch_live(self.gauges)

    @property
    def _drift_on(self) -> bool:
        return self.config.training.drift.enabled and self.config.training.auto_train

    # -- reading ---------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError:  # written atomically, so only a hand edit breaks it: start again rather than stop serving
            log.warning("model %s: %s is not JSON; live monitoring starts again", self.config.name, self.path)
            return {}

    def live(self) -> Live:
        """The live score, windows and drift state as last written (no lock: the file is replaced whole)."""
        state = self._load()
        stream = state.get("stream") or {}
        episode = state.get("drift") or {}
        return Live(
            version=stream.get("version"), metric=stream.get("metric"), score=stream.get("score"),
            n_labels=stream.get("n_labels", 0), recorded_score=stream.get("recorded_score"), drop=stream.get("drop"),
            windows=list(state.get("windows", [])), detected=bool(episode.get("open")), kind=episode.get("kind"),
            since=episode.get("since"), psi=dict(stream.get("psi") or {}),
        )

    def watch_view(self, version: str) -> WatchView | None:
        """The watch's figures for ``version`` while it is the scored stream; None otherwise."""
        state = self._load()
        stream = state.get("stream") or {}
        if stream.get("version") != version:
            return None
        previous = state.get("previous") or {}
        metric, task, classes = stream["metric"], stream["task"], stream["classes"]
        first, last = stream.get("first", []), previous.get("last", [])
        return WatchView(version=version, metric=metric, n=len(first), score=score(metric, task, first, classes),
                         previous_version=previous.get("version"), previous_n=len(last),
                         previous_score=score(metric, task, last, classes))

    def gauges(self) -> tuple[str, str | None, float | None, bool]:
        """(model, version, live score, drift detected) for ``/metrics``, read at scrape time by whichever worker answers."""
        live = self.live()
        return self.config.name, live.version, live.score, live.detected

    # -- scoring ---------------------------------------------------------------------------------

    def update(self) -> None:
        """Score the rows that reached the store since the last call with the served version; check for drift."""
        served = self._served()
        if served is None:
            return
        with locked(self._lock_path, thread_lock=self._thread_lock):
            if self.registry.state()["active"] != served.version:
                return  # this process still serves the previous version; the one serving the new one scores
            state = self._load()
            rows, offset = self.store.snapshot()
            # the first run reads the store from its start: the active version's stream begins after its training rows
            cursor = state.get("cursor") or {"rows": 0, "offset": 0}
            if rows < cursor["rows"] or offset < cursor["offset"]:
                # the file was replaced by a smaller one: what it held before is nobody's stream
                cursor = {"rows": rows, "offset": offset}
                state = {**state, "cursor": cursor}
                if (state.get("stream") or {}).get("version") != served.version:
                    self._new_stream(state, served, rows)
                self._save(state)
                return
            stream = state.get("stream")
            if rows == cursor["rows"] and stream is not None and stream["version"] == served.version:
                return  # nothing new: no write
            if stream is None or stream["version"] != served.version:
                self._new_stream(state, served, max(cursor["rows"], self._trained_end(served.version)))
                stream = state["stream"]
            if rows > cursor["rows"]:
                frame = self._read(cursor["offset"], offset, cursor["rows"])
                state["cursor"] = {"rows": rows, "offset": offset}
                new_labels = self._score(state, served, frame.iloc[max(0, stream["start"] - cursor["rows"]):])
                if self._drift_on:
                    self._check(state, served, new_labels)
            self._save(state)

    def _new_stream(self, state: dict[str, Any], served: ServedModel, start: int) -> None:
        """Start ``served``'s stream at row ``start``; an episode of the previous version ends here."""
        old = state.get("stream")
        if old is not None and old.get("version") != served.version:  # the watch compares against its last labels
            state["previous"] = {"version": old["version"], "last": old.get("last", [])}
        record = self.registry.version(served.version)
        metric = record.get("metric") or self.config.training.options.metric or DEFAULT_METRIC[served.task]
        recorded = (record.get("metrics") or {}).get(metric)
        state["stream"] = {"version": served.version, "start": start, "metric": metric, "task": served.task,
                           "classes": list(served.classes) if served.classes is not None else None,
                           "recorded_score": recorded, "n_labels": 0, "n_rows": 0, "recent": [], "recent_rows": {},
                           "first": [], "last": [],
                           "score": None, "drop": None, "psi": {}}
        state.pop("reference", None)
        episode = state.get("drift") or {}
        if episode.get("open"):
            log.info("model %s: drift episode of %s ends, %s now serves", self.config.name, episode.get("version"),
                     served.version)
        state["drift"] = {"open": False}

    def _trained_end(self, version: str) -> int:
        """The store row after the version's training rows (a bound: with no record of them, the last training's)."""
        trained = self.registry.version(version).get("trained_rows")
        if isinstance(trained, dict) and isinstance(trained.get("end"), int):
            return trained["end"]
        return int(self.registry.state()["trained_rows"] or 0)

    def _read(self, start: int, end: int, first_row: int) -> pd.DataFrame:
        """Read the store's complete records between two byte offsets (its header first when ``start`` is 0)."""
        header = read_header(self.store.path) or []
        with open(self.store.path, "rb") as handle:
            handle.seek(start)
            raw = handle.read(end - start)
        if start == 0:
            frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", dtype=str, on_bad_lines="skip")
        else:
            frame = pd.read_csv(io.BytesIO(raw), header=None, names=header, dtype=str, on_bad_lines="skip")
        frame.columns = [str(c).strip() for c in frame.columns]
        frame.index = range(first_row, first_row + len(frame))
        return frame

    def _score(self, state: dict[str, Any], served: ServedModel, frame: pd.DataFrame) -> int:
        """Predict ``frame`` with ``served``; add its labelled rows to the stream; return how many there were."""
        stream, minimum = state["stream"], self.config.training.drift.min_labels
        target = self.config.target
        if frame.empty or any(c not in frame.columns for c in served.features):
            return 0
        X = coerce_features(frame[list(served.features)], list(served.numeric), list(served.categorical))
        X = X.replace([np.inf, -np.inf], np.nan)
        for name in served.features:  # the newest minLabels rows, labelled or not, for the feature PSI
            values = [None if isinstance(v, float) and math.isnan(v) else v for v in X[name].tolist()]
            stream["recent_rows"][name] = (stream["recent_rows"].get(name, []) + values)[-minimum:]
        stream["n_rows"] += len(X)
        if target not in frame.columns:
            return 0
        labelled = (frame[target].notna() if served.task == "classification"
                    else pd.to_numeric(frame[target], errors="coerce").notna())
        if not labelled.any():
            return 0
        predictions, probabilities = predict_frame(served.pipeline, X[labelled.to_numpy()], served.task)
        labels = [self._label(v, served) for v in frame.loc[labelled, target]]
        ends = [int(i) + 1 for i in frame.index[labelled.to_numpy()]]
        keep_proba = stream["metric"] in evaluation.PROBA_METRICS and probabilities is not None
        watch = self.config.promotion.watch_labels
        first, last = stream.setdefault("first", []), stream.get("last", [])
        for i, (label, predicted) in enumerate(zip(labels, predictions)):
            outcome = [label, predicted, list(probabilities[i].values()) if keep_proba else None]
            stream["recent"] = (stream["recent"] + [outcome])[-minimum:]
            if len(first) < watch:
                first.append(outcome)
            last.append(outcome)
            stream["n_labels"] += 1
            if stream["n_labels"] % minimum == 0:
                window = {"end": ends[i], "n": minimum, "version": stream["version"],
                          "score": score(stream["metric"], served.task, stream["recent"], stream["classes"])}
                state["windows"] = (state.get("windows", []) + [window])[-KEEP_WINDOWS:]
        stream["last"] = last[-watch:]
        stream["score"] = score(stream["metric"], served.task, stream["recent"], stream["classes"])
        recorded = stream["recorded_score"]
        stream["drop"] = (None if stream["score"] is None or recorded is None
                          else improvement(stream["metric"], recorded, stream["score"]))
        return len(labels)

    @staticmethod
    def _label(value: str, served: ServedModel) -> Any:
        """A label read as text, as the version's classes spell it (or a float for regression)."""
        if served.task != "classification":
            return float(value)
        text = str(value).strip()
        for known in served.classes or ():
            if str(known) == text:
                return known
            if isinstance(known, (int, float)) and not isinstance(known, bool):
                try:
                    if float(text) == float(known):
                        return known
                except ValueError:
                    pass
        return text

    # -- drift -----------------------------------------------------------------------------------

    def _check(self, state: dict[str, Any], served: ServedModel, new_labels: int) -> None:
        """Measure both kinds of drift on the stream; open an episode (one event) or close it when clean long enough."""
        stream, settings = state["stream"], self.config.training.drift
        performance = (stream["n_labels"] >= settings.min_labels and stream["drop"] is not None
                       and stream["drop"] > settings.metric_drop)
        drifting: list[str] = []
        if stream["n_rows"] >= settings.min_labels:
            reference = self._reference(state, served)
            stream["psi"] = {name: value for name, summary in reference.items()
                             if (value := drift.psi(summary, stream["recent_rows"].get(name, []))) is not None}
            drifting = sorted(n for n, v in stream["psi"].items() if v > settings.feature_threshold)
        episode = state["drift"]
        if not episode.get("open"):
            if not (performance or drifting):
                return
            kind = "performance" if performance else "feature"
            statistic = stream["drop"] if performance else max(stream["psi"][n] for n in drifting)
            threshold = settings.metric_drop if performance else settings.feature_threshold
            state["drift"] = {"open": True, "kind": kind, "since": utc_now(), "version": served.version,
                              "clean_labels": 0, "training_job": None}
            details = {"kind": kind, "statistic": statistic, "threshold": threshold,
                       "features": [] if performance else drifting, "version": served.version}
            what = (f"live {stream['metric']} {stream['score']:.4f} is {statistic:.4f} below the recorded "
                    f"{stream['recorded_score']:.4f}" if performance
                    else f"PSI {statistic:.3f} > {threshold:g} for {', '.join(drifting)}")
            self._record("DRIFT_DETECTED", f"Drift detected on version {served.version}: {what}", details)
            return
        if performance or drifting:
            episode["clean_labels"] = 0
            return
        episode["clean_labels"] = episode.get("clean_labels", 0) + new_labels
        if episode["clean_labels"] >= settings.min_labels:
            log.info("model %s: drift episode of %s ended (back within thresholds)", self.config.name, served.version)
            state["drift"] = {"open": False}

    def _reference(self, state: dict[str, Any], served: ServedModel) -> dict[str, Any]:
        """The version's training-row summary, computed once and kept in the state."""
        cached = state.get("reference")
        if cached and cached.get("version") == served.version:
            return cached["features"]
        record = self.registry.version(served.version)
        trained = record.get("trained_rows")
        _, offset = self.store.snapshot()
        try:
            frame, _ = read_samples(self.store.path, offset)
        except DataQualityError:
            frame = pd.DataFrame()
        if isinstance(trained, dict) and isinstance(trained.get("start"), int) and isinstance(trained.get("end"), int):
            rows = frame.iloc[trained["start"]:trained["end"]]
        else:  # trained rows not recorded: the rows before this version's stream began, the newest of them
            start = state["stream"]["start"]
            rows = frame.iloc[max(0, start - drift.REFERENCE_CAP):start]
        summary = drift.reference(rows, served.numeric, served.categorical)
        state["reference"] = {"version": served.version, "features": summary}
        return summary

    # -- the drift trigger -------------------------------------------------------------------------

    def training_due(self, new_rows: int) -> bool:
        """Whether an open episode still waits for its training and ``new_rows`` (since the last training) suffice."""
        if not self._drift_on:
            return False
        episode = self._load().get("drift") or {}
        return bool(episode.get("open")) and not episode.get("training_job") \
            and new_rows >= self.config.training.drift.min_labels

    def training_started(self, job_id: str) -> None:
        """Remember that the open episode's training started, so it is not started again."""
        with locked(self._lock_path, thread_lock=self._thread_lock):
            state = self._load()
            if (state.get("drift") or {}).get("open"):
                state["drift"]["training_job"] = job_id
                self._save(state)

    def _save(self, state: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(state, allow_nan=False, default=_plain).encode("utf-8"))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")

