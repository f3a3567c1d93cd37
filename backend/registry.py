"""One model's versions on disk: ``<modelsDir>/<model>/``.

    registry.json        the pointers and a compact index, nothing else
    v<N>/model.joblib    the fitted Pipeline
    v<N>/metadata.json   the full version record plus features, dtypes, classes, check rows

registry.json is read on every sample POST, /health, /ready and each
worker's sync, so it stays small: ``model``, ``next_version``, ``active``,
``activation_stack`` (for rollback), ``trained_rows``, ``last_training_time``
and ``versions``, an index of one short entry per version (``INDEX_FIELDS``:
version, status, status_reason, status_before_pruning, created_at, metric,
score, algorithm, trigger, sha256): what a status, health, rollback or
serving decision needs. The full record (metrics, tuning trials, reports,
feature importance, evaluation...) lives only in ``v<N>/metadata.json``.
The index owns the status fields; metadata.json owns the rest, and
``annotate`` changes it. A public record (``version()``, ``versions()``) is
metadata.json merged with the index entry, so ``version()`` reads two files
and ``versions()`` reads one per version (for the listing only).

An old registry.json that held every full record is read as it is (its
records merged over metadata.json) and rewritten in the compact form, with
anything only it knew moved into metadata.json, at the next write.

Every file changes by atomic replace, and each read-modify-write holds an
exclusive ``flock`` on ``.registry.lock`` (never on a file that is replaced)
so several processes can share the folder. Version numbers are integers
handed out under that lock; the served version is the explicit ``active``
pointer, never the newest file.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .errors import NotFound
from .files import atomic_write, fsync_dir, locked
from .history import utc_now

VERSION_ID = re.compile(r"^v[1-9][0-9]{0,8}$")
ARTIFACT = "model.joblib"


def _empty_state(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "next_version": 1,
        "active": None,
        "activation_stack": [],
        "trained_rows": 0,
        "last_training_time": None,
        "versions": {},
    }


class Registry:
    """Read and change one model's version records and active pointer."""

    def __init__(self, folder: Path, model: str):
        self.folder = folder
        self.model = model
        self.path = folder / "registry.json"
        self._thread_lock = threading.RLock()
        self._memo: tuple[tuple[int, int, int, int], BinaryIO, dict[str, Any]] | None = None

    def _locked(self) -> contextlib.AbstractContextManager[int]:
        return locked(self.folder / ".registry.lock", thread_lock=self._thread_lock)

    def state(self) -> dict[str, Any]:
        """Return the registry as last written (an empty one before the first version); do not change it.

        Every sample POST, /health and worker sync asks for this, and parsing
        the index costs ~1.5 ms per 1,000 versions, so the parsed state is kept
        with the file it was read from held open: while it is open its inode
        number cannot be reused, so when the path still names that inode (same
        size and mtime: nothing wrote it in place) it still holds what we parsed,
        and a call costs one ``stat``. The result is shared between callers.
        """
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return _empty_state(self.model)
        memo = self._memo
        if memo is not None and memo[0] == (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns):
            return memo[2]
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return _empty_state(self.model)
        try:
            opened = os.fstat(handle.fileno())
            state = orjson.loads(handle.read())
        except BaseException:
            handle.close()
            raise
        self._memo = ((opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns), handle, state)
        if memo is not None:
            memo[1].close()
        return state

    def _read(self) -> dict[str, Any]:
        """A freshly parsed state of our own, to change under the lock."""
        try:
            return orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return _empty_state(self.model)

    def _state_for_write(self) -> tuple[dict[str, Any], bool]:
        """The state to change under the lock, in the compact layout, and whether it was in the old one."""
        state = self._read()
        old = [v for v, entry in state["versions"].items() if not entry.keys() <= INDEX_FIELDS]
        for version in old:
            state["versions"][version] = self._migrate(version, state["versions"][version])
        return state, bool(old)

    def _migrate(self, version: str, record: dict[str, Any]) -> dict[str, Any]:
        """Move what only an old full registry record knew (annotations) into metadata.json; return its index entry."""
        try:
            metadata = self.metadata(version)
        except FileNotFoundError:
            metadata = {}
        merged = {**metadata, **{k: v for k, v in record.items() if k not in _STATUS_FIELDS}}
        if merged != metadata:
            self._write_metadata(version, merged)
        return _index_entry(record)

    def _write(self, state: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(state, indent=1, allow_nan=False).encode("utf-8"))

    def _write_metadata(self, version: str, record: dict[str, Any]) -> None:
        atomic_write(self.folder / version / "metadata.json",
                     json.dumps(record, indent=2, allow_nan=False).encode("utf-8"))

    def artifact_path(self, version: str) -> Path:
        return self.folder / version / ARTIFACT

    def _public(self, entry: dict[str, Any], active: str | None) -> dict[str, Any]:
        try:
            metadata = self.metadata(entry["version"])
        except FileNotFoundError:  # a folder damaged by hand: the index still lists it
            metadata = {}
        out = _merge(metadata, entry)
        if out["status"] == "ok":
            out["status"] = "active" if entry["version"] == active else "inactive"
        out["model_path"] = None if out["status"] == "pruned" else str(self.artifact_path(entry["version"]))
        return out

    def versions(self) -> list[dict[str, Any]]:
        """Return every version record, newest first, with its status as served now (reads every metadata.json)."""
        state = self.state()
        entries = sorted(state["versions"].values(), key=lambda r: int(r["version"][1:]), reverse=True)
        return [self._public(e, state["active"]) for e in entries]

    def version(self, version: str) -> dict[str, Any]:
        """Return one version record; 404 when there is no such version (a malformed id names none either)."""
        if not VERSION_ID.match(version):
            raise NotFound(f"No version '{version[:100]}' for model '{self.model}': version ids are v1, v2, ...",
                           code="version_not_found", details={"model": self.model, "version": version[:100]})
        state = self.state()
        entry = state["versions"].get(version)
        if entry is None:
            raise self._not_found(version)
        return self._public(entry, state["active"])

    def _not_found(self, version: str) -> NotFound:
        return NotFound(f"No version '{version}' for model '{self.model}'", code="version_not_found",
                        details={"model": self.model, "version": version})

    def add_version(
        self, staging: Path, record: dict[str, Any], *, activate: bool, trained_rows: int | None
    ) -> dict[str, Any]:
        """Move a staged artifact in as the next version and record it; optionally make it active.

        ``trained_rows`` is the sample-store row count the training consumed
        (None when it trained on another file), which resets the count of new samples.
        """
        with self._locked():
            state, _ = self._state_for_write()
            version = f"v{state['next_version']}"
            target = self.folder / version
            if target.exists():  # left by a crash between the rename and the registry write
                shutil.rmtree(target)
            os.rename(staging, target)
            fsync_dir(self.folder)
            full = {**record, "version": version, "created_at": record.get("created_at") or utc_now()}
            self._write_metadata(version, full)
            state["next_version"] += 1
            state["versions"][version] = _index_entry(full)
            state["last_training_time"] = full["created_at"]
            if trained_rows is not None:
                state["trained_rows"] = trained_rows
            if activate:
                _push_active(state, version)
            self._write(state)
            return self._public(state["versions"][version], state["active"])

    def set_status(self, version: str, status: str, reason: str) -> None:
        """Change a version's stored status (for example to 'failed' when it would not load)."""
        with self._locked():
            state, _ = self._state_for_write()
            entry = state["versions"][version]
            entry["status"] = status
            entry["status_reason"] = reason
            if state["active"] == version and status != "ok":
                state["active"] = state["activation_stack"].pop() if state["activation_stack"] else None
            self._write(state)

    def activate(self, version: str, *, rollback: bool = False) -> str | None:
        """Point the registry at ``version``; return the version it replaces.

        An activation remembers the replaced version for a later rollback; a
        rollback instead unwinds that memory down to ``version``, so repeated
        rollbacks keep going back in time.
        """
        with self._locked():
            state, _ = self._state_for_write()
            entry = state["versions"].get(version)
            if entry is None:
                raise self._not_found(version)
            previous = state["active"]
            if rollback:
                stack = state["activation_stack"]
                while version in stack:
                    stack.pop()
                state["active"] = version
            else:
                _push_active(state, version)
            entry["status"] = "ok"
            entry.pop("status_reason", None)
            self._write(state)
            return previous

    def rollback_target(self) -> str | None:
        """The version that was active before the current one and can still serve, if any."""
        state = self.state()
        for version in reversed(state["activation_stack"]):
            entry = state["versions"].get(version)
            if version != state["active"] and entry and entry["status"] == "ok":
                return version
        return None

    def metadata(self, version: str) -> dict[str, Any]:
        """Return a version's metadata.json (the record plus the rows that check a reload)."""
        return orjson.loads((self.folder / version / "metadata.json").read_bytes())

    def annotate(self, version: str, fields: dict[str, Any]) -> None:
        """Add facts learned after training (for example a library version mismatch) to a version record."""
        with self._locked():
            state, migrated = self._state_for_write()
            entry = state["versions"][version]
            self._write_metadata(version, {**self.metadata(version), **fields})
            changed = {k: v for k, v in _index_entry({**entry, **fields}).items() if entry.get(k) != v}
            if changed or migrated:
                entry.update(changed)
                self._write(state)

    def prune(self, keep: int) -> list[str]:
        """Delete the artifacts of all but the newest ``keep`` versions; never the active one or the one before it.

        A pruned version keeps its record (status 'pruned') so the history stays readable.
        """
        with self._locked():
            state, migrated = self._state_for_write()
            protected = {state["active"], *state["activation_stack"][-1:],
                         *(v for v, e in state["versions"].items() if e["status"] == "staged")}
            with_artifacts = sorted((e for e in state["versions"].values() if e["status"] != "pruned"),
                                    key=lambda e: int(e["version"][1:]), reverse=True)
            pruned = []
            for entry in with_artifacts[keep:]:
                if entry["version"] in protected:
                    continue
                for artifact in (self.artifact_path(entry["version"]), self.folder / entry["version"] / "model.onnx"):
                    try:
                        artifact.unlink()
                    except FileNotFoundError:  # model.onnx exists only for converted versions
                        pass
                entry["status_before_pruning"] = entry["status"]
                entry["status"] = "pruned"
                pruned.append(entry["version"])
            if pruned or migrated:
                self._write(state)
            return pruned


