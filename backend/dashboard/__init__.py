"""The operator's console: ``/dashboard`` pages and ``/docs`` (Swagger UI), every asset served from here.

The pages are thin Flask templates; plain JavaScript in ``static/`` (no build
step, no CDN) fills them from the same JSON API any client uses and keeps them
current through ``GET /api/events``. Charts are drawn as SVG by our own
``charts.js``. Swagger UI's files come from the ``flask-swagger-ui`` package.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, render_template, request
from flask_swagger_ui import get_swaggerui_blueprint

from ..history import EVENT_TYPES
from ..state import refit, runtime

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/dashboard/static")

# The rollout routes (CONTRACT §9) the Experiments page and the promote/reject buttons call
_ROLLOUT_RULES = {"experiments": "/api/<model>/experiments", "promote": "/api/<model>/versions/<version>/promote"}


def init_app(app: Flask) -> None:
    """Serve the console pages and Swagger UI."""
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", blueprint_name="docs",
                                                   # validatorUrl None: no request leaves the machine
                                                   config={"app_name": "Refit API", "deepLinking": True,
                                                           "validatorUrl": None}))


def _page(template: str, **context: Any) -> str:
    rules = {rule.rule for rule in current_app.url_map.iter_rules()}
    return render_template(template, models=list(refit().runtimes),
                           features={name: rule in rules for name, rule in _ROLLOUT_RULES.items()},
                           event_types=EVENT_TYPES, **context)


@bp.get("/dashboard")
def overview():
    return _page("overview.html", page="overview")


@bp.get("/dashboard/models/<model>")
def model_page(model: str):
    runtime(model)  # 404 for a model that is not configured
    return _page("model.html", page="model", model=model)


@bp.get("/dashboard/jobs")
def jobs():
    return _page("jobs.html", page="jobs")


@bp.get("/dashboard/history")
def history():
    return _page("history.html", page="history", model=request.args.get("model", ""),
                 event_type=request.args.get("event_type", ""))


@bp.get("/dashboard/experiments")
def experiments():
    return _page("experiments.html", page="experiments")
