"""Production hardening on real server processes: several workers, crashes, shutdown, limits."""
import json
import resource
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import requests

from backend import create_app, demo, shutdown
from tests.helpers import history_events, train_over_http, wait_job, wait_until, write_config, write_samples

ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.3}
SLOW_TRAINING = {"force": True, "model_type": "svm",
                 "tuning": {"method": "grid", "cv": 5, "searchSpace": {"C": [0.1, 1, 10, 100, 1000],
                                                                       "gamma": [0.001, 0.01, 0.1, 1, "scale"]}}}


def health_by_pid(server, want: int, seconds: float = 30) -> dict[int, dict]:
    """Ask /health on fresh connections until ``want`` different worker pids have answered (or ``seconds`` pass).

    Bounded in time, not in count: on a loaded machine one worker may win no accept for a second or two
    (the leader's tick scores new rows), and 400 quick requests can all land on the others.
    """
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + seconds
    while len(seen) < want and time.monotonic() < deadline:
        body = requests.get(f"{server.url}/health", headers={"Connection": "close"}, timeout=10).json()
        seen[body["pid"]] = body
    return seen


def test_four_workers_one_scheduler_one_training_and_all_follow_a_promotion(tmp_path, servers):
    config = write_config(tmp_path, autoTrainIntervalHours=0.0003, minSamplesForTraining=100)  # a tick every 1.08 s
    write_samples(tmp_path / "data" / "samples.csv", 400, seed=1)
    server = servers(config, workers=4)
    wait_until(lambda: requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10)
               .json().get("model_version") == "v1", timeout=120, what="start-up training")
    wait_until(lambda: len([e for e in history_events(tmp_path) if e["event_type"] == "TRAINING_SKIPPED"]) >= 4,
               timeout=60, what="several ticks")
    events = history_events(tmp_path)
    assert len([e for e in events if e["event_type"] == "TRAINING_STARTED"]) == 1  # start-up ran once, not 4 times
    tick_pids = {e["details"]["pid"] for e in events if e["event_type"] == "TRAINING_SKIPPED"}
    assert len(tick_pids) == 1  # one scheduler for the data folder
    workers = health_by_pid(server, 4)
    assert len(workers) == 4 and all(w["version"] == "v1" for w in workers.values())

    def train(_):
        return requests.post(f"{server.url}/api/parima/train", json={"force": True},
                             headers={"Connection": "close"}, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(train, range(8)))
    assert sorted(a.status_code for a in answers) == [202] + [409] * 7
    job_id = next(a.json()["job_id"] for a in answers if a.status_code == 202)
    assert all(a.json()["error"]["details"]["job_id"] == job_id for a in answers if a.status_code == 409)
    job = wait_job(lambda: requests.get(f"{server.url}/api/parima/jobs/{job_id}", timeout=10).json())
    assert job["result"]["promoted"] is True  # same rows, same forest: a tie promotes
    promoted = time.monotonic()
    lagging = wait_until(lambda: (w := health_by_pid(server, 4, seconds=5))
                         and all(v["version"] == "v2" for v in w.values()) and w,
                         timeout=30, interval=0.05, what="every worker to serve v2")
    print(f"\nall {len(lagging)} workers served v2 {time.monotonic() - promoted:.2f} s after the job ended")

    for _ in range(40):  # metrics add up across the four workers, whichever answers the scrape
        requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, headers={"Connection": "close"}, timeout=10)
    scrape = requests.get(f"{server.url}/metrics", timeout=10).text
    predicted = [line for line in scrape.splitlines() if line.startswith("refit_http_requests_total{")
                 and 'endpoint="/api/<model>/predict"' in line and 'status="200"' in line]
    assert predicted and float(predicted[0].rsplit(" ", 1)[1]) >= 40
    served = [line for line in scrape.splitlines() if line.startswith("refit_served_version{")]
    assert len(served) == 4 and all(line.endswith(" 2.0") for line in served)  # one line per live worker

    leader = int((tmp_path / "data" / ".refit-leader.lock").read_text())
    import os

    os.kill(leader, signal.SIGKILL)  # the scheduler's process dies; gunicorn replaces it, another leads
    wait_until(lambda: {e["details"]["pid"] for e in history_events(tmp_path)
                        if e["event_type"] == "TRAINING_SKIPPED"} - tick_pids, timeout=60, what="a new scheduler")
    assert server.stop() == 0


