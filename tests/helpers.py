"""Shared test helpers: configs in tmp_path, demo CSVs, waiting for jobs, a real server process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from backend import demo
from backend.samples import render_rows

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"completed", "skipped", "failed", "cancelled"}


def write_config(folder: Path, promotion: dict[str, Any] | None = None, **training: Any) -> Path:
    """Write a config with one 'parima' model whose files live under ``folder``; return its path."""
    settings = {
        "autoTrain": True,
        "autoTrainIntervalHours": 24,
        "minSamplesForTraining": 50,
        "logFile": "./data/samples.csv",
        "modelType": "random_forest",
        "trainingLogFile": "./data/training_logs/history.log",
        "metric": "f1_macro",
        "minImprovement": 0.0,
        "testSize": 0.25,
        "randomState": 42,
    }
    settings.update(training)
    config = {
        "server": {"host": "127.0.0.1", "port": 5001},
        "storage": {"dataDir": "./data", "modelsDir": "./ml_models"},
        "models": {
            "parima": {
                "task": "classification",
                "target": demo.TARGET,
                "features": demo.FEATURES,
                "training": settings,
                **({"promotion": promotion} if promotion is not None else {}),
            }
        },
    }
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=2))
    (folder / "data").mkdir(exist_ok=True)
    return path


def write_samples(path: Path, n: int, seed: int = 0, shuffle_labels: bool = False) -> list[dict[str, Any]]:
    """Append ``n`` demo rows to ``path`` (writing a header first if needed); return them."""
    rows = demo.rows(n, seed=seed)
    if shuffle_labels:
        import random

        labels = [r[demo.TARGET] for r in rows]
        random.Random(seed).shuffle(labels)
        for row, label in zip(rows, labels):
            row[demo.TARGET] = label
    columns = demo.FEATURES + [demo.TARGET]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        if handle.tell() == 0:
            handle.write(render_rows(columns, [dict(zip(columns, columns))]))
        handle.write(render_rows(columns, rows))
    return rows


def wait_job(get_job, timeout: float = 120) -> dict[str, Any]:
    """Poll ``get_job()`` until the job ends; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_job()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job did not finish in {timeout}s: {job}")


def train_over_http(server: "ServerProcess", body: dict[str, Any], model: str = "parima") -> dict[str, Any]:
    """POST a training to a running server and return the job once it has ended."""
    job = requests.post(f"{server.url}/api/{model}/train", json=body, timeout=10).json()
    return wait_job(lambda: requests.get(f"{server.url}/api/{model}/jobs/{job['job_id']}", timeout=10).json())


def wait_until(predicate, timeout: float = 120, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def history_events(config_folder: Path) -> list[dict[str, Any]]:
    """Every line of the history log, each parsed as JSON (a torn line fails the test)."""
    path = config_folder / "data" / "training_logs" / "history.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


class ServerProcess:
    """A real `python -m backend serve` on a free loopback port."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, workers: int = 1, preexec_fn=None,
                 args: list[str] | None = None):
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(config.parent / "server.log", "ab")  # the server's console: its stdout and stderr
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend", "--config", str(config), "serve", "--port", str(self.port),
             "--workers", str(workers), *(args or [])],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True, preexec_fn=preexec_fn,  # its own process group, so a test can kill all of it
        )
        wait_until(self._up, timeout=60, what="the server to answer /health")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}: {self.output()}")
        try:
            return requests.get(f"{self.url}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def output(self) -> str:
        return (self.config.parent / "server.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL the server and everything it started (workers, trainers): a crash, not a shutdown."""
        import signal

        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(20)
        self.log.close()

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)
        finally:
            self.log.close()
