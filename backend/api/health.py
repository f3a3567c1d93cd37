"""Health and the model list."""
from __future__ import annotations

import os
from typing import Any

from flask import Blueprint

from .. import openapi
from ..errors import Unavailable
from ..runtime import ModelRuntime
from ..state import refit

bp = Blueprint("health", __name__)


def _model_health(rt: ModelRuntime) -> dict[str, Any]:
    served = rt.current()
    return {
        "model_loaded": served is not None,
        "model_path": served.model_path if served else None,
        "last_training_time": rt.registry.state()["last_training_time"],
        "training_in_progress": rt.runner.running_anywhere() is not None,
        "auto_training_enabled": rt.config.training.auto_train,
        "version": served.version if served else None,
    }


@bp.get("/health")
def health():
    models = {name: _model_health(rt) for name, rt in refit().runtimes.items()}
    first = next(iter(models.values()))
    healthy = all(m["model_loaded"] for m in models.values())
    return {"status": "healthy" if healthy else "degraded", **first, "pid": os.getpid(), "models": models}


@bp.get("/ready")
def ready():
    models = {}
    for name, rt in refit().runtimes.items():
        has_data = rt.store.count() > 0 or bool(rt.registry.state()["versions"])
        served = rt.current()
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
    models = []
    for name, rt in refit().runtimes.items():
        served = rt.served
        models.append({
            "name": name,
            "task": served.task if served else rt.config.task,
            "target": rt.config.target,
            "features": list(served.features) if served else rt.store.features(),
            "active_version": served.version if served else None,
            "total_samples": rt.store.count(),
            "auto_training_enabled": rt.config.training.auto_train,
        })
    return {"models": models}
