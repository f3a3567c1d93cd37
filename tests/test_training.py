"""Training through the real app: real scikit-learn fits in the real worker process."""
import json
import os

import pytest

from backend import create_app
from backend.evaluation import decide
from backend.files import sha256_file
from backend.scheduler import start_up
from tests.helpers import history_events, wait_job, write_config, write_samples


def train(client, **body):
    response = client.post("/api/parima/train", json=body)
    assert response.status_code == 202, response.json
    return wait_job(lambda: client.get(f"/api/parima/jobs/{response.json['job_id']}").json)


def test_first_training_registers_and_serves_v1(trained_client, tmp_path):
    versions = trained_client.get("/api/parima/versions").json["versions"]
    assert [v["version"] for v in versions] == ["v1"]
    v1 = versions[0]
    assert v1["status"] == "active" and v1["algorithm"] == "random_forest" and v1["trigger"] == "manual"
    assert v1["n_samples"] == 300 and v1["n_test_samples"] == 75  # refit on its whole window, holdout included
    assert v1["refit"] is True and v1["training_window"] == "all" and v1["trained_rows"] == {"start": 0, "end": 300}
    assert sha256_file(tmp_path / "ml_models" / "parima" / "v1" / "model.joblib") == v1["sha256"]
    metadata = json.loads((tmp_path / "ml_models" / "parima" / "v1" / "metadata.json").read_text())
    assert metadata["features"] and metadata["classes"] == [0, 1, 2, 3]
    assert {"python", "scikit-learn", "joblib"} <= set(metadata["library_versions"])
    status = trained_client.get("/api/parima/training/status").json
    assert status["active_version"] == "v1" and status["samples_since_last_training"] == 0
    assert status["total_samples"] == 300 and status["training_in_progress"] is False
    assert [e["event_type"] for e in status["recent_training_history"]] == [
        "TRAINING_STARTED", "TRAINING_COMPLETED", "MODEL_PROMOTED"]
    started, completed = status["recent_training_history"][:2]
    assert started["details"]["n_samples"] == 300 and started["details"]["trigger"] == "manual"
    assert completed["details"]["n_samples"] == 300 and completed["details"]["n_test_samples"] == 75
    assert completed["details"]["version"] == "v1" and completed["details"]["promoted"] is True
    health = trained_client.get("/health").json
    assert health["status"] == "healthy" and health["models"]["parima"]["version"] == "v1"
    models = trained_client.get("/api/models").json["models"]
    assert models[0]["active_version"] == "v1" and models[0]["total_samples"] == 300


def test_a_second_train_while_one_runs_is_409_naming_it(client, samples_csv):
    write_samples(samples_csv, 300)
    first = client.post("/api/parima/train", json={"force": True}).json["job_id"]
    second = client.post("/api/parima/train", json={"force": True})
    assert second.status_code == 409
    assert second.json["error"]["code"] == "training_in_progress"
    assert second.json["error"]["details"]["job_id"] == first
    assert client.get("/api/parima/training/status").json["current_job"]["job_id"] == first
    assert wait_job(lambda: client.get(f"/api/parima/jobs/{first}").json)["status"] == "completed"


def test_too_few_new_samples_is_skipped_unless_forced(trained_client, samples_csv, tmp_path):
    write_samples(samples_csv, 10, seed=9)
    job = train(trained_client)
    assert job["status"] == "skipped" and job["result"]["promoted"] is False
    skipped = history_events(tmp_path)[-1]
    assert skipped["event_type"] == "TRAINING_SKIPPED"
    assert skipped["details"]["n_samples"] == 10 and skipped["details"]["min_required"] == 50
    job = train(trained_client, force=True)
    assert job["status"] == "completed" and job["result"]["version"] == "v2"


def test_csv_path_is_confined_to_the_data_folder(trained_client, tmp_path):
    outside = tmp_path / "outside.csv"
    write_samples(outside, 100)
    (tmp_path / "data" / "escape.csv").symlink_to(outside)
    for path in ("../outside.csv", str(outside), "escape.csv", "missing.csv", ".", "bad\x00name.csv", "x" * 300):
        response = trained_client.post("/api/parima/train", json={"csv_path": path})
        assert response.status_code == 422 and response.json["error"]["code"] == "invalid_path", path
    write_samples(tmp_path / "data" / "extra" / "more.csv", 200, seed=5)
    job = train(trained_client, csv_path="extra/more.csv", model_type="logistic")
    assert job["status"] == "completed"
    record = trained_client.get(f"/api/parima/versions/{job['result']['version']}").json
    assert record["algorithm"] == "logistic" and record["n_rows_read"] == 200


