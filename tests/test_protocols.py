"""The standard protocols (CONTRACT §11): MLflow's scoring protocol, the Open Inference Protocol, the columnar body."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import requests

from backend import create_app, demo
from tests.helpers import train_over_http

F = demo.FEATURES


def _rows(n=5, seed=7):
    rows = demo.rows(n, seed=seed)
    for row in rows:
        row.pop(demo.TARGET)
    return rows


def _expected(client, rows):
    return client.post("/api/parima/predict", json={"instances": rows}).json


# -- Refit's own columnar body --------------------------------------------------------------------

def test_a_columnar_body_answers_as_instances_do(trained_client):
    rows = _rows(30)
    columns = {f: [r[f] for r in rows] for f in F}
    answer = trained_client.post("/api/parima/predict", json={"columns": {**columns, "note": ["x"] * 30}}).json
    expected = _expected(trained_client, rows)
    assert answer["predictions"] == expected["predictions"] and answer["probabilities"] == expected["probabilities"]
    assert answer["ignored_features"] == ["note"] and answer["model_version"] == "v1"


@pytest.mark.parametrize("columns, status, says", [
    ({f: [0.5] for f in F[:-1]}, 422, "missing feature(s): deviceCPULoad"),
    ({**{f: [0.5] for f in F}, "deviceFPS": [60, 70]}, 422, "same number of values"),
    ({**{f: [0.5] for f in F}, "deviceFPS": [True]}, 422, "expected a number, got a boolean"),
    ({**{f: [0.5] for f in F}, "deviceFPS": ["fast"]}, 422, "expected a number"),
    ({**{f: [0.5] for f in F}, "deviceFPS": 60}, 422, "must be a list"),
    ({f: [] for f in F}, 422, "no rows"),
])
def test_a_bad_columnar_body_is_refused_naming_the_field(trained_client, columns, status, says):
    answer = trained_client.post("/api/parima/predict", json={"columns": columns})
    assert answer.status_code == status and says in json.dumps(answer.json), answer.json


def test_a_columnar_body_with_null_is_imputed_and_too_many_rows_are_413(trained_client):
    columns = {f: [None, 0.5] for f in F}
    assert trained_client.post("/api/parima/predict", json={"columns": columns}).status_code == 200
    big = {f: [0.5] * 10_001 for f in F}
    assert trained_client.post("/api/parima/predict", json={"columns": big}).status_code == 413
    both = {"columns": columns, "instances": _rows(1)}
    assert trained_client.post("/api/parima/predict", json=both).status_code == 422


# -- MLflow's scoring protocol --------------------------------------------------------------------

def test_every_mlflow_body_shape_and_csv(trained_client):
    rows = _rows(6)
    expected = _expected(trained_client, rows)["predictions"]
    matrix = [[r[f] for f in F] for r in rows]
    bodies = [
        {"dataframe_split": {"columns": F, "data": matrix}},
        {"dataframe_split": {"index": list(range(6)), "columns": list(reversed(F)), "data": [m[::-1] for m in matrix]}},
        {"dataframe_records": rows},
        {"instances": rows},
        {"instances": matrix},
        {"inputs": {f: [r[f] for r in rows] for f in F}},
        {"inputs": matrix, "params": {"ignored": True}},
    ]
    for body in bodies:
        for path in ("/invocations", "/api/parima/invocations"):
            answer = trained_client.post(path, json=body)
            assert answer.status_code == 200, (body, answer.json)
            assert answer.json == {"predictions": expected} and answer.headers["Refit-Model-Version"] == "v1"
    csv = ",".join(F) + "\r\n" + "\r\n".join(",".join(str(v) for v in m) for m in matrix) + "\r\n"
    answer = trained_client.post("/invocations", data=csv, content_type="text/csv")
    assert answer.status_code == 200 and answer.json == {"predictions": expected}


@pytest.mark.parametrize("body, content_type, status, says", [
    ({"instances": [], "inputs": []}, "application/json", 422, "exactly one of"),
    ({"records": []}, "application/json", 422, "exactly one of"),
    ({"dataframe_split": {"data": [[1, 2, 3, 4, 5]]}}, "application/json", 422, "'columns'"),
    ({"dataframe_split": {"columns": F, "data": [[1, 2, 3]]}}, "application/json", 422, "list of 5 values"),
    ({"dataframe_records": [{"deviceFPS": 60}]}, "application/json", 422, "missing feature"),
    ({"inputs": [[1, 2, 3, 4, "x"]]}, "application/json", 422, "expected a number"),
    ('{"instances": [[NaN, 1, 1, 1, 1]]}', "application/json", 400, "not valid JSON"),
    (",".join(F) + "\n1,2,3,4,forty\n", "text/csv", 422, "expected a number"),
    ("frustumCoverage\n", "text/csv", 422, "header line and at least one row"),
    ("x", "text/plain", 415, "JSON"),
])
def test_a_bad_mlflow_body_is_refused_with_the_envelope(trained_client, body, content_type, status, says):
    data = body if isinstance(body, str) else json.dumps(body)
    answer = trained_client.post("/invocations", data=data, content_type=content_type)
    assert answer.status_code == status and says in answer.json["error"]["message"] + json.dumps(
        answer.json["error"]["details"]), answer.json


def test_invocations_needs_a_model_name_when_several_are_configured(tmp_path):
    config = {"models": {name: {"target": "y", "training": {"logFile": f"./data/{name}.csv"}} for name in ("a", "b")}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    client = create_app(tmp_path / "config.json").test_client()
    answer = client.post("/invocations", json={"instances": [{"x": 1}]})
    assert answer.status_code == 404 and answer.json["error"]["code"] == "model_required"
    assert client.post("/api/a/invocations", json={"instances": [{"x": 1}]}).status_code == 503
    assert client.get("/ping").status_code == 503


# -- the Open Inference Protocol ------------------------------------------------------------------

def _tensors(rows, datatype="FP64"):
    return [{"name": f, "shape": [len(rows)], "datatype": datatype, "data": [r[f] for r in rows]} for f in F]


def test_v2_per_feature_tensors_and_one_matrix_answer_as_predict(trained_client):
    rows = _rows(4)
    expected = _expected(trained_client, rows)
    per_feature = trained_client.post("/v2/models/parima/infer", json={"id": "r1", "inputs": _tensors(rows)}).json
    assert per_feature["id"] == "r1" and per_feature["model_version"] == "v1"
    outputs = {o["name"]: o for o in per_feature["outputs"]}
    assert outputs["predict"]["data"] == expected["predictions"] and outputs["predict"]["datatype"] == "INT64"
    proba = outputs["predict_proba"]
    classes = [str(c) for c in proba["parameters"]["classes"]]
    assert proba["shape"] == [4, len(classes)] and proba["datatype"] == "FP64"
    for i, row in enumerate(expected["probabilities"]):
        assert proba["data"][i * len(classes):(i + 1) * len(classes)] == [row[c] for c in classes]
    nested = [{"name": t["name"], "shape": [4, 1], "datatype": "FP32", "data": [[v] for v in t["data"]]}
              for t in _tensors(rows)]
    assert trained_client.post("/v2/models/parima/infer", json={"inputs": nested}).json["outputs"][0]["data"] == \
        expected["predictions"]
    matrix = {"name": "anything", "shape": [4, 5], "datatype": "FP64", "data": [r[f] for r in rows for f in F]}
    answer = trained_client.post("/v2/models/parima/versions/v1/infer",
                                 json={"inputs": [matrix], "outputs": [{"name": "predict"}]}).json
    assert [o["name"] for o in answer["outputs"]] == ["predict"] and answer["outputs"][0]["data"] == expected["predictions"]


def _with(rows, name, **changes):
    return [{**t, **changes} if t["name"] == name else t for t in _tensors(rows)]


@pytest.mark.parametrize("make, status, says", [
    (lambda r: {"inputs": _with(r, "deviceFPS", datatype="BYTES", data=["a"] * 2)}, 400, "numeric feature"),
    (lambda r: {"inputs": _with(r, "deviceFPS", datatype="FP99")}, 400, "datatype"),
    (lambda r: {"inputs": _with(r, "deviceFPS", shape=[3])}, 400, "shape holds 3 values"),
    (lambda r: {"inputs": _with(r, "deviceFPS", shape=[2, 2], data=[1, 2, 3, 4])}, 400, "[n] or [n, 1]"),
    (lambda r: {"inputs": _with(r, "deviceFPS", data=[True, False])}, 400, "must be numbers"),
    (lambda r: {"inputs": _with(r, "deviceFPS", datatype="INT64", data=[60.5, 70])}, 400, "must be integers"),
    (lambda r: {"inputs": _tensors(r)[:-1]}, 400, "missing input(s) deviceCPULoad"),
    (lambda r: {"inputs": [{"name": "m", "shape": [2, 4], "datatype": "FP64", "data": [1.0] * 8}]}, 400, "[n, 5]"),
    (lambda r: {"inputs": _tensors(r), "outputs": [{"name": "logits"}]}, 400, "unknown output"),
    (lambda r: {"inputs": []}, 400, "non-empty list"),
    (lambda r: "[1, 2", 400, "not valid JSON"),
    (lambda r: '{"inputs": [{"name": "deviceFPS", "shape": [1], "datatype": "FP64", "data": [NaN]}]}', 400, "JSON"),
])
def test_v2_bad_tensors_are_400_with_the_protocol_error(trained_client, make, status, says):
    body = make(_rows(2))
    answer = trained_client.post("/v2/models/parima/infer", data=body if isinstance(body, str) else json.dumps(body))
    assert answer.status_code == status and set(answer.json) == {"error"} and says in answer.json["error"], answer.json


def test_v2_binary_tensors_nan_and_unknown_names(trained_client):
    rows = _rows(3)
    values = np.array([[r[f] for r in rows] for f in F], dtype=np.float32)
    values[3, 1] = np.nan
    inputs = [{"name": f, "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}} for f in F]
    head = json.dumps({"inputs": inputs}).encode()
    answer = trained_client.post("/v2/models/parima/infer", data=head + values.tobytes(),
                                 headers={"Inference-Header-Content-Length": str(len(head))})
    assert answer.status_code == 400 and "finite" in answer.json["error"]
    assert trained_client.post("/v2/models/nope/infer", json={}).status_code == 404
    assert trained_client.post("/v2/models/parima/versions/v9/infer", json={}).status_code == 404
    assert trained_client.get("/v2/models/parima/versions/v9").json.keys() == {"error"}
    assert trained_client.get("/v2/nothing/here").status_code == 404


def test_v2_metadata_health_and_readiness(trained_client):
    assert trained_client.get("/v2/health/live").json == {"live": True}
    assert trained_client.get("/v2/health/ready").json == {"ready": True}
    assert trained_client.get("/v2/models/parima/ready").json["ready"] is True
    meta = trained_client.get("/v2/models/parima").json
    assert meta["name"] == "parima" and meta["versions"] == ["v1"] and meta["platform"] == "onnxruntime_onnx"
    assert [i["name"] for i in meta["inputs"]] == F and [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert trained_client.get("/ping").status_code == 200


def test_predict_routes_stay_open_when_an_api_key_protects_the_rest(trained_folder, tmp_path, monkeypatch):
    shutil.copytree(trained_folder, tmp_path / "keyed")
    monkeypatch.setenv("REFIT_API_KEY", "s3cret")
    client = create_app(tmp_path / "keyed" / "config.json").test_client()
    rows = _rows(2)
    assert client.post("/invocations", json={"instances": rows}).status_code == 200
    assert client.post("/v2/models/parima/infer", json={"inputs": _tensors(rows)}).status_code == 200
    assert client.post("/api/parima/train", json={}).status_code == 401


# -- the clients themselves, against a real server ------------------------------------------------

@pytest.mark.server
def test_mlflow_and_triton_clients_work_unchanged(trained_folder, tmp_path, servers):
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient
    import tritonclient.http as triton

    shutil.copytree(trained_folder, tmp_path / "served")
    server = servers(tmp_path / "served" / "config.json")
    rows = _rows(8)
    expected = requests.post(f"{server.url}/api/parima/predict", json={"instances": rows}, timeout=10).json()

    mlflow = ScoringServerClient("127.0.0.1", server.port)
    mlflow.wait_server_ready(timeout=30)
    assert mlflow.invoke(pd.DataFrame(rows)).get_predictions(predictions_format="ndarray").tolist() == \
        expected["predictions"]
    assert mlflow.invoke(np.array([[r[f] for f in F] for r in rows])).get_predictions().iloc[:, 0].tolist() == \
        expected["predictions"]

    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("parima")
    assert client.get_server_metadata()["name"] == "refit"
    assert client.get_model_metadata("parima")["platform"] == "onnxruntime_onnx"
    wanted = [triton.InferRequestedOutput("predict", binary_data=False),
              triton.InferRequestedOutput("predict_proba", binary_data=False)]
    for binary in (False, True):  # JSON tensors, then Triton's binary-data extension
        inputs = []
        for f in F:
            tensor = triton.InferInput(f, [len(rows)], "FP64")
            tensor.set_data_from_numpy(np.array([r[f] for r in rows], dtype=np.float64), binary_data=binary)
            inputs.append(tensor)
        result = client.infer("parima", inputs, outputs=wanted)
        assert result.as_numpy("predict").tolist() == expected["predictions"]
        assert result.as_numpy("predict_proba").shape == (8, len(expected["probabilities"][0]))
    matrix = triton.InferInput("features", [len(rows), len(F)], "FP32")
    matrix.set_data_from_numpy(np.array([[r[f] for f in F] for r in rows], dtype=np.float32), binary_data=False)
    assert client.infer("parima", [matrix]).as_numpy("predict").tolist() == expected["predictions"]

    # a second version (ties promote); the first still answers per version, from its own runtime
    assert train_over_http(server, {"force": True})["result"]["version"] == "v2"
    result = client.infer("parima", [matrix], model_version="v1")
    assert result.get_response()["model_version"] == "v1" and client.is_model_ready("parima", "v1")
    with pytest.raises(triton.InferenceServerException, match="No version 'v7'"):
        client.infer("parima", [matrix], model_version="v7")
    bad = triton.InferInput("features", [len(rows), 3], "FP32")
    bad.set_data_from_numpy(np.ones((len(rows), 3), dtype=np.float32), binary_data=False)
    with pytest.raises(triton.InferenceServerException, match=r"\[n, 5\]"):
        client.infer("parima", [bad])
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'refit_predictions_total{model="parima",runtime="onnx"}' in metrics
