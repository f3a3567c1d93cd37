"""Health and the model list."""
from __future__ import annotations

import os

from flask import Blueprint

from .. import openapi, status
from ..errors import Unavailable
from ..state import refit

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    state = refit()
    models = {name: status.of(rt).health() for name, rt in state.runtimes.items()}
    first = next(iter(models.values()))
    healthy = all(m["model_loaded"] for m in models.values())
    return {"status": "healthy" if healthy else "degraded", **first, "pid": os.getpid(),
            "auth_required": state.api_key is not None, "models": models, "executor": state.executor_health()}


@bp.get("/ready")
def ready():
    models = {}
    for name, rt in refit().runtimes.items():
        has_data = rt.store.count() > 0 or bool(rt.registry.state()["versions"])
        served = rt.slot.served
        models[name] = {"ready": served is not None or not has_data, "version": served.version if served else None,
                        "has_data": has_data}
    if all(m["ready"] for m in models.values()):
        return {"ready": True, "pid": os.getpid(), "models": models}
    waiting = sorted(n for n, m in models.items() if not m["ready"])
    raise Unavailable(f"Not ready: no verified version loaded for {', '.join(waiting)}", code="not_ready",
                      details={"models": models})


@bp.get("/openapi.json")
def openapi_document():
    state = refit()
    if state.openapi is None:
        state.openapi = openapi.build(state.config)
    return state.openapi


@bp.get("/api/models")
def list_models():
    return {"models": [status.of(rt).listing() for rt in refit().runtimes.values()]}
