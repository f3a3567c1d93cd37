"""Training jobs end to end in one process: time budgets, failures after the child, records, request options."""
import json
import time

from tests.helpers import history_events, wait_job, write_samples


def train(client, **body):
    response = client.post("/api/parima/train", json=body)
    assert response.status_code == 202, response.json
    return wait_job(lambda: client.get(f"/api/parima/jobs/{response.json['job_id']}").json)


def runtime_of(client):
    return client.application.extensions["refit"].runtimes["parima"]


def test_the_timeout_bounds_the_whole_job_not_only_the_fit(trained_client, samples_csv, tmp_path):
    """A job whose child finished in time but whose decision comes too late fails with 'timeout' and commits nothing."""
    rt = runtime_of(trained_client)

    def clock():  # an injected clock: the job's budget runs out just after the child has returned
        job = rt.runner.current
        return time.monotonic() + (10_000 if job is not None and job.stage == "deciding" else 0)

    rt.clock = clock
    write_samples(samples_csv, 100, seed=5)
    job = train(trained_client, force=True, timeoutSeconds=60)
    assert job["status"] == "failed" and job["error"]["reason"] == "timeout", job
    assert [v["version"] for v in trained_client.get("/api/parima/versions").json["versions"]] == ["v1"]
    assert trained_client.get("/health").json["models"]["parima"]["version"] == "v1"
    failed = [e for e in history_events(tmp_path) if e["details"].get("job_id") == job["job_id"]]
    assert [e["event_type"] for e in failed] == ["TRAINING_STARTED", "TRAINING_FAILED"]
    assert failed[-1]["details"]["reason"] == "timeout" and "60 s" in failed[-1]["details"]["error"]


def test_a_failure_after_the_child_returned_still_ends_the_job_with_one_failed_event(client, samples_csv, tmp_path):
    write_samples(samples_csv, 300, seed=1)
    models = tmp_path / "ml_models" / "parima"
    models.mkdir(parents=True, exist_ok=True)
    (models / "v1").write_text("in the way")  # the registry cannot move the staged artifact in: an OSError
    job = train(client, force=True)
    assert job["status"] == "failed" and job["error"]["reason"] == "error", job
    events = [e for e in history_events(tmp_path) if e["details"].get("job_id") == job["job_id"]]
    assert [e["event_type"] for e in events] == ["TRAINING_STARTED", "TRAINING_FAILED"]
    notes = client.get("/api/notifications?level=error").json["notifications"]
    assert notes and notes[-1]["event_type"] == "TRAINING_FAILED" and notes[-1]["details"]["job_id"] == job["job_id"]
    assert client.get("/health").json["models"]["parima"]["model_loaded"] is False


def test_the_reason_the_active_version_could_not_be_scored_is_recorded(trained_client, samples_csv, tmp_path):
    (tmp_path / "ml_models" / "parima" / "v1" / "model.joblib").write_bytes(b"damaged after loading")
    write_samples(samples_csv, 100, seed=6)
    job = train(trained_client, force=True)
    assert job["status"] == "completed", job
    record = trained_client.get(f"/api/parima/versions/{job['result']['version']}").json
    assert record["promotion"]["active_score"] is None
    assert "sha256" in record["promotion"]["active_score_error"]
    promoted = [e for e in history_events(tmp_path) if e["event_type"] == "MODEL_PROMOTED"][-1]
    assert "sha256" in promoted["details"]["active_score_error"]


def test_train_takes_config_names_and_the_guides_names(trained_client, samples_csv, tmp_path):
    job = train(trained_client, force=True, modelType="logistic", testSize=0.3, preprocessing={"scaling": "minmax"})
    record = trained_client.get(f"/api/parima/versions/{job['result']['version']}").json
    assert record["algorithm"] == "logistic" and record["n_test_samples"] == 90
    assert record["options"]["preprocessing"]["scaling"] == "minmax"
    assert record["options"]["preprocessing"]["missing_values"] == "median"  # untouched keys keep the config's value
    job = train(trained_client, force=True, model_type="knn", test_size=0.2)
    assert trained_client.get(f"/api/parima/versions/{job['result']['version']}").json["algorithm"] == "knn"
    both = trained_client.post("/api/parima/train", json={"modelType": "svm", "model_type": "knn"})
    assert both.status_code == 422 and "model_type" in both.json["error"]["details"]["fields"]
    unknown = trained_client.post("/api/parima/train", json={"modelType": "quantum"})
    assert unknown.status_code == 422 and unknown.json["error"]["code"] == "invalid_model_type"


def test_a_relative_csv_path_is_found_from_the_config_folder_then_the_data_folder(trained_client, tmp_path):
    custom = tmp_path / "data" / "training_logs" / "custom_data.csv"
    write_samples(custom, 200, seed=3)
    job = train(trained_client, csv_path="./data/training_logs/custom_data.csv")  # the PARIMA guide's own example
    assert job["status"] == "completed", job
    job = train(trained_client, csv_path="training_logs/custom_data.csv")  # relative to the data folder
    assert job["status"] == "completed", job
    (tmp_path / "outside.csv").write_text((custom).read_text())
    for path in ("./outside.csv", "../outside.csv", "data/../outside.csv", str(tmp_path / "outside.csv")):
        answer = trained_client.post("/api/parima/train", json={"csv_path": path})
        assert answer.status_code == 422 and answer.json["error"]["code"] == "invalid_path", path


def test_unknown_and_malformed_dataset_ids_are_404(client):
    for dataset_id in ("nope", "0123456789ab", "x" * 300):
        answer = client.get(f"/api/datasets/{dataset_id}")
        assert answer.status_code == 404 and answer.json["error"]["code"] == "dataset_not_found", dataset_id


def test_lifecycle_messages_read_as_sentences(trained_client, samples_csv, tmp_path):
    write_samples(samples_csv, 60, seed=8)
    rejected = train(trained_client, force=True, minImprovement=1.0)  # unseen rows, and no candidate gains 1.0
    assert rejected["result"] == {**rejected["result"], "version": "v2", "promoted": False}
    assert trained_client.post("/api/parima/versions/v2/activate", json={"force": True}).status_code == 200
    assert trained_client.post("/api/parima/rollback", json={}).status_code == 200
    messages = [n["message"] for n in trained_client.get("/api/notifications").json["notifications"]]
    assert "Rolled back from v2 to v1; v1 now serves" in messages
    assert "Version v2 activated and now serving (it replaces v1)" in messages


def test_job_records_carry_the_options_they_ran_with(trained_client, tmp_path):
    job = train(trained_client, force=True, modelType="logistic")
    saved = json.loads((tmp_path / "ml_models" / "parima" / "jobs" / f"{job['job_id']}.json").read_text())
    assert saved["options"]["training"]["model_type"] == "logistic"
    assert saved["options"]["overrides"] == ["model_type"] and saved["options"]["force"] is True
