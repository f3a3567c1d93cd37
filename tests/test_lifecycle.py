"""Model lifecycle: activate, roll back, integrity, retention, compare, notifications, train-all."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend import create_app
from tests.helpers import history_events, wait_job, write_config, write_samples

ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.3}


def train(client, model="parima", **body):
    response = client.post(f"/api/{model}/train", json=body)
    assert response.status_code == 202, response.json
    return wait_job(lambda: client.get(f"/api/{model}/jobs/{response.json['job_id']}").json)


def version_of(client):
    return client.post("/api/parima/predict", json={"features": ROW}).json.get("model_version")


def statuses(client):
    return {v["version"]: v["status"] for v in client.get("/api/parima/versions").json["versions"]}


def test_rollback_and_activate_switch_versions_and_survive_a_restart(trained_client, config_path, tmp_path):
    assert train(trained_client, force=True)["result"]["promoted"]  # same rows, same forest: a tie promotes
    assert version_of(trained_client) == "v2"
    answer = trained_client.post("/api/parima/rollback")
    assert answer.status_code == 200
    assert answer.json == {"model": "parima", "active_version": "v1", "previous_version": "v2"}
    assert version_of(trained_client) == "v1"
    assert statuses(trained_client) == {"v2": "inactive", "v1": "active"}
    assert history_events(tmp_path)[-1]["event_type"] == "MODEL_ROLLED_BACK"
    assert version_of(create_app(config_path).test_client()) == "v1"  # the choice survives a restart

    nothing_before = trained_client.post("/api/parima/rollback")
    assert nothing_before.status_code == 409 and nothing_before.json["error"]["code"] == "no_previous_version"
    answer = trained_client.post("/api/parima/versions/v2/activate")
    assert answer.json == {"model": "parima", "active_version": "v2", "previous_version": "v1"}
    assert history_events(tmp_path)[-1]["event_type"] == "MODEL_ACTIVATED"
    assert trained_client.post("/api/parima/rollback", json={"to_version": "v1"}).json["active_version"] == "v1"
    assert trained_client.post("/api/parima/versions/v7/activate").status_code == 404
    assert trained_client.post("/api/parima/rollback", json={"to_version": "v9"}).status_code == 404


def test_a_rejected_version_is_activated_only_with_force(tmp_path):
    config = write_config(tmp_path, minImprovement=0.5)
    write_samples(tmp_path / "data" / "samples.csv", 300, seed=1)
    client = create_app(config).test_client()
    train(client)
    write_samples(tmp_path / "data" / "samples.csv", 100, seed=2)  # rows v1 never saw, for a fair comparison
    assert train(client, force=True)["result"]["promoted"] is False
    refused = client.post("/api/parima/versions/v2/activate")
    assert refused.status_code == 409 and refused.json["error"]["code"] == "version_rejected"
    assert version_of(client) == "v1"
    assert client.post("/api/parima/versions/v2/activate", json={"force": True}).status_code == 200
    assert version_of(client) == "v2" and statuses(client) == {"v2": "active", "v1": "inactive"}
    assert history_events(tmp_path)[-1]["details"]["forced"] is True


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_active_artifact_is_never_loaded(trained_client, config_path, tmp_path, damage):
    train(trained_client, force=True)
    artifact = tmp_path / "ml_models" / "parima" / "v2" / "model.joblib"
    data = bytearray(artifact.read_bytes())
    if damage == "truncate":
        artifact.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
    client = create_app(config_path).test_client()  # a restart
    assert version_of(client) == "v1"
    assert statuses(client) == {"v2": "failed", "v1": "active"}
    assert "sha256" in client.get("/api/parima/versions/v2").json["status_reason"]
    failed = [e for e in history_events(tmp_path) if e["event_type"] == "MODEL_LOAD_FAILED"]
    assert failed and failed[-1]["details"]["version"] == "v2"
    errors = client.get("/api/notifications?level=error").json["notifications"]
    assert errors[-1]["event_type"] == "MODEL_LOAD_FAILED" and errors[-1]["version"] == "v2"
    refused = client.post("/api/parima/versions/v2/activate", json={"force": True})
    assert refused.status_code == 409 and refused.json["error"]["code"] == "artifact_invalid"


def test_with_every_artifact_gone_the_server_starts_degraded(trained_client, config_path, tmp_path):
    train(trained_client, force=True)
    for artifact in (tmp_path / "ml_models" / "parima").glob("v*/model.joblib"):
        artifact.unlink()
    client = create_app(config_path).test_client()
    response = client.post("/api/parima/predict", json={"features": ROW})
    assert response.status_code == 503 and response.json["error"]["code"] == "no_loadable_version"
    health = client.get("/health").json
    assert health["status"] == "degraded" and health["model_loaded"] is False


def test_a_pickle_that_does_not_match_its_sha256_is_never_unpickled(trained_client, config_path, tmp_path):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "ml_models" / "parima" / "v1" / "model.joblib").write_bytes(pickle.dumps(Exploit()))
    client = create_app(config_path).test_client()
    assert client.post("/api/parima/predict", json={"features": ROW}).status_code == 503
    assert not marker.exists()


def test_retention_prunes_old_artifacts_but_never_active_or_previous(tmp_path):
    config = write_config(tmp_path, keepVersions=2)
    write_samples(tmp_path / "data" / "samples.csv", 200, seed=1)
    client = create_app(config).test_client()
    train(client)
    train(client, force=True)
    client.post("/api/parima/rollback")  # v1 serves again, v2 stays as the newer one
    train(client, force=True)  # v3 promoted; v1 is now "the one before"
    assert statuses(client) == {"v3": "active", "v2": "inactive", "v1": "inactive"}
    train(client, force=True)  # v4; keep v4 and v3, prune the rest
    assert statuses(client) == {"v4": "active", "v3": "inactive", "v2": "pruned", "v1": "pruned"}
    models = tmp_path / "ml_models" / "parima"
    assert not (models / "v1" / "model.joblib").exists() and (models / "v1" / "metadata.json").exists()
    assert {e["details"]["version"] for e in history_events(tmp_path) if e["event_type"] == "MODEL_PRUNED"} == {"v1", "v2"}
    assert client.get("/api/parima/versions/v1").json["model_path"] is None
    assert client.post("/api/parima/versions/v1/activate").json["error"]["code"] == "version_pruned"
    assert client.post("/api/parima/rollback").json["active_version"] == "v3"


def test_compare_recorded_and_on_current_data(tmp_path):
    config = write_config(tmp_path)
    samples = tmp_path / "data" / "samples.csv"
    write_samples(samples, 300, seed=1)
    client = create_app(config).test_client()
    train(client)
    train(client, force=True, model_type="logistic")
    recorded = client.post("/api/parima/compare", json={"versions": ["v1", "v2"]}).json
    assert [v["version"] for v in recorded["versions"]] == ["v1", "v2"] and "current" not in recorded
    assert recorded["versions"][1]["algorithm"] == "logistic"
    write_samples(samples, 200, seed=8)
    current = client.post("/api/parima/compare", json={"versions": ["v1", "v2"], "evaluate_on": "current"}).json["current"]
    assert current["n_rows"] == 500 and current["n_test_samples"] == 125 and current["metric"] == "f1_macro"
    scores = {v: s["f1_macro"] for v, s in current["scores"].items()}
    assert current["best"] == max(scores, key=scores.get)
    assert client.post("/api/parima/compare", json={"versions": ["v1", "v8"]}).status_code == 404
    assert client.post("/api/parima/compare", json={"versions": []}).status_code == 422


def test_train_all_starts_one_job_per_model_and_a_failure_stops_none(tmp_path):
    config_path = write_config(tmp_path)
    doc = json.loads(config_path.read_text())
    doc["models"]["empty"] = {"target": "y", "training": {"logFile": "./data/empty.csv"}}
    config_path.write_text(json.dumps(doc))
    write_samples(tmp_path / "data" / "samples.csv", 200, seed=1)
    client = create_app(config_path).test_client()
    answer = client.post("/api/models/train", json={"force": True})
    assert answer.status_code == 202 and set(answer.json["jobs"]) == {"parima", "empty"}
    jobs = {m: wait_job(lambda m=m: client.get(f"/api/{m}/jobs/{answer.json['jobs'][m]['job_id']}").json)
            for m in ("parima", "empty")}
    assert jobs["parima"]["status"] == "completed" and jobs["empty"]["status"] == "failed"
    assert jobs["empty"]["error"]["reason"] == "data_quality"
    # a job is seen to end only once its model is free again, so a second round starts both at once
    again = client.post("/api/models/train", json={"force": True})
    assert again.status_code == 202 and set(again.json["jobs"]) == {"parima", "empty"}, again.json
    new_ids = {m: j.get("job_id") for m, j in again.json["jobs"].items()}
    assert all(new_ids[m] and new_ids[m] != answer.json["jobs"][m]["job_id"] for m in new_ids), again.json
    for m, job_id in new_ids.items():  # leave no training running behind the test
        wait_job(lambda m=m, job_id=job_id: client.get(f"/api/{m}/jobs/{job_id}").json)


def test_notifications_follow_outcomes_and_filter(trained_client, tmp_path):
    (tmp_path / "data" / "bad.csv").write_text("")
    train(trained_client, csv_path="bad.csv")
    notes = trained_client.get("/api/notifications").json["notifications"]
    assert [(n["level"], n["event_type"]) for n in notes] == [("success", "MODEL_PROMOTED"), ("error", "TRAINING_FAILED")]
    assert set(notes[0]) == {"id", "timestamp", "level", "model", "version", "event_type", "message", "details",
                             "active_version"}
    assert notes[0]["version"] == "v1" and notes[1]["id"] > notes[0]["id"]
    assert notes[1]["active_version"] == "v1"  # a failure says which version still serves
    since = trained_client.get(f"/api/notifications?since={notes[0]['id']}").json["notifications"]
    assert [n["event_type"] for n in since] == ["TRAINING_FAILED"]
    assert trained_client.get("/api/notifications?level=warning").json["notifications"] == []
    assert trained_client.get("/api/notifications?level=loud").status_code == 422


class Receiver:
    """A real HTTP receiver on loopback that fails its first ``failures`` posts, or never answers."""

    def __init__(self, failures=0, hang=False):
        self.bodies, self.attempts = [], 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.attempts += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hang:
                    threading.Event().wait(3)
                    return
                if receiver.attempts <= failures:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def webhook_app(tmp_path, url):
    config = write_config(tmp_path)
    doc = json.loads(config.read_text())
    doc["notifications"] = {"webhookUrl": url, "webhookTimeoutSeconds": 0.5, "webhookAttempts": 4}
    config.write_text(json.dumps(doc))
    write_samples(tmp_path / "data" / "samples.csv", 200, seed=1)
    return create_app(config)


def test_webhook_retries_until_the_receiver_accepts(tmp_path):
    receiver = Receiver(failures=2)
    try:
        app = webhook_app(tmp_path, receiver.url)
        client = app.test_client()
        train(client)
        assert app.extensions["refit"].notifier.drain(timeout=30)
        assert receiver.attempts == 3
        assert [b["event_type"] for b in receiver.bodies] == ["MODEL_PROMOTED"]
        assert receiver.bodies[0]["level"] == "success" and receiver.bodies[0]["model"] == "parima"
    finally:
        receiver.close()


def test_a_receiver_that_never_answers_does_not_hold_up_training(tmp_path):
    receiver = Receiver(hang=True)
    try:
        app = webhook_app(tmp_path, receiver.url)
        client = app.test_client()
        job = train(client)
        assert job["status"] == "completed"
        notifier = app.extensions["refit"].notifier
        assert notifier.pending() == 1  # still retrying in the background, training did not wait
        assert notifier.drain(timeout=30)
        assert receiver.attempts == 4 and receiver.bodies == []
    finally:
        receiver.close()


def test_a_version_trained_under_another_scikit_learn_is_served_with_a_warning(trained_client, config_path, tmp_path):
    metadata = tmp_path / "ml_models" / "parima" / "v1" / "metadata.json"  # the full record (registry.py)
    record = json.loads(metadata.read_text())
    record["library_versions"]["scikit-learn"] = "0.0.1"
    metadata.write_text(json.dumps(record))
    client = create_app(config_path).test_client()
    assert version_of(client) == "v1"
    assert "0.0.1" in client.get("/api/parima/versions/v1").json["load_warning"]


@pytest.mark.server
def test_two_processes_changing_the_registry_lose_no_update(trained_client, tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    script = (
        "import sys; from pathlib import Path; from backend.registry import Registry\n"
        "r = Registry(Path(sys.argv[1]), 'parima')\n"
        "for i in range(40): r.annotate('v1', {f'p{sys.argv[2]}_{i}': i})\n"
    )
    folder = str(tmp_path / "ml_models" / "parima")
    writers = [subprocess.Popen([sys.executable, "-c", script, folder, str(n)], cwd=ROOT) for n in range(2)]
    assert [w.wait(60) for w in writers] == [0, 0]
    record = json.loads((tmp_path / "ml_models" / "parima" / "v1" / "metadata.json").read_text())  # annotate's file
    assert sum(1 for key in record if key.startswith(("p0_", "p1_"))) == 80


def test_notifications_are_bounded_and_keep_their_ids(tmp_path):
    from backend.notifications import Notifier

    notifier = Notifier(tmp_path / "n.jsonl", keep=10)
    for i in range(35):
        notifier.notify("success", "m", f"v{i}", "MODEL_PROMOTED", "promoted", {})
    notes = Notifier(tmp_path / "n.jsonl", keep=10).list(limit=1000)  # a restart reads them back
    assert len(notes) <= 20 and notes[-1]["id"] == 35
    assert [n["id"] for n in notes] == sorted(n["id"] for n in notes)
