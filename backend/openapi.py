"""The OpenAPI 3 document of the running server, built by apispec from the request schemas we validate with.

Model names are an enum of the configured models, so a client generator
(or a fuzzer) speaks to real models. Every error response is the one
envelope of errors.py.
"""
from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from . import responses, schemas
from .config import Config
from .datasets import DATASET_ID
from .predictionlog import PREDICTION_ID
from .registry import VERSION_ID

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "details"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}}}}
OBJECT = {"type": "object"}
V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
ROW = {"type": "object", "additionalProperties": True}


def _json(schema: Any) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _operation(summary: str, ok: int = 200, body: Any = None, query: Any = None, ok_type: str = "application/json",
               required: bool = False, tag: str = "models", returns: str | None = None) -> dict[str, Any]:
    """One operation; ``returns`` names its success body in ``responses.SCHEMAS``."""
    answer = responses.ref(returns) if returns else OBJECT
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {str(ok): {"description": "success", "content": {
            ok_type: {"schema": answer if ok_type == "application/json" else {"type": "string"}}}},
                      "default": {"description": "an error", **_json({"$ref": "#/components/schemas/Error"})}},
    }
    if tag == "open inference protocol":  # its own error body, as the protocol defines it
        operation["responses"]["default"] = {"description": "an error", **_json({"$ref": "#/components/schemas/V2Error"})}
    if body is not None:
        operation["requestBody"] = {"required": required, **_json(body)}
    if query is not None:
        operation["parameters"] = [{"in": "query", "schema": query}]
    return operation