def test_a_worse_candidate_is_rejected_and_the_old_version_serves(tmp_path):
    config = write_config(tmp_path, minImprovement=0.02)
    samples = tmp_path / "data" / "samples.csv"
    write_samples(samples, 400, seed=1)
    client = create_app(config).test_client()
    assert train(client)["result"]["version"] == "v1"
    write_samples(samples, 400, seed=2, shuffle_labels=True)  # fresh rows, labels scrambled
    job = train(client)
    assert job["status"] == "completed" and job["result"]["promoted"] is False
    versions = {v["version"]: v["status"] for v in client.get("/api/parima/versions").json["versions"]}
    assert versions == {"v1": "active", "v2": "rejected"}
    rejected = history_events(tmp_path)[-1]
    assert rejected["event_type"] == "MODEL_REJECTED"
    assert rejected["details"]["candidate"] < rejected["details"]["active"] + 0.02
    row = {k: v for k, v in write_samples(tmp_path / "x.csv", 1)[0].items() if k != "decisionLOD"}
    assert client.post("/api/parima/predict", json={"features": row}).json["model_version"] == "v1"
    # a restart keeps serving the active version, not the newest one
    assert create_app(config).test_client().post("/api/parima/predict", json={"features": row}).json["model_version"] == "v1"


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"frustumCoverage,occlusionRatio,meanVisibleDistance,deviceFPS,deviceCPULoad,decisionLOD\n", "no_rows"),
    (b"frustumCoverage,occlusionRatio,meanVisibleDistance,deviceFPS,deviceCPULoad\n" + b"0.1,0.2,3,60,0.5\n" * 30,
     "target_missing"),
    (b"frustumCoverage,occlusionRatio,meanVisibleDistance,deviceFPS,deviceCPULoad,decisionLOD\n"
     + b"0.1,0.2,3,60,0.5,1\n" * 30, "single_class"),
    (b"frustumCoverage,occlusionRatio,meanVisibleDistance,deviceFPS,deviceCPULoad,decisionLOD\n"
     + b",,,,,1\n,,,,,2\n" * 15, "no_usable_rows"),
])
def test_bad_data_fails_cleanly_and_the_active_model_stays(trained_client, tmp_path, content, problem):
    (tmp_path / "data" / "bad.csv").write_bytes(content)
    job = train(trained_client, csv_path="bad.csv")
    assert job["status"] == "failed" and job["error"]["reason"] == "data_quality"
    assert job["error"]["details"]["problem"] == problem
    failed = history_events(tmp_path)[-1]
    assert failed["event_type"] == "TRAINING_FAILED" and failed["details"]["job_id"] == job["job_id"]
    assert [v["version"] for v in trained_client.get("/api/parima/versions").json["versions"]] == ["v1"]
    assert trained_client.get("/health").json["version"] == "v1"


def test_bom_quotes_and_crlf_train(trained_client, tmp_path):
    rows = write_samples(tmp_path / "plain.csv", 120, seed=3)
    lines = ["\ufeff" + ",".join(f'"{c}"' for c in rows[0])]
    lines += [",".join(f'"{v}"' for v in row.values()) for row in rows]
    (tmp_path / "data" / "windows.csv").write_bytes("\r\n".join(lines).encode("utf-8") + b"\r\n")
    job = train(trained_client, csv_path="windows.csv")
    assert job["status"] == "completed", job


def test_cancel_a_running_job(client, samples_csv, tmp_path):
    write_samples(samples_csv, 3000)
    job_id = client.post("/api/parima/train", json={"model_type": "svm"}).json["job_id"]
    assert client.delete(f"/api/parima/jobs/{job_id}").status_code == 202
    job = wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json)
    assert job["status"] == "cancelled"
    assert client.get("/api/parima/versions").json["versions"] == []
    assert client.delete(f"/api/parima/jobs/{job_id}").status_code == 409
    assert not any((tmp_path / "ml_models" / "parima" / ".staging").glob("*"))


def test_the_scheduler_tick_skips_then_trains(config_path, samples_csv, tmp_path):
    app = create_app(config_path)
    rt = app.extensions["refit"].runtimes["parima"]
    write_samples(samples_csv, 20)
    assert rt.tick() is None
    assert history_events(tmp_path)[-1]["details"] == {
        "n_samples": 20, "min_required": 50, "total_samples": 20, "reason": "not_enough_new_samples", "trigger": "auto",
        "pid": os.getpid()}
    write_samples(samples_csv, 200, seed=3)
    job = rt.tick()
    wait_job(job.to_dict)
    assert job.trigger == "auto" and job.result["version"] == "v1"
    assert rt.served.version == "v1"


def test_start_up_training_only_without_an_active_version(config_path, samples_csv):
    write_samples(samples_csv, 100)
    rt = create_app(config_path).extensions["refit"].runtimes["parima"]
    start_up(rt)
    job = rt.runner.current
    assert job is not None and job.trigger == "startup"
    wait_job(job.to_dict)
    start_up(rt)
    assert rt.runner.current is None


def test_regression_models_use_lower_is_better_metrics(tmp_path):
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "diabetes.csv", index=False)
    config = {"models": {"sugar": {"task": "regression", "target": "target",
                                    "training": {"logFile": "./data/diabetes.csv", "modelType": "ridge", "metric": "rmse",
                                                 "minSamplesForTraining": 10}}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    client = create_app(tmp_path / "config.json").test_client()
    job_id = client.post("/api/sugar/train", json={}).json["job_id"]
    job = wait_job(lambda: client.get(f"/api/sugar/jobs/{job_id}").json)
    assert job["result"]["promoted"] and 0.3 < job["result"]["metrics"]["r2"] < 0.7
    row = frame.drop(columns="target").iloc[0].to_dict()
    answer = client.post("/api/sugar/predict", json={"features": row}).json
    assert isinstance(answer["prediction"], float) and "probabilities" not in answer


def test_the_gate_respects_direction_ties_and_min_improvement():
    assert decide("rmse", 10.0, 12.0, 20.0, 0.0, has_active=True).promoted
    assert not decide("rmse", 12.0, 10.0, 20.0, 0.0, has_active=True).promoted
    assert decide("f1_macro", 0.8, 0.8, 0.2, 0.0, has_active=True).promoted  # ties promote
    assert not decide("f1_macro", 0.81, 0.8, 0.2, 0.02, has_active=True).promoted
    assert decide("f1_macro", 0.82, 0.8, 0.2, 0.02, has_active=True).promoted
    assert not decide("accuracy", 0.5, None, 0.5, 0.0, has_active=False).promoted  # must beat the baseline
    assert decide("log_loss", 0.4, None, 1.2, 0.0, has_active=False).promoted
