"""Changing what a model serves on an operator's word: activate, roll back; and pruning old artifacts.

The serving slot loads and checks the version, commits the registry and
swaps the served model (``ServingSlot.activate``); this module decides which
version may serve and writes the event a person reads.
"""
from __future__ import annotations

from typing import Any

from .errors import ArtifactError, Conflict
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
        previous = rt.slot.activate(version, rollback=rollback)
    except ArtifactError as exc:
        raise ArtifactError(f"Version '{version}' cannot be served: {exc.message}", details={"version": version}) from None
    if rollback:
        event, message = "MODEL_ROLLED_BACK", f"Rolled back from {previous or 'no version'} to {version}; {version} now serves"
    else:
        event = "MODEL_ACTIVATED"
        message = (f"Version {version} activated again; it was already serving" if previous == version else
                   f"Version {version} activated and now serving (it replaces {previous or 'no version'})")
    rt.record(event, message, {"version": version, "previous_version": previous, "forced": forced})
    return {"model": rt.name, "active_version": version, "previous_version": previous}


def prune(rt: ModelRuntime) -> list[str]:
    """Apply ``keepVersions`` and log each pruned version."""
    keep = rt.config.training.keep_versions
    pruned = rt.registry.prune(keep)
    for version in pruned:
        rt.record("MODEL_PRUNED", f"Version {version} pruned: only the newest {keep} versions keep their artifacts "
                  "(keepVersions)", {"version": version})
    return pruned