def build(config: Config) -> dict[str, Any]:
    """Return the OpenAPI document for a server running ``config``."""
    spec = APISpec(title="Refit", version="1.0.0", openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
                   info={"description": "A self-retraining scikit-learn model server."},
                   security=[{"bearer": []}, {"apiKey": []}, {}])  # the key is optional: only changes need it
    spec.components.schema("Error", ERROR)
    spec.components.schema("V2Error", V2_ERROR)
    for name, answer in responses.SCHEMAS.items():
        spec.components.schema(name, answer)
    # Swagger UI's "Authorize": the key of security.apiKeyEnv, needed by every POST/PUT/DELETE but predict
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    for name, schema in [("TrainRequest", schemas.TrainRequest), ("ActivateRequest", schemas.ActivateRequest),
                         ("RollbackRequest", schemas.RollbackRequest), ("CompareRequest", schemas.CompareRequest),
                         ("TrainAllRequest", schemas.TrainAllRequest), ("DataQualityRequest", schemas.DataQualityRequest),
                         ("ExperimentRequest", schemas.ExperimentRequest),
                         ("StopExperimentRequest", schemas.StopExperimentRequest)]:
        spec.components.schema(name, schema=schema)
    model = {"name": "model", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(config.models)}}
    version = {"name": "version", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": VERSION_ID.pattern}}
    job = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{12}$"}}
    dataset = {"name": "dataset_id", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": DATASET_ID.pattern}}
    plot = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z_]{1,40}$"}}
    experiment = {"name": "experiment_id", "in": "path", "required": True,
                  "schema": {"type": "string", "pattern": "^e[1-9][0-9]{0,8}$"}}
    prediction = {"name": "prediction_id", "in": "path", "required": True,
                  "schema": {"type": "string", "pattern": PREDICTION_ID.pattern}}
    max_rows = config.security.max_batch_rows
    predict_body = {"type": "object", "properties": {
        "features": ROW, "instances": {"type": "array", "items": ROW, "minItems": 1, "maxItems": max_rows},
        "columns": {"type": "object", "additionalProperties": {"type": "array", "minItems": 1, "maxItems": max_rows}},
        "version": {"type": "string", "pattern": VERSION_ID.pattern},
        "routing_key": {"type": "string", "maxLength": 256}, "user_id": {"type": "string", "maxLength": 256}}}
    feedback_body = {"type": "object", "required": ["feedback"], "properties": {"feedback": {
        "type": "array", "minItems": 1, "maxItems": max_rows, "items": {
            "type": "object", "required": ["prediction_id", "label"], "additionalProperties": False,
            "properties": {"prediction_id": {"type": "string"}, "label": {"anyOf": [
                {"type": "string"}, {"type": "number"}, {"type": "boolean"}]}}}}}}
    mlflow_body = {"type": "object", "properties": {
        "dataframe_split": {"type": "object", "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                                                            "data": {"type": "array", "items": {"type": "array"}}}},
        "dataframe_records": {"type": "array", "items": ROW}, "instances": {}, "inputs": {}, "params": OBJECT}}
    tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string"}, "data": {"type": "array"}, "parameters": OBJECT}}
    infer_body = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "inputs": {"type": "array", "items": tensor, "minItems": 1},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "parameters": OBJECT}}
    v2 = "open inference protocol"
    samples_body = {"type": "object", "required": ["samples"], "properties": {
        "samples": {"type": "array", "items": ROW, "minItems": 1, "maxItems": max_rows}}}
    upload = {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, "name": {"type": "string"}}}}}}

    paths: list[tuple[str, list[dict], dict[str, dict]]] = [
        ("/health", [], {"get": _operation("Health of the process and its models", tag="operations", returns="Health")}),
        ("/ready", [], {"get": _operation("Whether every model with data serves a verified version", tag="operations",
                                          returns="Ready")}),
        ("/metrics", [], {"get": _operation("Prometheus metrics", ok_type="text/plain", tag="operations")}),
        ("/api/models", [], {"get": _operation("Configured models", returns="ModelList")}),
        ("/api/models/train", [], {"post": _operation("Train every model", 202, "TrainAllRequest", returns="TrainAll")}),
        ("/api/notifications", [], {"get": _operation("Notifications", query=schemas.NotificationsQuery,
                                                      tag="operations", returns="Notifications")}),
        ("/api/events", [], {"get": {**_operation("Server-Sent Events: history events, job changes, notifications",
                                                  ok_type="text/event-stream", tag="operations"),
                                     "parameters": [{"name": "model", "in": "query", "schema": {"type": "string"}},
                                                    {"name": "Last-Event-ID", "in": "header",
                                                     "schema": {"type": "integer", "minimum": 0}}]}}),
        ("/api/datasets", [], {"get": _operation("Uploaded datasets", tag="datasets"),
                               "post": {**_operation("Upload a CSV dataset", 201, tag="datasets"), "requestBody": upload}}),
        ("/api/datasets/{dataset_id}", [dataset], {"get": _operation("A dataset with statistics", tag="datasets")}),
        ("/api/{model}/predict", [model], {"post": _operation("Predict one row or a batch", body=predict_body,
                                                             required=True, returns="Prediction")}),
        ("/api/{model}/samples", [model], {"post": _operation("Add labelled samples", 201, samples_body, required=True,
                                                             returns="SamplesAccepted")}),
        ("/api/{model}/train", [model], {"post": _operation("Start a training job", 202, "TrainRequest",
                                                           returns="TrainingStarted")}),
        ("/api/{model}/data-quality", [model], {"post": _operation("Data-quality report", body="DataQualityRequest")}),
        ("/api/{model}/training/status", [model], {"get": _operation("Training status", returns="TrainingStatus")}),
        ("/api/{model}/monitoring", [model], {"get": _operation("Live score, drift and staleness", returns="Monitoring")}),
        ("/api/{model}/training/history", [model], {"get": _operation("History events", query=schemas.HistoryQuery,
                                                                      returns="History")}),
        ("/api/{model}/jobs", [model], {"get": _operation("Jobs", query=schemas.JobsQuery, returns="Jobs")}),
        ("/api/{model}/jobs/{job_id}", [model, job], {"get": _operation("A job", returns="Job"),
                                                      "delete": _operation("Cancel a job", 202, returns="Job")}),
        ("/api/{model}/versions", [model], {"get": _operation("Versions, newest first", returns="Versions")}),
        ("/api/{model}/versions/{version}", [model, version], {"get": _operation("A version", returns="Version")}),
        ("/api/{model}/versions/{version}/feature-importance", [model, version],
         {"get": _operation("Feature importance of a version")}),
        ("/api/{model}/versions/{version}/plots/{name}.png", [model, version, plot],
         {"get": _operation("An evaluation plot", ok_type="image/png")}),
        ("/api/{model}/versions/{version}/activate", [model, version],
         {"post": _operation("Serve a version", body="ActivateRequest", returns="Switch")}),
        ("/api/{model}/versions/{version}/promote", [model, version],
         {"post": _operation("Serve a staged version", tag="rollout", returns="Switch")}),
        ("/api/{model}/versions/{version}/reject", [model, version],
         {"post": _operation("Drop a staged version", tag="rollout")}),
        ("/api/{model}/experiments", [model], {
            "get": _operation("Experiments, newest first", tag="rollout"),
            "post": _operation("Start an experiment", 201, "ExperimentRequest", required=True, tag="rollout")}),
        ("/api/{model}/experiments/{experiment_id}", [model, experiment],
         {"get": _operation("An experiment with its arms", tag="rollout")}),
        ("/api/{model}/experiments/{experiment_id}/stop", [model, experiment],
         {"post": _operation("End an experiment by hand", body="StopExperimentRequest", tag="rollout")}),
        ("/api/{model}/feedback", [model], {"post": _operation("Labels for logged predictions", 201, feedback_body,
                                                              required=True, tag="rollout")}),
        ("/api/{model}/predictions/{prediction_id}", [model, prediction],
         {"get": _operation("A logged prediction", tag="rollout")}),
        ("/api/{model}/rollback", [model], {"post": _operation("Serve the previous version", body="RollbackRequest",
                                                              returns="Switch")}),
        ("/api/{model}/compare", [model], {"post": _operation("Compare versions", body="CompareRequest", required=True,
                                                             returns="Comparison")}),
        ("/ping", [], {"get": _operation("200 while every model serves (MLflow's scoring protocol)", tag="mlflow")}),
        ("/invocations", [], {"post": _operation("MLflow scoring, when one model is configured", body=mlflow_body,
                                                 required=True, tag="mlflow")}),
        ("/api/{model}/invocations", [model], {"post": _operation("MLflow scoring", body=mlflow_body, required=True,
                                                                  tag="mlflow")}),
        ("/v2", [], {"get": _operation("Server metadata", tag=v2)}),
        ("/v2/health/live", [], {"get": _operation("Live", tag=v2)}),
        ("/v2/health/ready", [], {"get": _operation("Ready when every model serves", tag=v2)}),
        ("/v2/models/{model}", [model], {"get": _operation("Model metadata", tag=v2)}),
        ("/v2/models/{model}/versions/{version}", [model, version], {"get": _operation("Version metadata", tag=v2)}),
        ("/v2/models/{model}/ready", [model], {"get": _operation("Model ready", tag=v2)}),
        ("/v2/models/{model}/versions/{version}/ready", [model, version], {"get": _operation("Version ready", tag=v2)}),
        ("/v2/models/{model}/infer", [model], {"post": _operation("Infer", body=infer_body, required=True, tag=v2)}),
        ("/v2/models/{model}/versions/{version}/infer", [model, version],
         {"post": _operation("Infer with a version", body=infer_body, required=True, tag=v2)}),
    ]
    for path, parameters, operations in paths:
        spec.path(path=path, parameters=parameters, operations=operations)
    return spec.to_dict()
