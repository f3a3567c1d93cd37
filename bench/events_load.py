"""Predict latency with open event streams against none (CONTRACT §10: within 1.5x at p99).

    python -m bench.events_load [--streams 20] [--seconds 10] [--reps 3] [--concurrency 8]

One `python -m backend serve` (1 worker, --threads 8) pinned to one CPU, the
load generator (bench/loadgen.py, closed loop, one keep-alive connection per
client) to the other. Each repetition measures predict (the PARIMA demo
model, one row) once with no stream open and once with ``--streams`` open
``GET /api/events`` streams, in alternating order; in both, this process
appends ``--rate`` console events a second to the server's event journal (job
records, as a running training writes them), so the open streams have
something to carry and the server spends nothing on making them. Prints one JSON
object (medians and min-max of p50, p99, requests/s, and the server's CPU
milliseconds per prediction, which other load on the machine barely moves;
events each stream got) and writes bench/out/events.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from backend import demo
from backend.events import EventJournal
from bench.procs import Server, cpu_plan, free_port, process_tree

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WORK = OUT / "events-work"
ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.3}


def prepare() -> Path:
    """A config with the demo model trained once (v1), in bench/out/events-work."""
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "data").mkdir(parents=True)
    config = {"storage": {"dataDir": "./data", "modelsDir": "./ml_models"},
              "models": {"parima": {"task": "classification", "target": demo.TARGET, "features": demo.FEATURES,
                                    "training": {"autoTrain": False, "logFile": "./data/parima.csv", "plots": False}}}}
    path = WORK / "config.json"
    path.write_text(json.dumps(config))
    demo.write_csv(WORK / "data" / "parima.csv", n=600, seed=0)
    subprocess.run([sys.executable, "-m", "backend", "--config", str(path), "train", "parima"], cwd=ROOT, check=True,
                   capture_output=True)
    (WORK / "body.json").write_text(json.dumps({"features": ROW}))
    return path


class Streams:
    """``n`` open event streams, each read by a thread of its own; counts the events each one got."""

    def __init__(self, url: str, n: int):
        self.responses = [requests.get(f"{url}/api/events", stream=True, timeout=60) for _ in range(n)]
        for response in self.responses:
            response.raise_for_status()
        self.counts = [0] * n
        self.threads = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(n)]
        for thread in self.threads:
            thread.start()

    def _read(self, index: int) -> None:
        try:
            for line in self.responses[index].iter_lines():
                if line.startswith(b"id: "):
                    self.counts[index] += 1
        except (requests.RequestException, AttributeError, ValueError):
            return  # closed by close()

    def close(self) -> list[int]:
        for response in self.responses:
            response.close()
        return self.counts


class Writer(threading.Thread):
    """``rate`` console events a second, appended to the journal the server's streams tail."""

    def __init__(self, journal: EventJournal, rate: float):
        super().__init__(daemon=True)
        self.journal, self.rate, self.stop, self.sent = journal, rate, threading.Event(), 0

    def run(self) -> None:
        record = {"job_id": "0123456789ab", "model": "parima", "trigger": "manual", "status": "running",
                  "stage": "fitting", "created_at": "2026-01-01T00:00:00+00:00", "result": None, "error": None}
        while not self.stop.wait(1 / self.rate):
            self.sent += 1
            self.journal.append("job", "parima", {**record, "progress": self.sent % 100})


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and everything below it, from /proc."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def measure(url: str, client_pin: list[str], concurrency: int, seconds: float, server_pid: int) -> dict[str, Any]:
    before = cpu_seconds(server_pid)
    done = subprocess.run([*client_pin, sys.executable, "-m", "bench.loadgen", "--url", f"{url}/api/parima/predict",
                           "--body", str(WORK / "body.json"), "--concurrency", str(concurrency), "--seconds",
                           str(seconds)], cwd=ROOT, capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)
    summary["cpu_ms_per_request"] = (cpu_seconds(server_pid) - before) * 1000 / max(1, summary["requests"])
    if summary["failures"]:
        raise RuntimeError(f"{summary['failures']} failed predictions: {summary['failure_kinds']}")
    return summary


KEYS = ("p50_ms", "p99_ms", "rps", "cpu_ms_per_request")


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=4.0, help="console events a second, in both phases")
    args = parser.parse_args()
    config = prepare()
    server_pin, client_pin, pinning = cpu_plan()
    port = free_port()
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "streams": []}
    received: list[int] = []
    if client_pin:  # this process reads the streams and writes the events: keep it off the server's CPU
        os.sched_setaffinity(0, {int(client_pin[-1])})
    with Server("refit-events", [*server_pin, sys.executable, "-m", "backend", "--config", str(config), "serve",
                                 "--port", str(port), "--workers", "1", "--threads", "8"],
                OUT / "events-server.log", f"http://127.0.0.1:{port}/health", cwd=ROOT) as server:
        writer = Writer(EventJournal(WORK / "ml_models" / "events.jsonl"), args.rate)
        writer.start()
        for rep in range(args.reps):
            for phase in (("none", "streams") if rep % 2 == 0 else ("streams", "none")):
                streams = Streams(server.url, args.streams) if phase == "streams" else None
                runs[phase].append(measure(server.url, client_pin, args.concurrency, args.seconds, server.process.pid))
                if streams is not None:
                    received += streams.close()
        writer.stop.set()
    result = {
        "setup": f"1 worker, --threads 8, predict one row, {args.concurrency} closed-loop clients, {args.seconds:g} s x "
                 f"{args.reps} per phase; {pinning}, the stream readers and the event writer beside the load "
                 f"generator; {args.rate:g} console events a second in both phases",
        "no_streams": {key: spread([r[key] for r in runs["none"]]) for key in KEYS},
        f"{args.streams}_streams": {key: spread([r[key] for r in runs["streams"]]) for key in KEYS},
        "events_per_stream": spread(received) if received else None,
    }
    ratio = result[f"{args.streams}_streams"]["p99_ms"]["median"] / result["no_streams"]["p99_ms"]["median"]
    result["p99_ratio"] = round(ratio, 2)
    result["budget_met"] = ratio <= 1.5
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "events.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