def test_sigkill_mid_training_then_restart(tmp_path, servers):
    config = write_config(tmp_path, autoTrain=False)
    write_samples(tmp_path / "data" / "samples.csv", 1500, seed=1)
    server = servers(config)
    train_over_http(server, {"model_type": "logistic"})
    job_id = requests.post(f"{server.url}/api/parima/train", json=SLOW_TRAINING, timeout=10).json()["job_id"]
    wait_until(lambda: requests.get(f"{server.url}/api/parima/jobs/{job_id}", timeout=10).json()["stage"]
               .startswith("tuning"), timeout=60, interval=0.05, what="the tuning stage")
    server.kill()

    server = servers(config)
    job = requests.get(f"{server.url}/api/parima/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "failed" and job["error"]["reason"] == "interrupted"
    failed = [e for e in history_events(tmp_path) if e["event_type"] == "TRAINING_FAILED"]
    assert failed[-1]["details"]["job_id"] == job_id and failed[-1]["details"]["reason"] == "interrupted"
    assert requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10).json()["model_version"] == "v1"
    assert not list((tmp_path / "ml_models" / "parima" / ".staging").glob("*"))
    again = requests.post(f"{server.url}/api/parima/train", json={"force": True, "model_type": "logistic"}, timeout=10)
    assert again.status_code == 202  # the dead job holds no lock


def test_sigkill_mid_append_loses_no_acknowledged_sample(tmp_path, servers):
    config = write_config(tmp_path, autoTrain=False)
    server = servers(config)
    acknowledged: list[float] = []
    stop = threading.Event()

    def post_forever():
        session, n = requests.Session(), 0
        while not stop.is_set():
            rows = demo.rows(50, seed=n)
            for i, row in enumerate(rows):
                row["meanVisibleDistance"] = n * 1000 + i + 0.5  # a value that names the row
            n += 1
            try:
                response = session.post(f"{server.url}/api/parima/samples", json={"samples": rows}, timeout=5)
            except requests.RequestException:
                return
            if response.status_code == 201:
                acknowledged.extend(r["meanVisibleDistance"] for r in rows)

    writers = [threading.Thread(target=post_forever) for _ in range(3)]
    for t in writers:
        t.start()
    wait_until(lambda: len(acknowledged) >= 1500, timeout=60, what="acknowledged samples")
    server.kill()
    stop.set()
    for t in writers:
        t.join(10)
    samples = tmp_path / "data" / "samples.csv"
    with open(samples, "ab") as handle:
        handle.write(b"0.5,0.1,12")  # and an outside writer died mid-line too

    server = servers(config)
    answer = requests.post(f"{server.url}/api/parima/samples", json={"samples": demo.rows(2, seed=99)}, timeout=10)
    assert answer.status_code == 201
    stored = pd.read_csv(samples)
    assert set(acknowledged) <= set(stored["meanVisibleDistance"])
    assert stored["decisionLOD"].isna().sum() == 1  # the torn row stands alone; the next rows are whole
    done = train_over_http(server, {"force": True})
    assert done["status"] == "completed"
    record = requests.get(f"{server.url}/api/parima/versions/v1", timeout=10).json()
    assert any("without a target" in w for w in record["warnings"])


