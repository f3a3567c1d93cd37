"""Replay a stream against a real Refit server: predict each row, then post it with its label; the scheduler retrains.

The server is `python -m backend serve` with the default training options
except ``minSamplesForTraining`` (500) and ``plots: false`` (no PNGs: they
cost time and change no decision); its scheduler checks every 0.72 s. The
store is seeded with the stream's first rows, so the first model trains at
start-up; the replay starts once it serves. Nothing else steers the server.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

from backend.samples import render_rows
from bench.procs import Server, free_port, wait_for
from bench.streams import TARGET, Stream

ROOT = Path(__file__).resolve().parent.parent
MODEL = "stream"
MIN_SAMPLES = 500
INTERVAL_HOURS = 0.0002  # 0.72 s between the scheduler's checks


@dataclass
class RefitRun:
    """What one replay measured."""

    hits: np.ndarray  # one bool per row from ``start`` on (a row never predicted counts as a miss)
    start: int
    rows_replayed: int  # rows predicted and posted (the seed rows excluded)
    requests: int = 0
    failures: list[str] = field(default_factory=list)  # one line per failed request
    stopped: str = "end of stream"  # or why the replay stopped early
    answered_by: dict[str, int] = field(default_factory=dict)  # version -> scored rows it predicted
    trainings: list[dict[str, Any]] = field(default_factory=list)  # one per TRAINING_COMPLETED event
    jobs: list[dict[str, Any]] = field(default_factory=list)  # the jobs API's records, oldest first
    replay_seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return float(self.hits.mean()) if len(self.hits) else float("nan")


def write_config(folder: Path, stream: Stream) -> Path:
    """A config with one model for ``stream``: Refit's default training options but for the two named above."""
    config = {
        "storage": {"dataDir": "./data", "modelsDir": "./ml_models"},
        "models": {MODEL: {
            "task": "classification", "target": TARGET, "features": stream.features,
            "training": {"autoTrain": True, "autoTrainIntervalHours": INTERVAL_HOURS,
                         "minSamplesForTraining": MIN_SAMPLES, "plots": False,
                         "logFile": "./data/samples.csv", "trainingLogFile": "./data/training_logs/history.log"},
        }},
    }
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def seed_store(folder: Path, stream: Stream, rows: int) -> None:
    """Write the stream's first ``rows`` rows as the model's sample store, header first."""
    columns = stream.features + [TARGET]
    path = folder / "data" / "samples.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(render_rows(columns, [dict(zip(columns, columns))]))
        handle.write(render_rows(columns, stream.frame.iloc[:rows].to_dict("records")))


def replay(stream: Stream, folder: Path, start: int, seed_rows: int = MIN_SAMPLES, max_seconds: float = 900.0,
           batch: int = 10, paced: bool = True) -> RefitRun:
    """Run a server for ``stream`` in ``folder`` (emptied first), replay every row after the seed ones, score ``start`` on.

    ``paced``: once a samples answer says ``minSamplesForTraining`` new rows are in, no more rows arrive until
    the scheduler's training of them has ended (the production regime, where rows arrive over hours and a
    training takes seconds); the figures then do not depend on this machine's speed. Since a model can only
    change at those points, predicting ``batch`` rows per request answers every row with the version a
    row-by-row replay would have used. Unpaced, rows arrive as fast as the server answers. The replay stops
    by itself at the end of the stream or after ``max_seconds``.
    """
    shutil.rmtree(folder, ignore_errors=True)  # a registry left by an earlier run would serve its old versions
    folder.mkdir(parents=True)
    config = write_config(folder, stream)
    seed_store(folder, stream, seed_rows)
    frame = stream.frame
    features = stream.features
    records = frame.to_dict("records")
    labels = frame[TARGET].tolist()
    hits = np.full(len(frame), False)
    run = RefitRun(hits=hits[start:], start=start, rows_replayed=0)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api/{MODEL}"
    with Server("refit", [sys.executable, "-m", "backend", "--config", str(config), "serve", "--port", str(port),
                          "--workers", "1"], folder / "server.log", f"{base}/health", cwd=ROOT), \
            requests.Session() as http:
        def status() -> dict[str, Any]:
            return http.get(f"{api}/training/status", timeout=30).json()

        wait_for(lambda: status()["active_version"], 300, "the start-up training")
        began = time.monotonic()
        for at in range(seed_rows, len(frame), batch):
            if time.monotonic() - began > max_seconds:
                run.stopped = f"time bound ({max_seconds:g} s) at row {at}"
                break
            chunk = range(at, min(at + batch, len(frame)))
            answer = _post(http, f"{api}/predict", {"instances": [{f: records[i][f] for f in features} for i in chunk]},
                           run)
            if answer is not None:
                version = answer["model_version"]
                for i, predicted in zip(chunk, answer["predictions"]):
                    hits[i] = str(predicted) == str(labels[i])
                    if i >= start:
                        run.answered_by[version] = run.answered_by.get(version, 0) + 1
            posted = _post(http, f"{api}/samples", {"samples": [records[i] for i in chunk]}, run)
            run.rows_replayed += len(chunk)
            if paced and posted is not None and posted["samples_since_last_training"] >= MIN_SAMPLES:
                try:
                    wait_for(lambda: _trained(status()), 300, f"the scheduler's training after row {chunk[-1]}")
                except RuntimeError as exc:  # say so and stop pacing rather than hang
                    run.failures.append(str(exc))
                    paced = False
        run.replay_seconds = time.monotonic() - began
        # a training the last rows started still ends in the counts (bounded: the server stops regardless)
        try:
            wait_for(lambda: not status()["training_in_progress"], 300, "the last training")
        except RuntimeError as exc:
            run.failures.append(str(exc))
        events = http.get(f"{api}/training/history", params={"limit": 10_000, "event_type": "TRAINING_COMPLETED"},
                          timeout=30).json()["events"]
        run.trainings = [e["details"] for e in sorted(events, key=lambda e: e["timestamp"])]
        run.jobs = sorted(http.get(f"{api}/jobs", params={"limit": 1000}, timeout=30).json()["jobs"],
                          key=lambda j: j["created_at"])
    return run


def _trained(status: dict[str, Any]) -> bool:
    """The training of the rows posted so far has ended (registered, so the counter is back under the minimum)."""
    return not status["training_in_progress"] and status["samples_since_last_training"] < MIN_SAMPLES


def _post(http: requests.Session, url: str, body: dict[str, Any], run: RefitRun) -> dict[str, Any] | None:
    """POST ``body``; a non-2xx answer or a connection error is a failure, recorded, never retried."""
    run.requests += 1
    try:
        response = http.post(url, json=body, timeout=60)
    except requests.RequestException as exc:
        run.failures.append(f"{url}: {type(exc).__name__}: {exc}")
        return None
    if response.status_code >= 300:
        run.failures.append(f"{url}: {response.status_code} {response.text[:200]}")
        return None
    return response.json()


def job_seconds(job: dict[str, Any]) -> float:
    """A finished job's wall time, started to finished (0 for one that never ran)."""
    if not job.get("started_at") or not job.get("finished_at"):
        return 0.0
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