def _push_active(state: dict[str, Any], version: str) -> None:
    if state["active"] and state["active"] != version:
        state["activation_stack"] = (state["activation_stack"] + [state["active"]])[-100:]
    state["active"] = version


# What registry.json keeps of a version: enough to list it and to decide status, health, rollback and serving.
INDEX_FIELDS = frozenset({"version", "status", "status_reason", "status_before_pruning", "created_at", "metric",
                          "score", "algorithm", "trigger", "sha256"})
# Owned by the index: a status change never rewrites metadata.json, whose copies are the status at creation.
_STATUS_FIELDS = frozenset({"status", "status_reason", "status_before_pruning"})
# Kept in metadata.json beside the artifact but not part of a public record.
_METADATA_ONLY = frozenset({"check_rows", "check_predictions"})
# Derived for the index only; the full record has it as promotion.candidate_score.
_INDEX_ONLY = frozenset({"score"})


def _index_entry(record: dict[str, Any]) -> dict[str, Any]:
    """The compact index entry of a full (or already compact) version record."""
    entry = {k: record[k] for k in ("version", "status", "status_reason", "status_before_pruning", "created_at",
                                    "metric", "algorithm", "trigger", "sha256") if k in record}
    score = record["score"] if "score" in record else (record.get("promotion") or {}).get("candidate_score")
    if score is not None:
        entry["score"] = score
    return entry


def _merge(metadata: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A public record: metadata.json's fields in their order, the index's status over the status at creation."""
    out = {}
    for key, value in metadata.items():
        if key in _METADATA_ONLY or (key in _STATUS_FIELDS and key not in entry):
            continue
        out[key] = entry.get(key, value)
    for key, value in entry.items():
        if key not in out and key not in _INDEX_ONLY:
            out[key] = value
    return out
