"""The HTTP API: one blueprint per area."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach every blueprint to ``app``."""
    from . import datasets, events, health, monitoring, notifications, predict, samples, training, versions

    for module in (datasets, events, health, monitoring, notifications, predict, samples, training, versions):
        app.register_blueprint(module.bp)
