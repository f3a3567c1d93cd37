"""The serving slot: what one model serves in this process, and the only way to change it.

Loading a version, verifying it (sha256 before unpickling, then its recorded
check rows), choosing its runtime (ONNX Runtime when it was converted and
answers its check rows the same, see ``onnx_serving.choose``), committing the registry's active pointer and swapping the served
model all happen here. Promotion, activation, rollback, start-up loading and
following another process's change all end in one ``_commit``: the version is
loaded and checked first, outside the lock, so requests keep being answered
by the current one; then, under the slot's lock, the registry write is made
and the served model replaced by one assignment. A request reads ``served``
once into a local, so a batch is answered by one version.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from . import onnx_serving
from .config import ServingConfig
from .errors import ArtifactError, Conflict, Unavailable
from .metrics import Metrics
from .registry import ARTIFACT, Registry
from .serving import Loaded, ServedModel, load_checked, served_from_record, version_mismatch

log = logging.getLogger(__name__)

Record = Callable[[str, str, dict[str, Any]], Any]  # writes a history event: (event type, message, details)
KEEP_OTHER_VERSIONS = 4  # versions besides the active one kept loaded for pinned, experiment and shadow requests


class ServingSlot:
    """One model's served version in this process."""

    def __init__(self, name: str, registry: Registry, record: Record, metrics: Metrics | None = None,
                 serving: ServingConfig | None = None):
        self.name = name
        self.registry = registry
        self._record = record
        self._metrics = metrics
        self._serving = serving or ServingConfig()
        self._served: ServedModel | None = None
        self._lock = threading.Lock()  # one registry commit + swap at a time
        self._seen: tuple[int, int, int] | None = None  # registry.json as last followed
        self._others: OrderedDict[str, ServedModel] = OrderedDict()  # loaded once, least recently used dropped
        self._others_lock = threading.Lock()

    @property
    def served(self) -> ServedModel | None:
        """The loaded version this process serves; replaced whole, never changed in place."""
        return self._served

    def require(self) -> ServedModel:
        """Return the served model or raise 503 saying what to do."""
        served = self._served
        if served is not None:
            return served
        if self.registry.state()["versions"]:
            raise Unavailable(f"No version of model '{self.name}' could be loaded; see MODEL_LOAD_FAILED in the "
                              "history, then train or activate a good version.", code="no_loadable_version",
                              details={"model": self.name})
        raise Unavailable(
            f"Model '{self.name}' has no trained version yet; post samples and train it (POST /api/{self.name}/train).",
            code="model_not_ready", details={"model": self.name},
        )

    def model_of(self, version: str) -> ServedModel:
        """The served model of any servable version: the active one, else loaded and checked once and kept.

        404 for an unknown version, 409 when it has no artifact (pruned) or will not load.
        """
        served = self._served
        if served is not None and served.version == version:
            return served
        with self._others_lock:
            cached = self._others.get(version)
            if cached is not None:
                self._others.move_to_end(version)
                return cached
        record = self.registry.version(version)  # NotFound for unknown or malformed ids
        if record["status"] in ("pruned", "failed"):
            raise Conflict(f"Version '{version}' of '{self.name}' is {record['status']} and cannot answer",
                           code=f"version_{record['status']}", details={"version": version, "status": record["status"]})
        try:  # outside the lock: a slow load never holds up requests for other versions
            full = {**self.registry.metadata(version), **record}
            loaded = self._runtime_for(Path(record["model_path"]).parent, full,
                                       load_checked(Path(record["model_path"]), full))
        except (ArtifactError, OSError, ValueError) as exc:
            reason = exc.message if isinstance(exc, ArtifactError) else str(exc)
            raise Conflict(f"Version '{version}' of '{self.name}' cannot answer: {reason}", code="version_not_servable",
                           details={"version": version}) from None
        model = served_from_record(record, loaded.pipeline, loaded.predictor, self._counter(loaded))
        with self._others_lock:
            self._others[version] = model
            while len(self._others) > KEEP_OTHER_VERSIONS:
                self._others.popitem(last=False)
        return model

    # -- loading -------------------------------------------------------------------------------

    def load(self, version: str) -> tuple[dict[str, Any], Loaded]:
        """Load and check one version; on failure log MODEL_LOAD_FAILED, mark it failed, and raise ArtifactError."""
        record = self.registry.version(version)
        try:
            if record["status"] == "pruned":
                raise ArtifactError(f"version {version} was pruned; its artifact is gone")
            full = {**self.registry.metadata(version), **record}
            pipeline = load_checked(Path(record["model_path"]), full)
        except (ArtifactError, OSError, ValueError) as exc:
            reason = exc.message if isinstance(exc, ArtifactError) else str(exc)
            log.error("model %s version %s not loaded: %s", self.name, version, reason)
            if record["status"] != "pruned":
                self.registry.set_status(version, "failed", reason)
            self._record("MODEL_LOAD_FAILED", f"Version {version} could not be loaded", {"version": version, "error": reason})
            raise ArtifactError(reason, details={"version": version}) from exc
        mismatch = version_mismatch(record)
        if mismatch:
            log.warning("model %s version %s: %s", self.name, version, mismatch)
            self.registry.annotate(version, {"load_warning": mismatch})
        loaded = self._runtime_for(Path(record["model_path"]).parent, full, pipeline)
        runtime = _runtime_fields(loaded)
        if any(record.get(k, "absent") != v for k, v in runtime.items()):  # the record names who serves it now
            self.registry.annotate(version, runtime)
            record = {**record, **runtime}
        return record, loaded

    def _runtime_for(self, folder: Path, record: dict[str, Any], pipeline: Any) -> Loaded:
        predictor, reason = onnx_serving.choose(folder, record, pipeline, self._serving.runtime,
                                                self._serving.onnx_threads)
        return Loaded(pipeline, predictor, reason)

    def verify_candidate(self, staging: Path, record: dict[str, Any]) -> Loaded:
        """Load a staged candidate as serving will and check it reproduces its check rows (ArtifactError if not)."""
        return self._runtime_for(staging, record, load_checked(staging / ARTIFACT, record))

    # -- changing what is served ----------------------------------------------------------------

    def _commit(self, write: Callable[[], dict[str, Any]], loaded: Loaded) -> dict[str, Any]:
        """Under the lock: make the registry write (it returns the record now active) and serve ``loaded`` as it."""
        with self._lock:
            record = write()
            self._set(served_from_record(record, loaded.pipeline, loaded.predictor, self._counter(loaded)))
            return record

    def _counter(self, loaded: Loaded) -> Callable[[int], Any] | None:
        if self._metrics is None:
            return None
        return self._metrics.predictions.labels(model=self.name, runtime=loaded.predictor.runtime).inc

    def _set(self, model: ServedModel | None) -> None:
        self._served = model
        if self._metrics is not None:
            self._metrics.serving(self.name, model.version if model else None)

    def promote(self, staging: Path, record: dict[str, Any], loaded: Loaded, trained_rows: int | None) -> dict[str, Any]:
        """Register a verified candidate as the next version, make it active and serve it."""
        fields = {k: record[k] for k in ("task", "numeric_features", "categorical_features", "classes")}
        record = {**record, **_runtime_fields(loaded)}  # as chosen here: the training process proposed it
        return self._commit(lambda: {**fields, **self.registry.add_version(staging, record, activate=True,
                                                                           trained_rows=trained_rows)}, loaded)

    def activate(self, version: str, *, rollback: bool = False) -> str | None:
        """Load, check and serve ``version``; return the version it replaced (ArtifactError if it will not serve)."""
        record, loaded = self.load(version)  # outside the lock: requests keep the current version meanwhile
        previous: list[str | None] = []

        def write() -> dict[str, Any]:
            previous.append(self.registry.activate(version, rollback=rollback))
            return record

        self._commit(write, loaded)
        return previous[0]

    def start(self) -> ServedModel | None:
        """At start-up, serve the active version; if it will not load or verify, the newest version that does."""
        state = self.registry.state()
        order = [state["active"]] if state["active"] else []
        # then the other servable versions, newest first (the index alone: no metadata file is read)
        order += sorted((v for v, entry in state["versions"].items() if entry["status"] == "ok" and v != state["active"]),
                        key=lambda v: int(v[1:]), reverse=True)
        for version in order:
            try:
                record, loaded = self.load(version)
            except ArtifactError:
                continue
            if version == state["active"]:
                self._commit(lambda: record, loaded)  # noqa: B023 (called at once, inside this iteration)
                return self._served
            self._commit(lambda: self._activated(version, record), loaded)  # noqa: B023 (as above)
            self._record("MODEL_ACTIVATED", f"Version {version} now serves: the active version {state['active']} "
                         "failed to load", {"version": version, "previous_version": state["active"], "reason": "load_failed"})
            return self._served
        self._set(None)
        return None

    def _activated(self, version: str, record: dict[str, Any]) -> dict[str, Any]:
        self.registry.activate(version)
        return record

    def follow(self) -> None:
        """Serve what the registry says is active when another process changed it (the watcher calls this)."""
        try:
            info = os.stat(self.registry.path)
            seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            seen = None
        if seen == self._seen:
            return
        self._seen = seen
        active = self.registry.state()["active"]
        served = self._served
        if active is None or (served is not None and served.version == active):
            return
        try:
            record, loaded = self.load(active)
        except ArtifactError:
            return  # logged as MODEL_LOAD_FAILED; the current version keeps serving

        def write() -> dict[str, Any]:
            if self.registry.state()["active"] != active:  # moved again meanwhile: the next pass follows it
                raise _Moved
            return record

        try:
            self._commit(write, loaded)
            log.info("model %s now serves %s (changed by another process)", self.name, active)
        except _Moved:
            self._seen = None


def _runtime_fields(loaded: Loaded) -> dict[str, Any]:
    return {"serving_runtime": loaded.predictor.runtime, "serving_runtime_reason": loaded.reason}


class _Moved(Exception):
    """The registry's active pointer moved while a version was being loaded to follow it."""
