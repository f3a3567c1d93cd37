"""How a version that passed the gate reaches traffic, and how live labels decide its fate (CONTRACT §9).

One model's rollout state lives in ``<modelsDir>/<m>/rollout.json``: the
staged candidate (manual, shadow or canary), the experiments, and the watch
on a freshly promoted version. Every change is a read-modify-write under
``.rollout.lock`` (the file is replaced atomically), so several gunicorn
workers and the CLI agree; the request path only reads it, re-reading when
its ``stat`` changes.

Request counts of experiment arms are the one thing the request path adds
to: each process counts in memory and ``flush`` folds its counts into the
file (the registry watcher calls it twice a second, shutdown once more), so
no count is lost between workers and no request waits for a lock.

Decisions (shadow verdict, experiment conclusion, the watch) are taken when
labels arrive, and at each scheduler tick, by whichever process holds them.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from . import experiments
from .config import ModelConfig
from .errors import ArtifactError, Conflict, Invalid, NotFound
from .evaluation import DEFAULT_METRIC, improvement
from .files import atomic_write, locked
from .history import utc_now
from .monitoring import Monitor, score
from .predictionlog import Logged
from .registry import Registry
from .serving import ServedModel, predict_rows
from .slot import ServingSlot

log = logging.getLogger(__name__)

Record = Callable[[str, str, dict[str, Any]], Any]  # writes a history event (and its notification)
Notify = Callable[[str, str | None, str, str, dict[str, Any]], Any]  # (level, version, event type, message, details)
KEEP_ENDED = 100  # ended experiments kept in the file


@dataclass(frozen=True)
class Route:
    """Which version answers a request, and the experiment it counts in."""

    version: str | None  # None: the active version
    experiment: str | None


@dataclass(frozen=True)
class _View:
    """What the request path needs from the state file, parsed once per change of the file."""

    experiment: str | None
    versions: tuple[str, ...]
    split: tuple[float, ...]
    shadow: str | None  # the staged candidate that shadows the active version
    shadow_against: str | None


_EMPTY = _View(None, (), (), None, None)


class Rollout:
    """One model's staged candidate, experiments and post-promotion watch."""

    def __init__(self, config: ModelConfig, registry: Registry, slot: ServingSlot, monitor: Monitor,
                 record: Record, notify: Notify):
        self.config = config
        self.settings = config.promotion
        self.registry = registry
        self.slot = slot
        self.monitor = monitor
        self._record = record
        self._notify = notify
        self.path = registry.folder / "rollout.json"
        self._lock_path = registry.folder / ".rollout.lock"
        self._thread_lock = threading.Lock()  # never held twice: flock on a second fd would wait for itself
        self._seen: tuple[int, int, int] | None = None
        self._view = _EMPTY
        self._counts: Counter[tuple[str, str]] = Counter()  # (experiment, version) -> requests not yet flushed
        self._counts_lock = threading.Lock()

    # -- the state file ----------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            state = {}
        except ValueError:
            log.warning("model %s: %s is not JSON; the rollout state starts again", self.config.name, self.path)
            state = {}
        state.setdefault("next_experiment", 1)
        state.setdefault("experiments", {})
        state.setdefault("running", None)
        state.setdefault("staged", None)
        state.setdefault("watch", None)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(state, allow_nan=False).encode("utf-8"))

    def _change(self) -> Any:
        return locked(self._lock_path, thread_lock=self._thread_lock)

    def view(self) -> _View:
        """The running experiment and shadow candidate, re-read only when the file changed (one ``stat``)."""
        try:
            info = os.stat(self.path)
            seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            state = self._load() if seen else {}
            running = state.get("experiments", {}).get(state.get("running") or "")
            staged = state.get("staged") or {}
            self._view = _View(
                experiment=running["id"] if running else None,
                versions=tuple(running["versions"]) if running else (),
                split=tuple(running["split"]) if running else (),
                shadow=staged.get("version") if staged.get("mode") == "shadow" else None,
                shadow_against=staged.get("against"),
            )
            self._seen = seen
        return self._view

    def staged_version(self) -> str | None:
        """The candidate staged now, if any (for status)."""
        return (self._load()["staged"] or {}).get("version")

    # -- the request path --------------------------------------------------------------------------

    def route(self, routing_key: str | None) -> Route:
        """The arm of the running experiment this request goes to (counted), or the active version."""
        view = self.view()
        if view.experiment is None:
            return Route(None, None)
        version = experiments.assign(view.experiment, list(view.versions), list(view.split), routing_key)
        with self._counts_lock:
            self._counts[(view.experiment, version)] += 1
        return Route(version, view.experiment)

    def shadow_model(self, answered_by: str) -> ServedModel | None:
        """The staged candidate that should also predict a request the active version answered, if any."""
        view = self.view()
        if view.shadow is None or view.shadow_against != answered_by:
            return None
        try:
            return self.slot.model_of(view.shadow)
        except (Conflict, NotFound):
            return None

    def flush(self) -> None:
        """Fold this process's arm request counts into the shared file."""
        with self._counts_lock:
            counts, self._counts = self._counts, Counter()
        if not counts:
            return
        with self._change():
            state = self._load()
            for (experiment_id, version), n in counts.items():
                arm = (state["experiments"].get(experiment_id) or {}).get("arms", {}).get(version)
                if arm is not None:
                    arm["requests"] += n
            self._save(state)

    # -- staging -----------------------------------------------------------------------------------

    def stage(self, version: str, active: str) -> None:
        """Hold a candidate that passed the gate: staged for a person, a shadow or a canary (by ``promotion.mode``)."""
        mode = self.settings.mode
        with self._change():
            state = self._load()
            older = state["staged"]
            state["staged"] = {"version": version, "mode": mode, "against": active, "since": utc_now(),
                               "outcomes": [], "warned": False}
            self._save(state)
        if older and older["version"] != version:
            self._end_experiment_of(older["version"])
            self._reject(older["version"], f"replaced by the newer staged candidate {version}", "replaced")
        self._record("MODEL_STAGED", f"Version {version} staged ({mode}); {active} keeps serving",
                     {"version": version, "mode": mode, "active_version": active})
        if mode == "canary":
            fraction = self.settings.canary_fraction
            self.start_experiment(f"canary-{version}", [active, version], [1 - fraction, fraction], canary=True)

    def promote(self, version: str, trigger: str = "manual", details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Serve a staged version (``POST /versions/<v>/promote``); 409 when it is not staged."""
        self._require_staged(version)
        self._end_experiment_of(version)
        return self._serve(version, trigger, details or {})

    def reject(self, version: str) -> dict[str, Any]:
        """Drop a staged version (``POST /versions/<v>/reject``); 409 when it is not staged."""
        self._require_staged(version)
        self._end_experiment_of(version)
        self._reject(version, "rejected by an operator", "manual")
        return {"model": self.config.name, "version": version, "status": "rejected",
                "active_version": self.registry.state()["active"]}

    def _require_staged(self, version: str) -> None:
        record = self.registry.version(version)  # 404 when unknown
        if record["status"] != "staged":
            raise Conflict(f"Version '{version}' of '{self.config.name}' is {record['status']}, not staged",
                           code="version_not_staged", details={"version": version, "status": record["status"]})

    def _serve(self, version: str, trigger: str, details: dict[str, Any]) -> dict[str, Any]:
        try:
            previous = self.slot.activate(version)
        except ArtifactError as exc:
            raise ArtifactError(f"Version '{version}' cannot be served: {exc.message}", details={"version": version}) from None
        self._clear_staged(version)
        self._record("MODEL_PROMOTED", f"Version {version} promoted and now serving (trigger {trigger})",
                     {"version": version, "previous_version": previous, "trigger": trigger, **details})
        return {"model": self.config.name, "active_version": version, "previous_version": previous}

    def _reject(self, version: str, why: str, trigger: str, details: dict[str, Any] | None = None) -> None:
        self.registry.set_status(version, "rejected", why)
        self._clear_staged(version)
        self._record("MODEL_REJECTED", f"Version {version} rejected: {why}; the active model stays",
                     {"version": version, "reason": why, "trigger": trigger,
                      "active_version": self.registry.state()["active"], **(details or {})})

    def _clear_staged(self, version: str) -> None:
        with self._change():
            state = self._load()
            if (state["staged"] or {}).get("version") == version:
                state["staged"] = None
                self._save(state)

    # -- experiments -------------------------------------------------------------------------------

    def start_experiment(self, name: str, versions: list[str], split: list[float], *, canary: bool = False) -> dict[str, Any]:
        """Start an A/B test between servable versions (409 while another runs)."""
        if len(versions) < 2 or len(set(versions)) != len(versions):
            raise Invalid("an experiment needs two or more different versions", details={"field": "versions"})
        if len(split) != len(versions) or any(s <= 0 for s in split) or abs(sum(split) - 1) > 1e-6:
            raise Invalid("split needs one positive share per version, adding up to 1", details={"field": "split"})
        for version in versions:
            self.slot.model_of(version)  # 404 unknown, 409 without an artifact; loaded here, not on a request
        self.flush()
        with self._change():
            state = self._load()
            if state["running"]:
                raise Conflict(f"Experiment {state['running']} is running for '{self.config.name}'; stop it first",
                               code="experiment_running", details={"experiment": state["running"]})
            experiment_id = f"{experiments.EXPERIMENT_ID_PREFIX}{state['next_experiment']}"
            state["next_experiment"] += 1
            task = self.slot.require().task
            metric = self._metric(task)
            state["experiments"][experiment_id] = {
                "id": experiment_id, "name": name, "versions": versions, "split": split, "status": "running",
                "started_at": utc_now(), "ended_at": None, "canary": canary, "task": task, "metric": metric,
                "score_metric": experiments.score_name(task, metric), "baseline": self.registry.state()["active"],
                "arms": {v: {"requests": 0, "outcomes": [], "labels": 0, "score": None} for v in versions},
                "winner": None, "p_value": None, "test": None, "reason": None, "warned": False,
            }
            state["running"] = experiment_id
            _trim(state)
            self._save(state)
            experiment = state["experiments"][experiment_id]
        self._record("EXPERIMENT_STARTED", f"Experiment {experiment_id} ({name}) started: "
                     + ", ".join(f"{v} {s:.0%}" for v, s in zip(versions, split)),
                     {"experiment": experiment_id, "name": name, "versions": versions, "split": split,
                      "canary": canary, "version": versions[-1]})
        return _public(experiment)

    def experiments(self) -> list[dict[str, Any]]:
        """Every kept experiment, newest first."""
        self.flush()
        state = self._load()
        return [_public(e) for e in sorted(state["experiments"].values(), key=lambda e: -int(e["id"][1:]))]

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment; 404 when unknown (or malformed)."""
        self.flush()
        found = self._load()["experiments"].get(experiment_id) if isinstance(experiment_id, str) else None
        if found is None:
            raise NotFound(f"No experiment '{str(experiment_id)[:100]}' for model '{self.config.name}'",
                           code="experiment_not_found", details={"experiment": str(experiment_id)[:100]})
        return _public(found)

    def stop_experiment(self, experiment_id: str, promote: str | None) -> dict[str, Any]:
        """End a running experiment by hand, promoting one of its versions or none."""
        current = self.experiment(experiment_id)
        if current["status"] != "running":
            raise Conflict(f"Experiment {experiment_id} is {current['status']}", code="experiment_not_running",
                           details={"experiment": experiment_id, "status": current["status"]})
        if promote is not None and promote not in current["versions"]:
            raise Invalid(f"promote must be one of the experiment's versions {current['versions']}",
                          details={"field": "promote"})
        self._end(experiment_id, "stopped", winner=promote, reason="stopped by an operator")
        return self.experiment(experiment_id)

    def _end_experiment_of(self, version: str) -> None:
        """Stop the running experiment a staged candidate is in (its promote or reject ends it)."""
        running = self._load()["running"]
        if running and version in self._load()["experiments"][running]["versions"]:
            self._end(running, "stopped", winner=None, reason=f"{version} was promoted or rejected by hand",
                      act=False)

    def _end(self, experiment_id: str, status: str, *, winner: str | None, reason: str,
             conclusion: experiments.Conclusion | None = None, act: bool = True) -> None:
        self.flush()
        with self._change():
            state = self._load()
            experiment = state["experiments"][experiment_id]
            if experiment["status"] != "running":
                return  # another process ended it first
            experiment.update(status=status, ended_at=utc_now(), winner=winner, reason=reason,
                              p_value=conclusion.p_value if conclusion else None,
                              test=conclusion.statistic if conclusion else None)
            for arm in experiment["arms"].values():
                arm.pop("outcomes", None)  # the verdict is taken: keep the summary only
            state["running"] = None
            self._save(state)
        self._record("EXPERIMENT_CONCLUDED", f"Experiment {experiment_id} {status}: "
                     + (f"{winner} wins and serves" if winner else "no version promoted") + f" ({reason})",
                     {"experiment": experiment_id, "status": status, "winner": winner, "reason": reason,
                      "p_value": experiment["p_value"], "test": experiment["test"], "version": winner,
                      "arms": {v: {k: a[k] for k in ("requests", "labels", "score")}
                               for v, a in experiment["arms"].items()}})
        if not act:
            return
        staged = (self._load()["staged"] or {}).get("version")
        active = self.registry.state()["active"]
        if winner is not None and winner != active:
            details = {"experiment": experiment_id, "p_value": experiment["p_value"]}
            if self.registry.version(winner)["status"] == "staged":
                self.promote(winner, "experiment", details)
            else:
                self._serve(winner, "experiment", details)
        if experiment["canary"] and staged in experiment["versions"] and staged != winner:
            self._reject(staged, f"the canary experiment {experiment_id} did not show it better ({reason})", "canary",
                         {"experiment": experiment_id})

    # -- labels and decisions ----------------------------------------------------------------------

    def labelled(self, items: list[tuple[Logged, Any]]) -> None:
        """Score labelled predictions for the arm or shadow pair they belong to, then decide what is due."""
        state = self._load()
        staged = state["staged"] or {}
        shadow = staged.get("version") if staged.get("mode") == "shadow" else None
        pairs: list[tuple[Logged, Any]] = [(p, label) for p, label in items if shadow and p.experiment is None
                                           and p.version == staged.get("against") and p.timestamp >= staged["since"]]
        shadow_answers = self._shadow_answers(shadow, pairs) if pairs else []
        with self._change():
            state = self._load()
            running = state["experiments"].get(state["running"] or "")
            for prediction, label in items:
                arm = running["arms"].get(prediction.version) if running and prediction.experiment == running["id"] else None
                if arm is not None:
                    arm["outcomes"].append(experiments.error_of(running["task"], running["metric"], label, prediction.output))
                    arm["labels"] += 1
                    arm["score"] = experiments.arm_score(running["task"], running["metric"], arm["outcomes"])
            staged = state["staged"]
            if staged and staged.get("version") == shadow:
                for (prediction, label), answer in zip(pairs, shadow_answers):
                    staged["outcomes"].append([label, prediction.output, answer])
            self._save(state)
        self.decide()

    def _shadow_answers(self, version: str, pairs: list[tuple[Logged, Any]]) -> list[Any]:
        """The shadow candidate's answers for labelled requests: deterministic, so predicted from the logged features."""
        try:
            model = self.slot.model_of(version)
            answers, _ = predict_rows(model, [p.features for p, _ in pairs])
        except (Conflict, NotFound, ValueError) as exc:
            log.warning("model %s: shadow %s could not score labelled requests: %s", self.config.name, version, exc)
            return []
        return answers

    def decide(self) -> None:
        """Take every rollout decision that is due: shadow verdict, experiment conclusion, warnings past maxHours."""
        state = self._load()
        staged = state["staged"]
        if staged and self._still_staged(staged["version"]):
            if staged["mode"] == "shadow" and len(staged["outcomes"]) >= self.settings.min_labels:
                self._shadow_verdict(staged)
            elif staged["mode"] in ("shadow", "canary") and not staged["warned"] and self._past_max_hours(staged["since"]):
                self._warn(staged)
        running = state["experiments"].get(state["running"] or "")
        if running:
            arms = running["arms"]
            if all(a["labels"] >= self.settings.min_labels for a in arms.values()):
                conclusion = experiments.conclude(running["task"], {v: a["outcomes"] for v, a in arms.items()})
                winner = conclusion.best if conclusion.significant else None
                why = (f"{conclusion.statistic}: {conclusion.best} better than {conclusion.runner_up}, "
                       f"p={conclusion.p_value:.3g}" if conclusion.significant else
                       f"{conclusion.statistic}: no significant difference, p={conclusion.p_value:.3g}")
                self._end(running["id"], "concluded", winner=winner, reason=why, conclusion=conclusion)

    def _still_staged(self, version: str) -> bool:
        try:
            if self.registry.version(version)["status"] == "staged":
                return True
        except NotFound:
            pass
        self._clear_staged(version)  # activated, rejected or deleted by another route meanwhile
        return False

    def _shadow_verdict(self, staged: dict[str, Any]) -> None:
        version, served = staged["version"], self.slot.require()
        metric = self._metric(served.task)
        classes = list(served.classes) if served.classes is not None else None
        active_score = score(metric, served.task, [[o[0], o[1], None] for o in staged["outcomes"]], classes)
        candidate_score = score(metric, served.task, [[o[0], o[2], None] for o in staged["outcomes"]], classes)
        details = {"metric": metric, "candidate_score": candidate_score, "active_score": active_score,
                   "labels": len(staged["outcomes"]), "active_version": staged["against"]}
        minimum = self.config.training.options.min_improvement
        if candidate_score is not None and active_score is not None and \
                improvement(metric, candidate_score, active_score) >= minimum:
            self._serve(version, "shadow", details)
        else:
            self._reject(version, f"in shadow it scored {_fmt(candidate_score)} against the active version's "
                         f"{_fmt(active_score)} ({metric}) on the same {len(staged['outcomes'])} labelled requests",
                         "shadow", details)

    def _metric(self, task: str) -> str:
        return self.config.training.options.metric or DEFAULT_METRIC[task]

    def _past_max_hours(self, since: str) -> bool:
        started = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
        return dt.datetime.now(dt.timezone.utc) - started > dt.timedelta(hours=self.settings.max_hours)

    def _warn(self, staged: dict[str, Any]) -> None:
        with self._change():
            state = self._load()
            if not state["staged"] or state["staged"].get("warned"):
                return
            state["staged"]["warned"] = True
            self._save(state)
        have = len(staged["outcomes"]) if staged["mode"] == "shadow" else None
        self._notify("warning", staged["version"], "MODEL_STAGED",
                     f"Version {staged['version']} is still staged ({staged['mode']}) after {self.settings.max_hours:g} h: "
                     f"not enough labels yet ({have if have is not None else 'see the experiment'} of "
                     f"{self.settings.min_labels})", {"version": staged["version"], "mode": staged["mode"]})

    # -- the watch ---------------------------------------------------------------------------------

    def watch(self, version: str, previous: str) -> None:
        """Watch a version the gate just promoted (mode auto): roll back by itself if it serves clearly worse."""
        with self._change():
            state = self._load()
            state["watch"] = {"version": version, "previous": previous, "since": utc_now()}
            self._save(state)

    def check_watch(self) -> None:
        """Once the watched version has ``watchLabels`` live labels, compare it with its predecessor's last ones."""
        watch = self._load()["watch"]
        if not watch:
            return
        if self.registry.state()["active"] != watch["version"]:
            self._end_watch(watch["version"])  # replaced meanwhile: nothing left to watch
            return
        if self._load()["running"]:
            return  # an experiment decides on its own labels; the watch waits
        view = self.monitor.watch_view(watch["version"])
        needed = self.settings.watch_labels
        if view is None or view.n < needed or view.score is None:
            return
        reference, kind = view.previous_score, "live"
        if view.previous_version != watch["previous"] or view.previous_n < needed or reference is None:
            # the predecessor has too few live labels: its score on the held-out rows stands in
            reference, kind = (self.registry.version(watch["previous"]).get("metrics") or {}).get(view.metric), "recorded"
        self._end_watch(watch["version"])
        if reference is None:
            return
        drop = improvement(view.metric, reference, view.score)  # how much worse the watched version serves
        details = {"reason": "watch", "version": watch["previous"], "previous_version": watch["version"],
                   "metric": view.metric, "live_score": view.score, "reference_score": reference,
                   "reference": kind, "drop": drop, "labels": view.n, "max_drop": self.settings.watch_max_drop}
        if drop <= self.settings.watch_max_drop:
            log.info("model %s: %s passed its watch (%s %.4f vs %.4f)", self.config.name, watch["version"],
                     view.metric, view.score, reference)
            return
        try:
            self.slot.activate(watch["previous"], rollback=True)
        except ArtifactError as exc:
            log.error("model %s: the watch could not roll back to %s: %s", self.config.name, watch["previous"], exc.message)
            return
        self.registry.annotate(watch["version"], {"rolled_back": details})
        self._record("MODEL_ROLLED_BACK",
                     f"Rolled back from {watch['version']} to {watch['previous']}: live {view.metric} "
                     f"{view.score:.4f} over its first {view.n} labels is {drop:.4f} worse than {reference:.4f} "
                     f"({kind}); {watch['previous']} serves again", details)

    def _end_watch(self, version: str) -> None:
        with self._change():
            state = self._load()
            if (state["watch"] or {}).get("version") == version:
                state["watch"] = None
                self._save(state)


def _public(experiment: dict[str, Any]) -> dict[str, Any]:
    """An experiment as the API shows it (CONTRACT §9)."""
    keys = ("id", "name", "versions", "split", "status", "started_at", "ended_at", "winner", "p_value", "test",
            "reason", "canary", "baseline", "score_metric")
    return {**{k: experiment.get(k) for k in keys},
            "arms": {v: {"requests": a["requests"], "labels": a["labels"], "score": a["score"]}
                     for v, a in experiment["arms"].items()}}


def _trim(state: dict[str, Any]) -> None:
    ended = sorted((e for e in state["experiments"].values() if e["status"] != "running"), key=lambda e: int(e["id"][1:]))
    for experiment in ended[:-KEEP_ENDED]:
        del state["experiments"][experiment["id"]]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
