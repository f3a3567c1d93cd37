"""Refit's errors and the one JSON envelope every failure is answered with.

    RefitError (code, status, message, details)
    ├── BadRequest          400  malformed JSON, non-finite numbers
    ├── Unauthorized        401  missing or wrong API key
    ├── NotFound            404  unknown model, version or job
    ├── Conflict            409  a training is already running
    ├── TooLarge            413  too many rows in one request
    ├── UnsupportedMedia    415  a body that is not JSON
    ├── Invalid             422  valid JSON that fails validation; also invalid_path, data_quality
    ├── InsufficientStorage 507  the disk refused a write
    └── Unavailable         503  nothing to serve yet

A domain error names the thing ("No version 'v7' for model 'parima'") and
says what to do where that helps. Flask's own HTTP errors (404 route, 405,
413) go through the same envelope, and anything unexpected becomes a logged
500 without a traceback in the body.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class RefitError(Exception):
    """A failure with a stable code, an HTTP status and details for the client."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(RefitError):
    status, code = 400, "bad_request"


class Unauthorized(RefitError):
    status, code = 401, "unauthorized"


class NotFound(RefitError):
    status, code = 404, "not_found"


class Conflict(RefitError):
    status, code = 409, "conflict"


class TooLarge(RefitError):
    status, code = 413, "payload_too_large"


class UnsupportedMedia(RefitError):
    status, code = 415, "unsupported_media_type"


class Invalid(RefitError):
    status, code = 422, "validation_error"


class Unavailable(RefitError):
    status, code = 503, "unavailable"


class InsufficientStorage(RefitError):
    status, code = 507, "insufficient_storage"


def snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the error body shared by every endpoint."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def init_app(app: Flask) -> None:
    """Answer every error, ours or Flask's, with the JSON envelope."""

    @app.errorhandler(RefitError)
    def _refit(exc: RefitError):
        response = jsonify(exc.to_dict())
        if getattr(exc, "retry_after", None):  # e.g. samples.StoreBusy: when to try again
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
