"""Every error, ours or Flask's, answered with the one JSON envelope of ``backend.errors``."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from ..errors import RefitError, Unavailable, envelope, snake

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the handlers; anything unexpected becomes a logged 500 without a traceback in the body."""

    @app.errorhandler(RefitError)
    def _refit(exc: RefitError):
        response = jsonify(exc.to_dict())
        if isinstance(exc, Unavailable) and exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response, exc.status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = "payload_too_large" if exc.code == 413 else snake(exc.name)
        response = jsonify(envelope(code, exc.description or exc.name))
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify(envelope("internal_error", "The server hit an unexpected error; it has been logged.")), 500
