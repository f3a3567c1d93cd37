"""Notifications of training outcomes and lifecycle events."""
from __future__ import annotations

from flask import Blueprint, request

from ..schemas import load, notifications_query
from ..state import refit

bp = Blueprint("notifications", __name__)


@bp.get("/api/notifications")
def list_notifications():
    query = load(notifications_query, request.args.to_dict())
    return {"notifications": refit().notifier.list(query["since"], query["level"], query["limit"])}
