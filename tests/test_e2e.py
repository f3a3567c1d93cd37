"""End to end: a real `python -m backend serve` on a free loopback port, driven over HTTP."""
import random
import threading

import requests

from backend import demo
from tests.helpers import history_events, wait_until, write_config, write_samples

ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.95}


def served_version(server):
    return requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10).json().get("model_version")


def overloaded_device_rows(n, seed):
    """Drift: the devices now report CPU loads above 0.9, and the policy answers with the coarsest level."""
    rng = random.Random(seed)
    rows = demo.rows(n, seed=seed)
    for row in rows:
        row["deviceCPULoad"] = round(0.9 + 0.1 * rng.random(), 4)
        row["decisionLOD"] = 3
    return rows


def test_scheduler_trains_promotes_and_serves_new_versions(tmp_path, servers):
    config = write_config(tmp_path, autoTrainIntervalHours=0.0005, minSamplesForTraining=100)  # a tick every 1.8 s
    server = servers(config)
    assert requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10).status_code == 503

    rows = demo.rows(300, seed=1)
    requests.post(f"{server.url}/api/parima/samples", json={"samples": rows[:10]}, timeout=10)
    skipped = wait_until(lambda: requests.get(f"{server.url}/api/parima/training/history?event_type=TRAINING_SKIPPED",
                                              timeout=10).json()["events"], timeout=30, what="a skipped tick")
    assert skipped[0]["details"]["n_samples"] == 10 and skipped[0]["details"]["min_required"] == 100
    answer = requests.post(f"{server.url}/api/parima/samples", json={"samples": rows[10:]}, timeout=10)
    assert answer.status_code == 201 and answer.json()["total_samples"] == 300
    wait_until(lambda: served_version(server) == "v1", timeout=90, what="v1 to serve")

    answer = requests.post(f"{server.url}/api/parima/samples", json={"samples": overloaded_device_rows(300, 2)}, timeout=10)
    assert answer.json()["samples_since_last_training"] == 300
    wait_until(lambda: served_version(server) == "v2", timeout=90, what="v2 to serve")
    assert requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10).json()["prediction"] == 3

    status = requests.get(f"{server.url}/api/parima/training/status", timeout=10).json()
    assert status["active_version"] == "v2" and status["next_check_time"] is not None
    assert server.stop() == 0

    events = history_events(tmp_path)  # every line parses as JSON
    meaningful = [e for e in events if e["event_type"] != "TRAINING_SKIPPED"]
    assert [e["event_type"] for e in meaningful] == [
        "TRAINING_STARTED", "TRAINING_COMPLETED", "MODEL_PROMOTED", "DRIFT_DETECTED",
        "TRAINING_STARTED", "TRAINING_COMPLETED", "MODEL_PROMOTED",
    ]
    # the overloaded devices' rows are scored by v1 as they arrive: a drift episode, and the tick trains on it
    assert meaningful[3]["details"]["version"] == "v1"
    assert [e["details"]["trigger"] for e in meaningful if e["event_type"] == "TRAINING_STARTED"] == ["auto", "drift"]
    assert [e["details"]["version"] for e in meaningful if e["event_type"] == "TRAINING_COMPLETED"] == ["v1", "v2"]
    assert meaningful[4]["details"]["n_samples"] == 600


def test_hot_reload_under_load_fails_no_request(tmp_path, servers):
    config = write_config(tmp_path, minSamplesForTraining=100)
    write_samples(tmp_path / "data" / "samples.csv", 400, seed=1)
    server = servers(config)  # start-up training: data, no version yet
    wait_until(lambda: served_version(server) == "v1", timeout=90, what="start-up training")
    started = [e for e in history_events(tmp_path) if e["event_type"] == "TRAINING_STARTED"]
    assert started[0]["details"]["trigger"] == "startup"

    stop = threading.Event()
    seen: dict[int, list[str]] = {}
    failures: list[str] = []

    def client(n):
        session = requests.Session()
        versions = seen.setdefault(n, [])
        while not stop.is_set():
            try:
                response = session.post(f"{server.url}/api/parima/predict", json={"instances": [ROW] * 20}, timeout=10)
                body = response.json()
                if response.status_code != 200 or "model_version" not in body:
                    failures.append(f"{response.status_code} {body}")
                else:
                    versions.append(body["model_version"])
            except requests.RequestException as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: all(len(v) > 5 for v in seen.values()) and len(seen) == 4, timeout=30, what="clients")
        # the same rows retrain an identical forest: a tie, which promotes
        job = requests.post(f"{server.url}/api/parima/train", json={"force": True}, timeout=10).json()
        wait_until(lambda: requests.get(f"{server.url}/api/parima/jobs/{job['job_id']}", timeout=10).json()["status"]
                   == "completed", timeout=90, what="the training")
        counts = {n: len(v) for n, v in seen.items()}
        wait_until(lambda: all(len(seen[n]) > counts[n] + 5 for n in seen), timeout=30, what="requests after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    for versions in seen.values():
        switches = [i for i in range(1, len(versions)) if versions[i] != versions[i - 1]]
        assert len(switches) <= 1 and versions[0] == "v1" and versions[-1] == "v2", versions


def test_rollback_under_load_then_restart_keeps_the_choice(tmp_path, servers):
    import subprocess
    import sys

    from tests.helpers import ROOT

    config = write_config(tmp_path, minSamplesForTraining=100)
    write_samples(tmp_path / "data" / "samples.csv", 300, seed=1)
    server = servers(config)
    wait_until(lambda: served_version(server) == "v1", timeout=90, what="start-up training")
    requests.post(f"{server.url}/api/parima/train", json={"force": True}, timeout=10).json()
    wait_until(lambda: served_version(server) == "v2", timeout=90, what="v2")

    stop, failures, seen = threading.Event(), [], []

    def client():
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10)
                if response.status_code != 200:
                    failures.append(response.text)
                else:
                    seen.append(response.json()["model_version"])
            except requests.RequestException as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(seen) > 20, timeout=30, what="traffic")
        answer = requests.post(f"{server.url}/api/parima/rollback", timeout=10).json()
        assert answer == {"model": "parima", "active_version": "v1", "previous_version": "v2"}
        mark = len(seen)
        wait_until(lambda: len(seen) > mark + 20, timeout=30, what="traffic after the rollback")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == [] and seen[-1] == "v1"
    assert server.stop() == 0

    server = servers(config)  # restart: the rollback holds
    assert served_version(server) == "v1"
    # another process (the CLI) activates v2: the running server follows without a restart
    subprocess.run([sys.executable, "-m", "backend", "--config", str(config), "activate", "parima", "v2"],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    wait_until(lambda: served_version(server) == "v2", timeout=10, what="the server to follow the registry")
    health = requests.get(f"{server.url}/health", timeout=10).json()
    assert health["version"] == "v2" and isinstance(health["pid"], int)
