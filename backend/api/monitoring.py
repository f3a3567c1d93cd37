"""Live performance, drift and staleness of a model (CONTRACT §8)."""
from __future__ import annotations

from flask import Blueprint

from .. import status
from ..state import runtime

bp = Blueprint("monitoring", __name__)


@bp.get("/api/<model>/monitoring")
def monitoring(model: str):
    return status.monitoring(runtime(model))
