"""Refit's errors: one tree under one base, each with a stable code and an HTTP status.

    RefitError (code, status, message, details)               500 internal_error
    ├── BadRequest          400  malformed JSON, non-finite numbers
    ├── Unauthorized        401  missing or wrong API key
    ├── NotFound            404  unknown model, version, job or dataset
    ├── Conflict            409  a training is already running; a version in the wrong state
    │   └── ArtifactError        an artifact is missing, tampered with, or does not verify
    ├── TooLarge            413  too many rows in one request
    ├── UnsupportedMedia    415  a body that is not JSON
    ├── Invalid             422  valid JSON that fails validation; also invalid_path
    │   ├── DataQualityError     the data cannot train a model (``problem`` names why)
    │   └── CatalogueError       an algorithm, parameter or package that cannot be used
    ├── Unavailable         503  nothing to serve yet (``retry_after`` adds a Retry-After header)
    │   └── samples.StoreBusy    an outside writer is still writing the sample file's last line
    ├── InsufficientStorage 507  the disk refused a write
    ├── ConfigError              the configuration cannot be used (stops the start)
    ├── TrainingFailed           a job could not produce or commit a candidate (``reason``)
    └── CommandError             a CLI command could not do its work

A domain error names the thing ("No version 'v7' for model 'parima'") and
says what to do where that helps. ``backend.api.handlers`` turns every one of
them, and Flask's own HTTP errors, into the one JSON envelope; this module
imports no Flask, so the training process and the CLI use the same tree.
"""
from __future__ import annotations

import re
from typing import Any


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
        return envelope(self.code, self.message, self.details)


class BadRequest(RefitError):
    status, code = 400, "bad_request"


class Unauthorized(RefitError):
    status, code = 401, "unauthorized"


class NotFound(RefitError):
    status, code = 404, "not_found"


class Conflict(RefitError):
    status, code = 409, "conflict"


class ArtifactError(Conflict):
    """An artifact is missing, does not match its recorded sha256, will not load, or predicts differently."""

    code = "artifact_invalid"


class TooLarge(RefitError):
    status, code = 413, "payload_too_large"


class UnsupportedMedia(RefitError):
    status, code = 415, "unsupported_media_type"


class Invalid(RefitError):
    status, code = 422, "validation_error"


class DataQualityError(Invalid):
    """The data cannot train a model; ``problem`` is a stable short name, ``report`` the data-quality report."""

    code = "data_quality"

    def __init__(self, problem: str, message: str, report: dict[str, Any] | None = None):
        super().__init__(message, details={"problem": problem, "report": report or {}})
        self.problem = problem
        self.report = report or {}


class CatalogueError(Invalid, ValueError):
    """An algorithm or parameter that cannot be used; ``field`` names the option, ``package`` what to install."""

    def __init__(self, message: str, field: str = "model_type", package: str | None = None):
        super().__init__(message, code="package_missing" if package else "invalid_option",
                         details={"field": field, **({"package": package} if package else {})})
        self.field = field
        self.package = package


class Unavailable(RefitError):
    status, code = 503, "unavailable"
    retry_after: int | None = None  # seconds, sent as Retry-After when set


class InsufficientStorage(RefitError):
    status, code = 507, "insufficient_storage"


class ConfigError(RefitError):
    """The configuration cannot be used; the message names the key at fault."""

    code = "config_error"

    def __init__(self, message: str):
        super().__init__(message)


class TrainingFailed(RefitError):
    """A training job could not produce or commit a candidate; ``reason`` is a short stable name."""

    code = "training_failed"

    def __init__(self, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.reason = reason


class CommandError(RefitError):
    """A command could not do its work; the message is printed as the one-line error."""

    code = "command_failed"

    def __init__(self, message: str):
        super().__init__(message)


def snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the error body shared by every endpoint."""
    return {"error": {"code": code, "message": message, "details": details or {}}}
