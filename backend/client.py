"""A Python client of Refit's HTTP API (CONTRACT §10), on ``requests``: no Flask, no scikit-learn.

    from backend.client import Client

    refit = Client("http://127.0.0.1:5001", api_key=os.environ.get("REFIT_API_KEY"))
    refit.predict("parima", {"frustumCoverage": 0.6, "occlusionRatio": 0.1, ...})["prediction"]
    job = refit.train("parima", force=True)       # waits; a progress bar on a terminal
    for event in refit.history("parima", follow=True):
        print(event["event_type"], event["message"])

Calls take the model first, then path ids, then body fields as keyword
arguments with the API's names, and return the JSON body. Every error
envelope becomes an exception:

    ClientError                          anything this module raises
    ├── TransportError                   no usable answer: refused, timed out, not JSON
    └── APIError                         an error envelope: .code, .status, .message, .details
        ├── BadRequestError         400  malformed JSON
        ├── UnauthorizedError       401  missing or wrong API key: pass api_key=
        ├── NotFoundError           404  unknown model, version, job, experiment, prediction
        ├── ConflictError           409  a training already running (details["job_id"]), a version in the wrong state
        ├── PayloadTooLargeError    413  too many rows or bytes in one request
        ├── ValidationError         422  the body failed validation (details name the field or row)
        └── UnavailableError        503  nothing to serve yet, or the server is busy
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import requests

TERMINAL = frozenset({"completed", "skipped", "failed", "cancelled"})
STREAM_READ_TIMEOUT = 35.0  # the server sends a comment line every 10 s: silence this long means a dead stream
RECONNECT_SECONDS = 30.0  # how long a broken event stream is retried before giving up


class ClientError(Exception):
    """Anything the client raises."""


class TransportError(ClientError):
    """The server gave no usable answer (refused, timed out, or not JSON); check the URL and that it runs."""


class APIError(ClientError):
    """The server answered with an error envelope."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class BadRequestError(APIError):
    """400: the body is not valid JSON (or holds NaN/Infinity)."""


class UnauthorizedError(APIError):
    """401: a valid API key is needed; pass ``api_key=`` to the Client."""


class NotFoundError(APIError):
    """404: no such model, version, job, dataset, experiment or prediction."""


class ConflictError(APIError):
    """409: a training is already running (``details["job_id"]``), or the version is in the wrong state."""


class PayloadTooLargeError(APIError):
    """413: too many rows or bytes in one request; send smaller batches."""


class ValidationError(APIError):
    """422: the body failed validation; ``details`` names the field or row."""


class UnavailableError(APIError):
    """503: nothing to serve yet, or the server is busy (retry later)."""


