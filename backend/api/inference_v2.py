"""The Open Inference Protocol (KServe v2) routes, so Triton, MLServer and KServe clients work against Refit.

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     200 when live / when every model serves (400 otherwise)
    GET  /v2/models/<m>[/versions/<v>]         name, versions, platform, inputs, outputs
    GET  /v2/models/<m>[/versions/<v>]/ready   200 when that version can answer (400 otherwise)
    POST /v2/models/<m>[/versions/<v>]/infer   tensors in, ``predict`` and ``predict_proba`` out

Errors on these routes are the protocol's own ``{"error": "<message>"}``
with the status Refit would give (400 a bad tensor, 404 an unknown model or
version, 409 a version that cannot serve, 413 too many rows, 503 nothing to
serve). Tensors are decoded by ``backend.tensors``; the answer comes from the
same runtime as every other predict route (``serving.predict_answers``).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .. import tensors
from ..errors import ArtifactError, RefitError, Unavailable, envelope, snake
from ..runtime import ModelRuntime
from ..serving import ServedModel, predict_answers
from ..state import refit, runtime
from .invocations import feature_order

bp = Blueprint("inference_v2", __name__, url_prefix="/v2")

OTHER_VERSIONS_KEPT = 4  # loaded non-active versions kept per process for per-version infer


@bp.errorhandler(RefitError)
def _refit_error(exc: RefitError):
    return jsonify({"error": exc.message}), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return jsonify({"error": exc.description or exc.name}), exc.code


@bp.get("")
def server_metadata():
    return {"name": "refit", "version": "1", "extensions": ["binary_tensor_data"]}


@bp.get("/health/live")
def live():
    return {"live": True}


@bp.get("/health/ready")
def ready():
    serving = all(rt.slot.served is not None for rt in refit().runtimes.values())
    return {"ready": serving}, 200 if serving else 400


@bp.get("/models/<model>")
@bp.get("/models/<model>/versions/<version>")
def model_metadata(model: str, version: str | None = None):
    rt = runtime(model)
    served = _served(rt, version)
    inputs = [{"name": f, "datatype": "BYTES" if f in served.categorical else "FP64", "shape": [-1]}
              for f in feature_order(rt, served)]
    outputs = [{"name": "predict", "datatype": _label_type(served), "shape": [-1]}]
    if served.classes is not None:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(served.classes)]})
    servable = [v for v, e in rt.registry.state()["versions"].items() if e["status"] == "ok"]
    return {"name": model, "versions": sorted(servable, key=lambda v: int(v[1:])),
            "platform": "onnxruntime_onnx" if served.runtime == "onnx" else "scikit-learn",
            "inputs": inputs, "outputs": outputs,
            "parameters": {"version": served.version, "runtime": served.runtime, "task": served.task}}


@bp.get("/models/<model>/ready")
@bp.get("/models/<model>/versions/<version>/ready")
def model_ready(model: str, version: str | None = None):
    rt = runtime(model)
    try:
        served = _served(rt, version)
    except (Unavailable, ArtifactError):
        return {"name": model, "ready": False}, 400
    return {"name": model, "version": served.version, "ready": True}


@bp.post("/models/<model>/infer")
@bp.post("/models/<model>/versions/<version>/infer")
def infer(model: str, version: str | None = None):
    rt = runtime(model)
    served = _served(rt, version)  # read once: the whole request is answered by this version
    decoded = tensors.read_request(request.get_data(cache=True), request.headers.get("Inference-Header-Content-Length"),
                                   refit().config.security.max_batch_rows)
    columns, ignored = tensors.feature_columns(decoded, feature_order(rt, served), served.numeric, served.categorical)
    answers = predict_answers(served, columns)
    g.model_version = served.version  # for the request log
    body: dict[str, Any] = {"model_name": model, "model_version": served.version}
    if decoded.id is not None:
        body["id"] = decoded.id
    body["outputs"] = tensors.outputs(answers, served.classes, decoded.outputs)
    body["parameters"] = {"runtime": served.runtime, **({"ignored_inputs": ignored} if ignored else {})}
    return body


@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def _unrouted(exc: HTTPException):
    """A path under /v2 that matched no route still answers in the protocol's form; any other, in Refit's envelope."""
    if request.path == "/v2" or request.path.startswith("/v2/"):
        return jsonify({"error": f"{request.method} {request.path}: {exc.description or exc.name}"}), exc.code
    response = jsonify(envelope(snake(exc.name), exc.description or exc.name))
    if exc.code == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, exc.code


def _label_type(served: ServedModel) -> str:
    if served.classes is None:
        return "FP64"
    import numpy as np

    return tensors.label_datatype(np.asarray(served.classes, dtype=object))


def _served(rt: ModelRuntime, version: str | None) -> ServedModel:
    """The active version, or another one (loaded, verified and kept by the serving slot)."""
    served = rt.slot.require()
    if version is None or version == served.version:
        return served
    return rt.slot.model_of(version)
