"""ONNX Runtime serving (CONTRACT §11): the runtime a version gets, its record, its fallbacks, the metric."""
import json
import shutil
from dataclasses import asdict

import pandas as pd
import pytest

from backend import create_app, demo
from backend.candidate import TrainingSpec, train_candidate
from backend.config import load_config
from backend.onnx_serving import NOT_CONVERTED, ONNX_ARTIFACT
from tests.helpers import wait_job, write_config, write_samples
from tests.onnx_checks import assert_served_equally

ONE = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8, "deviceFPS": 72, "deviceCPULoad": 0.3}


def _serving(config_path, runtime):
    config = json.loads(config_path.read_text())
    config["serving"] = {"runtime": runtime}
    config_path.write_text(json.dumps(config))


def _train(client, **body):
    response = client.post("/api/parima/train", json=body)
    assert response.status_code == 202, response.json
    return wait_job(lambda: client.get(f"/api/parima/jobs/{response.json['job_id']}").json, timeout=300)


def _metric(client, runtime):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'refit_predictions_total{{model="parima",runtime="{runtime}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_the_demo_forest_serves_through_onnx_runtime(trained_client, tmp_path):
    record = trained_client.get("/api/parima/versions/v1").json
    assert record["serving_runtime"] == "onnx" and record["serving_runtime_reason"] is None
    assert record["onnx"]["scope"] == "pipeline" and record["conversion_seconds"] > 0
    assert (tmp_path / "ml_models" / "parima" / "v1" / ONNX_ARTIFACT).exists()
    rows = demo.rows(40, seed=9)
    answer = trained_client.post("/api/parima/predict", json={"instances": rows}).json  # the label column is ignored
    assert len(answer["predictions"]) == 40
    assert _metric(trained_client, "onnx") == 40 and _metric(trained_client, "sklearn") == 0


def test_a_model_whose_conversion_fails_still_promotes_and_serves(client, samples_csv):
    write_samples(samples_csv, 300, seed=1)
    job = _train(client, model_type="hist_gradient_boosting")  # skl2onnx cannot convert it under this scikit-learn
    assert job["status"] == "completed" and job["result"]["promoted"], job
    record = client.get("/api/parima/versions/v1").json
    assert record["serving_runtime"] == "sklearn"
    assert record["serving_runtime_reason"].startswith("ONNX conversion not used: pipeline:")
    assert all(not a["ok"] for a in record["onnx"]["attempts"])
    assert client.post("/api/parima/predict", json={"features": ONE}).status_code == 200
    assert _metric(client, "sklearn") == 1


def test_runtime_onnx_fails_the_promotion_when_the_conversion_fails(config_path, samples_csv):
    _serving(config_path, "onnx")
    write_samples(samples_csv, 300, seed=1)
    client = create_app(config_path).test_client()
    job = _train(client, model_type="hist_gradient_boosting")
    assert job["status"] == "failed" and job["error"]["reason"] == "conversion_failed", job
    assert client.get("/api/parima/versions").json["versions"] == []
    assert client.post("/api/parima/predict", json={"features": ONE}).status_code == 503


def test_runtime_sklearn_does_not_convert(config_path, samples_csv, tmp_path):
    _serving(config_path, "sklearn")
    write_samples(samples_csv, 300, seed=1)
    client = create_app(config_path).test_client()
    assert _train(client)["status"] == "completed"
    record = client.get("/api/parima/versions/v1").json
    assert record["serving_runtime"] == "sklearn" and record["serving_runtime_reason"] == 'serving.runtime is "sklearn"'
    assert record["conversion_seconds"] is None and not (tmp_path / "ml_models" / "parima" / "v1" / ONNX_ARTIFACT).exists()


def test_onnx_and_sklearn_give_the_same_answers(trained_folder, tmp_path):
    rows = demo.rows(200, seed=11)
    answers = {}
    for runtime in ("auto", "sklearn"):
        folder = tmp_path / runtime
        shutil.copytree(trained_folder, folder)
        _serving(folder / "config.json", runtime)
        client = create_app(folder / "config.json").test_client()
        assert client.get("/api/parima/versions/v1").json["serving_runtime"] == ("onnx" if runtime == "auto" else "sklearn")
        answers[runtime] = client.post("/api/parima/predict", json={"instances": rows}).json
    assert answers["auto"]["predictions"] == answers["sklearn"]["predictions"]
    for onnx, sklearn in zip(answers["auto"]["probabilities"], answers["sklearn"]["probabilities"]):
        assert onnx.keys() == sklearn.keys() and all(abs(onnx[k] - sklearn[k]) <= 1e-4 for k in onnx)


def test_a_version_trained_before_onnx_conversion_serves_with_sklearn(trained_folder, tmp_path):
    shutil.copytree(trained_folder, tmp_path / "old")
    version = tmp_path / "old" / "ml_models" / "parima" / "v1"
    metadata = json.loads((version / "metadata.json").read_text())
    for key in ("serving_runtime", "serving_runtime_reason", "conversion_seconds", "onnx"):
        metadata.pop(key)
    (version / "metadata.json").write_text(json.dumps(metadata))
    (version / ONNX_ARTIFACT).unlink()
    client = create_app(tmp_path / "old" / "config.json").test_client()
    assert client.post("/api/parima/predict", json={"features": ONE}).status_code == 200
    record = client.get("/api/parima/versions/v1").json
    assert record["serving_runtime"] == "sklearn" and record["serving_runtime_reason"] == NOT_CONVERTED


def test_a_tampered_onnx_file_is_not_served(trained_folder, tmp_path):
    shutil.copytree(trained_folder, tmp_path / "copy")
    onnx = tmp_path / "copy" / "ml_models" / "parima" / "v1" / ONNX_ARTIFACT
    onnx.write_bytes(onnx.read_bytes()[:-10])
    client = create_app(tmp_path / "copy" / "config.json").test_client()
    assert client.post("/api/parima/predict", json={"features": ONE}).status_code == 200  # scikit-learn answers
    record = client.get("/api/parima/versions/v1").json
    assert record["status"] == "active" and record["serving_runtime"] == "sklearn"
    assert "sha256" in record["serving_runtime_reason"]
    assert _metric(client, "sklearn") == 1 and _metric(client, "onnx") == 0


@pytest.mark.parametrize("algorithm", ["logistic", "random_forest"])
def test_text_features_convert_the_estimator_after_sklearn_preprocessing(tmp_path, algorithm):
    rows = demo.rows(400, seed=3)
    frame = pd.DataFrame(rows)
    frame["device"] = [["quest", "pico", "vision", None][i % 4] for i in range(len(frame))]
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "mixed.csv", index=False)
    config = write_config(tmp_path, logFile="./data/mixed.csv", modelType=algorithm, plots=False)
    model = load_config(config).models["parima"]
    spec = TrainingSpec(model="parima", csv_path=str(tmp_path / "data" / "mixed.csv"), limit_bytes=None,
                        target=demo.TARGET, features=None, task="classification", options=model.training.options,
                        staging_dir=str(tmp_path / "staging"))
    result = asdict(train_candidate(spec, lambda *message: None))
    assert result["categorical_features"] == ["device"]
    assert assert_served_equally(result, tmp_path / "staging", frame.drop(columns=demo.TARGET)) == "onnx"
    assert result["onnx"]["scope"] == "estimator"
    assert result["onnx"]["attempts"][0]["scope"] == "pipeline" and not result["onnx"]["attempts"][0]["ok"]