_BY_STATUS: dict[int, type[APIError]] = {400: BadRequestError, 401: UnauthorizedError, 404: NotFoundError,
                                         409: ConflictError, 413: PayloadTooLargeError, 422: ValidationError,
                                         503: UnavailableError}


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of ``GET /api/events``: its id, its kind (history, job, notification) and its object."""

    id: int
    kind: str
    data: dict[str, Any]


class Client:
    """Talk to one Refit server; one keep-alive session, every error envelope raised as an ``APIError``."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 10):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        """Close the connections this client holds."""
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one request path --------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
              raw: bool = False, **kwargs: Any) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._session.request(method, self.base_url + path, json=body, params=params or None,
                                             timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise TransportError(f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        if raw:
            return response.content
        try:
            return response.json()
        except ValueError:
            raise TransportError(f"{method} {path}: the answer ({response.status_code}) is not JSON") from None

    # -- operations ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return self._call("GET", "/health")

    def ready(self) -> dict[str, Any]:
        """``GET /ready`` (503 ``UnavailableError`` until every model with data serves)."""
        return self._call("GET", "/ready")

    def models(self) -> dict[str, Any]:
        """``GET /api/models``."""
        return self._call("GET", "/api/models")

    def notifications(self, since: int | None = None, level: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """``GET /api/notifications``."""
        return self._call("GET", "/api/notifications", params={"since": since, "level": level, "limit": limit})

    # -- predictions, samples, feedback ---------------------------------------------------------

    def predict(self, model: str, features: dict[str, Any], *, version: str | None = None,
                routing_key: str | None = None) -> dict[str, Any]:
        """Predict one row: ``prediction``, ``probabilities``, ``model_version``."""
        return self._call("POST", f"/api/{model}/predict", _body(features=features, version=version, routing_key=routing_key))

    def predict_many(self, model: str, instances: list[dict[str, Any]], *, version: str | None = None,
                     routing_key: str | None = None) -> dict[str, Any]:
        """Predict a batch: ``predictions``, ``probabilities``, ``model_version``."""
        return self._call("POST", f"/api/{model}/predict",
                          _body(instances=instances, version=version, routing_key=routing_key))

    def add_samples(self, model: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Append labelled rows (all or nothing): ``accepted``, ``total_samples``, ``samples_since_last_training``."""
        return self._call("POST", f"/api/{model}/samples", {"samples": samples})

    def feedback(self, model: str, feedback: list[dict[str, Any]]) -> dict[str, Any]:
        """Send delayed labels ``[{"prediction_id", "label"}]`` for logged predictions."""
        return self._call("POST", f"/api/{model}/feedback", {"feedback": feedback})

    def prediction(self, model: str, prediction_id: str) -> dict[str, Any]:
        """``GET /api/<m>/predictions/<id>``: a logged prediction."""
        return self._call("GET", f"/api/{model}/predictions/{prediction_id}")

    # -- training ----------------------------------------------------------------------------

    def train(self, model: str, wait: bool = True, force: bool = False, csv_path: str | None = None,
              model_type: str | None = None, *, progress: bool | None = None, poll: float = 0.5,
              **options: Any) -> dict[str, Any]:
        """Start a training (``options``: any training option by its API name); with ``wait``, return the finished job.

        ``progress`` (default: when stderr is a terminal) shows a tqdm bar while waiting.
        """
        started = self._call("POST", f"/api/{model}/train",
                             _body(force=force, csv_path=csv_path, model_type=model_type, **options))
        if not wait:
            return started
        return self.wait_job(model, started["job_id"], progress=progress, poll=poll)

    def wait_job(self, model: str, job_id: str, *, progress: bool | None = None, poll: float = 0.5) -> dict[str, Any]:
        """Poll a job until it ends and return its record; a tqdm bar on a terminal."""
        show = sys.stderr.isatty() if progress is None else progress
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=100, desc=f"{model} {job_id}", unit="%", file=sys.stderr, leave=True)
        try:
            while True:
                job = self.job(model, job_id)
                if bar is not None:
                    bar.update(max(0, job["progress"] - bar.n))
                    bar.set_postfix_str(job["stage"])
                if job["status"] in TERMINAL:
                    return job
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()

    def train_all(self, force: bool = False) -> dict[str, Any]:
        """``POST /api/models/train``: one job per model."""
        return self._call("POST", "/api/models/train", {"force": force})

    def job(self, model: str, job_id: str) -> dict[str, Any]:
        """A job's record."""
        return self._call("GET", f"/api/{model}/jobs/{job_id}")

    def jobs(self, model: str, status: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """``{"jobs": [...]}``, newest first."""
        return self._call("GET", f"/api/{model}/jobs", params={"status": status, "limit": limit})

    def cancel(self, model: str, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (409 ``ConflictError`` once it has ended)."""
        return self._call("DELETE", f"/api/{model}/jobs/{job_id}")

    def status(self, model: str) -> dict[str, Any]:
        """``GET /api/<m>/training/status``."""
        return self._call("GET", f"/api/{model}/training/status")

    def data_quality(self, model: str, csv_path: str | None = None, dataset_id: str | None = None) -> dict[str, Any]:
        """The data-quality report training would see."""
        return self._call("POST", f"/api/{model}/data-quality", _body(csv_path=csv_path, dataset_id=dataset_id))

    def monitoring(self, model: str) -> dict[str, Any]:
        """Live score, drift and staleness of the active version."""
        return self._call("GET", f"/api/{model}/monitoring")

    # -- history and events --------------------------------------------------------------------

    def history(self, model: str, follow: bool = False, limit: int | None = None,
                event_type: str | None = None) -> Any:
        """The body ``{"events": [...]}``; with ``follow``, an iterator of event dicts: the newest ``limit``, then each new."""
        if not follow:
            return self._call("GET", f"/api/{model}/training/history", params={"limit": limit, "event_type": event_type})
        return self._follow_history(model, limit, event_type)

    def _follow_history(self, model: str, limit: int | None, event_type: str | None) -> Iterator[dict[str, Any]]:
        # Open the stream first, then read the log: nothing written in between is missed, and an event in
        # both (written after the stream started, before the read) is recognised and given once.
        response = self._open_stream(model, None)
        recent = self.history(model, limit=limit, event_type=event_type)["events"]
        yield from recent
        for event in self._events(model, response):
            if event.kind == "history" and (event_type is None or event.data.get("event_type") == event_type) \
                    and event.data not in recent:
                yield event.data

    def events(self, model: str | None = None, last_event_id: int | None = None) -> Iterator[Event]:
        """``GET /api/events``: every history event, job change and notification as it happens; reconnects by itself."""
        return self._events(model, self._open_stream(model, last_event_id))

    def _open_stream(self, model: str | None, last_event_id: int | None) -> requests.Response:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        try:
            response = self._session.get(self.base_url + "/api/events", params={"model": model} if model else None,
                                         headers=headers, stream=True, timeout=(self.timeout, STREAM_READ_TIMEOUT))
        except requests.RequestException as exc:
            raise TransportError(f"GET {self.base_url}/api/events: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _events(self, model: str | None, response: requests.Response) -> Iterator[Event]:
        last_id: int | None = None
        while True:
            try:
                with response:
                    for event in _parse_sse(response.iter_content(chunk_size=None)):
                        last_id = event.id
                        yield event
            except (requests.RequestException, OSError):
                pass  # a dropped connection: resume after the last event seen
            response = self._reconnect(model, last_id)

    def _reconnect(self, model: str | None, last_id: int | None) -> requests.Response:
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                return self._open_stream(model, last_id)
            except (TransportError, UnavailableError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    # -- versions ----------------------------------------------------------------------------

    def versions(self, model: str) -> dict[str, Any]:
        """``{"versions": [...]}``, newest first."""
        return self._call("GET", f"/api/{model}/versions")

    def version(self, model: str, version: str) -> dict[str, Any]:
        """One version record."""
        return self._call("GET", f"/api/{model}/versions/{version}")

    def feature_importance(self, model: str, version: str) -> dict[str, Any]:
        """A version's feature importance."""
        return self._call("GET", f"/api/{model}/versions/{version}/feature-importance")

    def plot(self, model: str, version: str, name: str) -> bytes:
        """A version's evaluation plot, as PNG bytes."""
        return self._call("GET", f"/api/{model}/versions/{version}/plots/{name}.png", raw=True)

    def activate(self, model: str, version: str, force: bool = False) -> dict[str, Any]:
        """Serve ``version`` (a rejected or failed one only with ``force``)."""
        return self._call("POST", f"/api/{model}/versions/{version}/activate", {"force": force})

    def rollback(self, model: str, to_version: str | None = None) -> dict[str, Any]:
        """Serve the version active before the current one (or ``to_version``)."""
        return self._call("POST", f"/api/{model}/rollback", _body(to_version=to_version))

    def promote(self, model: str, version: str) -> dict[str, Any]:
        """Serve a staged version (CONTRACT §9)."""
        return self._call("POST", f"/api/{model}/versions/{version}/promote", {})

    def reject(self, model: str, version: str) -> dict[str, Any]:
        """Drop a staged version (CONTRACT §9)."""
        return self._call("POST", f"/api/{model}/versions/{version}/reject", {})

    def compare(self, model: str, versions: list[str], evaluate_on: str = "recorded") -> dict[str, Any]:
        """Versions side by side; ``evaluate_on="current"`` re-scores them on today's data."""
        return self._call("POST", f"/api/{model}/compare", {"versions": versions, "evaluate_on": evaluate_on})

    # -- experiments -------------------------------------------------------------------------

    def experiments(self, model: str) -> dict[str, Any]:
        """``{"experiments": [...]}`` of a model."""
        return self._call("GET", f"/api/{model}/experiments")

    def experiment(self, model: str, experiment_id: str) -> dict[str, Any]:
        """One experiment with its arms."""
        return self._call("GET", f"/api/{model}/experiments/{experiment_id}")

    def start_experiment(self, model: str, name: str, versions: list[str],
                         split: list[float] | None = None) -> dict[str, Any]:
        """Start an A/B test between versions (409 ``ConflictError`` when one runs)."""
        return self._call("POST", f"/api/{model}/experiments", _body(name=name, versions=versions, split=split))

    def stop_experiment(self, model: str, experiment_id: str, promote: str | None = None) -> dict[str, Any]:
        """End an experiment by hand, promoting ``promote`` (or keeping the active version)."""
        return self._call("POST", f"/api/{model}/experiments/{experiment_id}/stop", {"promote": promote})

    # -- datasets ----------------------------------------------------------------------------

    def datasets(self) -> dict[str, Any]:
        """``{"datasets": [...]}``."""
        return self._call("GET", "/api/datasets")

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """One uploaded dataset with statistics."""
        return self._call("GET", f"/api/datasets/{dataset_id}")

    def upload_dataset(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """Upload a CSV (or .xlsx) file as a dataset to train on."""
        with open(path, "rb") as handle:
            return self._call("POST", "/api/datasets", files={"file": (Path(path).name, handle)},
                              data={"name": name} if name else None)


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields that were given (None: leave it to the server's default)."""
    return {k: v for k, v in fields.items() if v is not None}


def _error(response: requests.Response) -> APIError:
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = f"http_{response.status_code}", response.text[:200] or response.reason, {}
    return _BY_STATUS.get(response.status_code, APIError)(response.status_code, code, message, details)


def _parse_sse(chunks: Iterator[bytes]) -> Iterator[Event]:
    """Turn the bytes of an event stream into events (comment lines and ``retry:`` are skipped)."""
    buffer = b""
    event_id, kind, data = None, "message", []
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8").rstrip("\r")
            if not line:
                if data and event_id is not None:
                    yield Event(int(event_id), kind, json.loads("\n".join(data)))
                event_id, kind, data = None, "message", []
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    event_id = value
                elif name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
