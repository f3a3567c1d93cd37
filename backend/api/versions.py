"""Versions of a model as the registry records them."""
from __future__ import annotations

from flask import Blueprint

from ..state import runtime

bp = Blueprint("versions", __name__)


@bp.get("/api/<model>/versions")
def list_versions(model: str):
    return {"versions": runtime(model).registry.versions()}


@bp.get("/api/<model>/versions/<version>")
def get_version(model: str, version: str):
    return runtime(model).registry.version(version)