def start_posting_samples(server, rows) -> tuple[socket.socket, bytes]:
    """Send a samples request's head with ``Expect: 100-continue`` and return once the server is handling it.

    gunicorn answers ``100 Continue`` from the worker thread that is about to run the app, so the request
    is in flight from then on. Returns the socket and the body still to send (``finish_posting_samples``).
    """
    body = json.dumps({"samples": rows}).encode("utf-8")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(f"POST /api/parima/samples HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode("ascii"))
    assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
    return sock, body


def finish_posting_samples(sock: socket.socket, body: bytes) -> tuple[int, dict]:
    """Send the request's body and read the whole answer: (status, JSON body)."""
    sock.sendall(body)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    head, _, answered = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(answered)


def test_sigterm_finishes_requests_in_flight_cancels_training_and_exits_cleanly(tmp_path, servers):
    config = write_config(tmp_path, autoTrain=False)
    samples = tmp_path / "data" / "samples.csv"
    write_samples(samples, 1500, seed=1)
    server = servers(config)
    job_id = requests.post(f"{server.url}/api/parima/train", json=SLOW_TRAINING, timeout=10).json()["job_id"]
    wait_until(lambda: requests.get(f"{server.url}/api/parima/jobs/{job_id}", timeout=10).json()["status"] == "running",
               timeout=30, what="the job to run")
    in_flight = [start_posting_samples(server, demo.rows(200, seed=i)) for i in range(4)]
    server.process.terminate()
    # gunicorn logs the signal just before it passes SIGTERM on to the worker: from then on the worker
    # is draining, and the requests it holds must still be answered
    wait_until(lambda: "Handling signal: term" in server.output(), timeout=20, interval=0.02, what="the SIGTERM")
    answers = [finish_posting_samples(*request) for request in in_flight]
    assert [status for status, _ in answers] == [201] * 4, (answers, server.output())
    assert sorted(body["total_samples"] for _, body in answers) == [1700, 1900, 2100, 2300]
    assert server.process.wait(30) == 0, server.output()
    server.log.close()
    assert len(pd.read_csv(samples)) == 2300  # every answered sample is on disk
    record = json.loads((tmp_path / "ml_models" / "parima" / "jobs" / f"{job_id}.json").read_text())
    assert record["status"] == "cancelled", (record["status"], record["stage"], server.output()[-2000:])
    assert history_events(tmp_path)[-1]["details"]["reason"] == "cancelled", history_events(tmp_path)[-3:]


def test_shutdown_returns_only_once_the_job_record_is_final(tmp_path):
    config = write_config(tmp_path, autoTrain=False)
    write_samples(tmp_path / "data" / "samples.csv", 1500, seed=1)
    app = create_app(config)
    client = app.test_client()
    job_id = client.post("/api/parima/train", json=SLOW_TRAINING).json["job_id"]
    wait_until(lambda: client.get(f"/api/parima/jobs/{job_id}").json["stage"] != "queued", timeout=30,
               what="the job to start")
    shutdown(app)
    # check straight away: the process would exit here, so a job thread still writing would be cut off
    assert not [t.name for t in threading.enumerate() if t.name.startswith("refit-job-")]
    record = json.loads((tmp_path / "ml_models" / "parima" / "jobs" / f"{job_id}.json").read_text())
    assert record["status"] == "cancelled" and record["error"]["reason"] == "cancelled"


def test_a_training_over_its_timeout_is_stopped(tmp_path):
    config = write_config(tmp_path, timeoutSeconds=1)
    write_samples(tmp_path / "data" / "samples.csv", 1500, seed=1)
    client = create_app(config).test_client()
    response = client.post("/api/parima/train", json=SLOW_TRAINING)
    job = wait_job(lambda: client.get(f"/api/parima/jobs/{response.json['job_id']}").json)
    assert job["status"] == "failed" and job["error"]["reason"] == "timeout"
    assert history_events(tmp_path)[-1]["event_type"] == "TRAINING_FAILED"
    assert client.get("/api/parima/versions").json["versions"] == []


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # no file may grow past 200 kB: a "full disk"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write fails with EFBIG instead of killing the process


def test_a_full_disk_refuses_samples_and_fails_training_cleanly(tmp_path, servers):
    config = write_config(tmp_path, autoTrain=False)
    samples = tmp_path / "data" / "samples.csv"
    write_samples(samples, 2400, seed=1)  # close to the limit
    server = servers(config, preexec_fn=limit_file_size)
    assert train_over_http(server, {"model_type": "logistic"})["status"] == "completed"
    size = samples.stat().st_size
    answer = requests.post(f"{server.url}/api/parima/samples", json={"samples": demo.rows(4000, seed=3)}, timeout=10)
    assert answer.status_code == 507 and answer.json()["error"]["code"] == "insufficient_storage"
    assert samples.stat().st_size == size  # all or nothing
    done = train_over_http(server, {"force": True})  # a forest is larger than 200 kB
    assert done["status"] == "failed"
    assert history_events(tmp_path)[-1]["event_type"] == "TRAINING_FAILED"
    assert requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10).json()["model_version"] == "v1"


def test_predictions_keep_flowing_while_training(tmp_path, servers):
    config = write_config(tmp_path, autoTrain=False)
    write_samples(tmp_path / "data" / "samples.csv", 1500, seed=1)
    server = servers(config)
    train_over_http(server, {"model_type": "logistic"})
    answers: list[tuple[int, str | None]] = []
    failures: list[str] = []
    training_over = threading.Event()  # the clients stop when the training ends, or after 400 predictions

    def client():
        session = requests.Session()
        while not training_over.is_set() and len(answers) < 400:
            try:
                response = session.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10)
                answers.append((response.status_code, response.json().get("model_version")))
            except (requests.RequestException, ValueError) as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        tuned = {"force": True, "model_type": "svm",
                 "tuning": {"method": "grid", "cv": 3, "searchSpace": {"C": [1, 10], "gamma": [0.1, "scale"]}}}
        job = train_over_http(server, tuned)
    finally:
        training_over.set()
        for t in threads:
            t.join(30)
    assert job["status"] == "completed", job
    assert failures == [] and answers and all(status == 200 for status, _ in answers), (failures, answers[-5:])
    new = job["result"]["version"]
    assert {version for _, version in answers} <= {"v1", new}  # the old version, then the new one once swapped
    served = "v2" if job["result"]["promoted"] else "v1"
    wait_until(lambda: requests.post(f"{server.url}/api/parima/predict", json={"features": ROW}, timeout=10)
               .json()["model_version"] == served, timeout=10, what="the promoted version to serve")
