"""Changing what a model serves: activate, roll back, and prune old artifacts.

Every switch loads and checks the version first (outside the lock, so
requests keep being answered by the current one), then commits the registry
and swaps the served model together under the runtime's switch lock.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import Conflict
from .serving import ArtifactError, served_from_record

if TYPE_CHECKING:
    from .runtime import ModelRuntime


def activate(rt: ModelRuntime, version: str, *, force: bool = False) -> dict[str, Any]:
    """Serve ``version`` from the next request on (a rejected or failed one only with ``force``)."""
    record = rt.registry.version(version)
    if record["status"] in ("rejected", "failed") and not force:
        raise Conflict(f"Version '{version}' of '{rt.name}' is {record['status']}; send {{\"force\": true}} to serve it anyway",
                       code=f"version_{record['status']}", details={"version": version, "status": record["status"]})
    return _switch(rt, version, rollback=False, forced=force)


def rollback(rt: ModelRuntime, to_version: str | None = None) -> dict[str, Any]:
    """Serve the version that was active before the current one (or ``to_version``)."""
    target = to_version or rt.registry.rollback_target()
    if target is None:
        raise Conflict(f"Model '{rt.name}' has no earlier version to roll back to", code="no_previous_version",
                       details={"model": rt.name})
    record = rt.registry.version(target)
    if record["status"] in ("rejected", "failed"):
        raise Conflict(f"Version '{target}' is {record['status']}; activate it explicitly with force",
                       code=f"version_{record['status']}", details={"version": target, "status": record["status"]})
    return _switch(rt, target, rollback=True, forced=False)


def _switch(rt: ModelRuntime, version: str, *, rollback: bool, forced: bool) -> dict[str, Any]:
    if rt.registry.version(version)["status"] == "pruned":
        raise Conflict(f"Version '{version}' was pruned; its artifact no longer exists", code="version_pruned",
                       details={"version": version})
    try:
        record, pipeline = rt.load_version(version)  # outside the lock: requests keep the current version meanwhile
    except ArtifactError as exc:
        raise Conflict(f"Version '{version}' cannot be served: {exc}", code="artifact_invalid",
                       details={"version": version}) from None
    with rt.switch_lock:
        previous = rt.registry.activate(version, rollback=rollback)
        rt.served = served_from_record(record, pipeline)
    event = "MODEL_ROLLED_BACK" if rollback else "MODEL_ACTIVATED"
    verb = "rolled back to" if rollback else "activated"
    rt.record(event, f"Version {version} {verb}; it now serves",
                {"version": version, "previous_version": previous, "forced": forced})
    return {"model": rt.name, "active_version": version, "previous_version": previous}


def prune(rt: ModelRuntime) -> list[str]:
    """Apply ``keepVersions`` and log each pruned version."""
    pruned = rt.registry.prune(rt.config.training.keep_versions)
    for version in pruned:
        rt.record("MODEL_PRUNED", f"Version {version} pruned (keepVersions={rt.config.training.keep_versions})",
                    {"version": version})
    return pruned
