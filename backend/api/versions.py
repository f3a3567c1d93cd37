"""Versions of a model: list, inspect, activate, roll back, compare."""
from __future__ import annotations

from flask import Blueprint, request, send_file

from .. import lifecycle
from ..compare import compare
from ..errors import NotFound
from ..schemas import activate_request, compare_request, json_body, load, rollback_request
from ..state import runtime

bp = Blueprint("versions", __name__)


@bp.get("/api/<model>/versions")
def list_versions(model: str):
    return {"versions": runtime(model).registry.versions()}


@bp.get("/api/<model>/versions/<version>")
def get_version(model: str, version: str):
    return runtime(model).registry.version(version)


@bp.get("/api/<model>/versions/<version>/feature-importance")
def feature_importance(model: str, version: str):
    record = runtime(model).registry.version(version)
    if not record.get("feature_importance"):
        raise NotFound(f"Version '{version}' of '{model}' has no feature importance", code="no_feature_importance",
                       details={"version": version})
    return {"model": model, "version": version, **record["feature_importance"]}


@bp.get("/api/<model>/versions/<version>/plots/<name>.png")
def plot(model: str, version: str, name: str):
    rt = runtime(model)
    record = rt.registry.version(version)
    if name not in (record.get("plots") or []):  # only names the training recorded: never a path from the request
        raise NotFound(f"Version '{version}' of '{model}' has no plot '{name}'", code="plot_not_found",
                       details={"version": version, "plots": record.get("plots") or []})
    return send_file(rt.registry.folder / version / "plots" / f"{name}.png", mimetype="image/png")


@bp.post("/api/<model>/versions/<version>/activate")
def activate(model: str, version: str):
    rt = runtime(model)
    options = load(activate_request, json_body(request, required=False))
    return lifecycle.activate(rt, version, force=options["force"])


@bp.post("/api/<model>/rollback")
def rollback(model: str):
    rt = runtime(model)
    options = load(rollback_request, json_body(request, required=False))
    return lifecycle.rollback(rt, options["to_version"])


@bp.post("/api/<model>/compare")
def compare_versions(model: str):
    rt = runtime(model)
    options = load(compare_request, json_body(request, required=True))
    return compare(rt, options["versions"], options["evaluate_on"])
