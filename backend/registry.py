"""One model's versions on disk: ``<modelsDir>/<model>/``.

    registry.json        next version number, the active pointer, the activation
                         stack (for rollback), the rows trained on, every record
    v<N>/model.joblib    the fitted Pipeline
    v<N>/metadata.json   the version record plus features, dtypes, classes, versions

Every file changes by atomic replace, and each read-modify-write of
registry.json holds an exclusive ``flock`` so several processes can share the
folder. Version numbers are integers handed out under that lock; the served
version is the explicit ``active`` pointer, never the newest file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

from .errors import Invalid, NotFound
from .files import atomic_write, fsync_dir
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            fd = os.open(self.folder / ".registry.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def state(self) -> dict[str, Any]:
        """Return the registry as last written (an empty one before the first version)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _empty_state(self.model)

    def _write(self, state: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(state, indent=2, allow_nan=False).encode("utf-8"))

    def artifact_path(self, version: str) -> Path:
        return self.folder / version / ARTIFACT

    def _public(self, record: dict[str, Any], active: str | None) -> dict[str, Any]:
        out = dict(record)
        if out["status"] == "ok":
            out["status"] = "active" if record["version"] == active else "inactive"
        out["model_path"] = None if out["status"] == "pruned" else str(self.artifact_path(record["version"]))
        return out

    def versions(self) -> list[dict[str, Any]]:
        """Return every version record, newest first, with its status as served now."""
        state = self.state()
        records = sorted(state["versions"].values(), key=lambda r: int(r["version"][1:]), reverse=True)
        return [self._public(r, state["active"]) for r in records]

    def version(self, version: str) -> dict[str, Any]:
        """Return one version record; 404 when there is no such version."""
        if not VERSION_ID.match(version):
            raise Invalid(f"'{version}' is not a version id (v1, v2, ...)", code="invalid_version",
                          details={"version": version})
        state = self.state()
        record = state["versions"].get(version)
        if record is None:
            raise NotFound(f"No version '{version}' for model '{self.model}'", code="version_not_found",
                           details={"model": self.model, "version": version})
        return self._public(record, state["active"])

    def add_version(
        self, staging: Path, record: dict[str, Any], *, activate: bool, trained_rows: int | None
    ) -> dict[str, Any]:
        """Move a staged artifact in as the next version and record it; optionally make it active.

        ``trained_rows`` is the sample-store row count the training consumed
        (None when it trained on another file), which resets the count of new samples.
        """
        with self._locked():
            state = self.state()
            version = f"v{state['next_version']}"
            target = self.folder / version
            if target.exists():  # left by a crash between the rename and the registry write
                shutil.rmtree(target)
            os.rename(staging, target)
            fsync_dir(self.folder)
            full = {**record, "version": version, "created_at": record.get("created_at") or utc_now()}
            atomic_write(target / "metadata.json", json.dumps(full, indent=2, allow_nan=False).encode("utf-8"))
            state["next_version"] += 1
            state["versions"][version] = {k: v for k, v in full.items() if k not in _METADATA_ONLY}
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
            state = self.state()
            record = state["versions"][version]
            record["status"] = status
            record["status_reason"] = reason
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
            state = self.state()
            record = state["versions"].get(version)
            if record is None:
                raise NotFound(f"No version '{version}' for model '{self.model}'", code="version_not_found",
                               details={"model": self.model, "version": version})
            previous = state["active"]
            if rollback:
                stack = state["activation_stack"]
                while version in stack:
                    stack.pop()
                state["active"] = version
            else:
                _push_active(state, version)
            record["status"] = "ok"
            record.pop("status_reason", None)
            self._write(state)
            return previous

    def rollback_target(self) -> str | None:
        """The version that was active before the current one and can still serve, if any."""
        state = self.state()
        for version in reversed(state["activation_stack"]):
            record = state["versions"].get(version)
            if version != state["active"] and record and record["status"] == "ok":
                return version
        return None

    def metadata(self, version: str) -> dict[str, Any]:
        """Return a version's metadata.json (the record plus the rows that check a reload)."""
        return json.loads((self.folder / version / "metadata.json").read_text(encoding="utf-8"))

    def annotate(self, version: str, fields: dict[str, Any]) -> None:
        """Add facts learned after training (for example a library version mismatch) to a version record."""
        with self._locked():
            state = self.state()
            state["versions"][version].update(fields)
            self._write(state)

    def prune(self, keep: int) -> list[str]:
        """Delete the artifacts of all but the newest ``keep`` versions; never the active one or the one before it.

        A pruned version keeps its record (status 'pruned') so the history stays readable.
        """
        with self._locked():
            state = self.state()
            protected = {state["active"], *state["activation_stack"][-1:]}
            with_artifacts = sorted((r for r in state["versions"].values() if r["status"] != "pruned"),
                                    key=lambda r: int(r["version"][1:]), reverse=True)
            pruned = []
            for record in with_artifacts[keep:]:
                if record["version"] in protected:
                    continue
                try:
                    self.artifact_path(record["version"]).unlink()
                except FileNotFoundError:
                    pass
                record["status_before_pruning"] = record["status"]
                record["status"] = "pruned"
                pruned.append(record["version"])
            if pruned:
                self._write(state)
            return pruned


def _push_active(state: dict[str, Any], version: str) -> None:
    if state["active"] and state["active"] != version:
        state["activation_stack"] = (state["activation_stack"] + [state["active"]])[-100:]
    state["active"] = version


# Kept in metadata.json beside the artifact but not repeated in registry.json.
_METADATA_ONLY = frozenset({"check_rows", "check_predictions"})
