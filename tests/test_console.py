"""What `serve` prints: start-up, training and promotion on the console; requests only where --access-log says."""
import json
import logging

import pytest
import requests

from backend import create_app, demo, observability
from tests.helpers import history_events, wait_job, wait_until, write_config

ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.3}


def exercise(server) -> list[tuple[str, str]]:
    """Post samples, train and predict over HTTP; return the (method, path) of every request the server answered."""
    sent = [("GET", "/health")]  # ServerProcess's start-up check: the one that got an answer

    def call(method: str, path: str, **kwargs) -> requests.Response:
        sent.append((method, path))
        return requests.request(method, f"{server.url}{path}", timeout=10, **kwargs)

    for seed in range(3):
        assert call("POST", "/api/parima/samples", json={"samples": demo.rows(100, seed=seed)}).status_code == 201
    job_id = call("POST", "/api/parima/train", json={"force": True}).json()["job_id"]
    job = wait_job(lambda: call("GET", f"/api/parima/jobs/{job_id}").json())
    assert job["status"] == "completed" and job["result"]["promoted"], job
    for _ in range(3):
        assert call("POST", "/api/parima/predict", json={"features": ROW}).json()["model_version"] == "v1"
    return sent


def test_the_console_tells_of_training_and_promotion_not_of_requests(tmp_path, servers):
    # a scheduler tick every 1.08 s, each skipped (too few samples): ticks are not news either
    server = servers(write_config(tmp_path, autoTrainIntervalHours=0.0003, minSamplesForTraining=1000))
    exercise(server)
    wait_until(lambda: [e for e in history_events(tmp_path) if e["event_type"] == "TRAINING_SKIPPED"][2:],
               timeout=30, what="three skipped ticks")
    assert server.stop() == 0
    console = (tmp_path / "server.log").read_text()
    assert "Refit serving" in console  # start-up
    assert "/api/parima" not in console and "/health" not in console and '"duration_ms"' not in console, console
    lines = console.splitlines()
    assert any("parima TRAINING_STARTED" in line and "trigger manual" in line for line in lines), console
    assert any("parima MODEL_PROMOTED" in line and "v1" in line for line in lines), console
    assert "TRAINING_SKIPPED" not in console and "Running job" not in console, console


def test_access_log_has_one_json_line_per_request(tmp_path, servers):
    access = tmp_path / "access.log"
    server = servers(write_config(tmp_path, autoTrain=False), args=["--access-log", str(access)])
    sent = exercise(server)
    assert server.stop() == 0
    records = [json.loads(line) for line in access.read_text().splitlines()]
    assert [(r["method"], r["path"]) for r in records] == sent
    assert {r["status"] for r in records} == {200, 201, 202}
    assert all(r["model_version"] == "v1" for r in records if r["path"] == "/api/parima/predict")
    assert "/api/parima" not in (tmp_path / "server.log").read_text()


@pytest.fixture
def request_log_restored():
    """Put the ``refit.requests`` logger back as it was: configure_request_log changes it for the whole process."""
    saved = (list(observability.log.handlers), observability.log.level, observability.log.propagate)
    yield
    observability.log.handlers[:], observability.log.level, observability.log.propagate = saved


def test_access_log_dash_writes_the_request_lines_to_the_console(config_path, capfd, request_log_restored):
    observability.configure_request_log("-")
    client = create_app(config_path).test_client()
    assert client.post("/api/parima/predict", json={"features": ROW}).status_code == 503
    records = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert [(r["path"], r["status"], r["model"]) for r in records] == [("/api/parima/predict", 503, "parima")]


def test_without_access_log_no_request_line_is_built(config_path, request_log_restored):
    observability.configure_request_log(None)
    assert not observability.log.isEnabledFor(logging.INFO) and not observability.log.propagate
