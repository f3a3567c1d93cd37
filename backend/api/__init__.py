"""The HTTP API: one blueprint per area."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach every blueprint to ``app``."""
    from . import (datasets, events, health, inference_v2, invocations, monitoring, notifications, predict, rollout,
                   samples, training, versions)

    for module in (datasets, events, health, monitoring, notifications, predict, rollout, samples, training, versions,
                   invocations, inference_v2):
        app.register_blueprint(module.bp)
