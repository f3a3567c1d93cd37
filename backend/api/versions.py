"""Versions of a model: list, inspect, activate, roll back, compare."""
from __future__ import annotations

from flask import Blueprint, request

from .. import lifecycle
from ..compare import compare
from ..schemas import activate_request, compare_request, json_body, load, rollback_request
from ..state import runtime

bp = Blueprint("versions", __name__)


@bp.get("/api/<model>/versions")
def list_versions(model: str):
    return {"versions": runtime(model).registry.versions()}


@bp.get("/api/<model>/versions/<version>")
def get_version(model: str, version: str):
    return runtime(model).registry.version(version)


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
