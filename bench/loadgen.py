"""A small closed-loop HTTP load generator: N threads, one keep-alive connection each, same body every time.

Run as its own process (the bench pins it to another CPU than the server):

    python -m bench.loadgen --url http://127.0.0.1:8000/api/m/predict --body body.json --concurrency 8 --seconds 3

Prints one JSON object: requests, failures, requests/s, latency percentiles in
ms. With ``--trace FILE`` it also writes one line per request (start time on
the machine-wide monotonic clock ``time.perf_counter`` reads on Linux, latency,
status, the ``model_version`` that answered), which the hot-reload
benchmark uses to find the requests around each swap. The loop is bounded by
both time and a request count.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class Client(threading.Thread):
    def __init__(self, host: str, port: int, path: str, body: bytes, warmup: int, start: threading.Barrier,
                 deadline: list[float], budget: int, trace: bool):
        super().__init__(daemon=True)
        self.host, self.port, self.path, self.body = host, port, path, body
        self.warmup, self.start_line, self.deadline, self.budget, self.trace = warmup, start, deadline, budget, trace
        self.latencies: list[float] = []
        self.failures: dict[str, int] = {}
        self.records: list[tuple[float, float, int, str | None]] = []
        self.origin = 0.0
        self.connection: http.client.HTTPConnection | None = None

    def _send(self) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            self.connection.request("POST", self.path, self.body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self._drop()
            return response.status, data
        except (OSError, http.client.HTTPException):
            self._drop()
            raise

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    def run(self) -> None:
        for _ in range(self.warmup):
            try:
                self._send()
            except (OSError, http.client.HTTPException):
                pass
        self.start_line.wait()
        self.origin = time.perf_counter()
        while len(self.latencies) < self.budget and time.perf_counter() < self.deadline[0]:
            started = time.perf_counter()
            try:
                status, data = self._send()
                error = None if status == 200 else f"http {status}"
            except (OSError, http.client.HTTPException) as exc:
                status, data, error = 0, b"", type(exc).__name__
            elapsed = time.perf_counter() - started
            self.latencies.append(elapsed)
            if error:
                self.failures[error] = self.failures.get(error, 0) + 1
            if self.trace:
                version = None
                if status == 200:
                    try:
                        version = json.loads(data).get("model_version")
                    except ValueError:
                        pass
                self.records.append((started, elapsed, status, version))
        self._drop()


def run(url: str, body: bytes, concurrency: int, seconds: float, max_requests: int, warmup: int,
        trace: bool = False) -> tuple[dict[str, Any], list[tuple[float, float, int, str | None]]]:
    """Drive ``url`` with ``concurrency`` closed-loop clients for ``seconds``; return the summary and the trace."""
    parts = urlsplit(url)
    barrier = threading.Barrier(concurrency + 1)
    deadline = [float("inf")]
    budget = max(1, max_requests // concurrency)
    clients = [Client(parts.hostname, parts.port, parts.path, body, warmup, barrier, deadline, budget, trace)
               for _ in range(concurrency)]
    for client in clients:
        client.start()
    barrier.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for client in clients:
        client.join()
    wall = time.perf_counter() - began
    latencies = [x for c in clients for x in c.latencies]
    failures: dict[str, int] = {}
    for client in clients:
        for key, n in client.failures.items():
            failures[key] = failures.get(key, 0) + n
    ms = [x * 1000 for x in latencies] or [float("nan")]
    summary = {
        "requests": len(latencies), "failures": sum(failures.values()), "failure_kinds": failures,
        "seconds": round(wall, 3), "rps": len(latencies) / wall if wall else 0.0,
        "p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 99), "max_ms": max(ms),
    }
    records = sorted((r for c in clients for r in c.records), key=lambda r: r[0])
    return summary, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file holding the JSON body")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=5, help="requests per client before timing starts")
    parser.add_argument("--trace", help="write one JSON line per request here")
    args = parser.parse_args()
    with open(args.body, "rb") as handle:
        body = handle.read()
    summary, records = run(args.url, body, args.concurrency, args.seconds, args.max_requests, args.warmup,
                           trace=bool(args.trace))
    if args.trace:
        with open(args.trace, "w", encoding="utf-8") as handle:
            for started, elapsed, status, version in records:
                handle.write(json.dumps({"t": started, "latency": elapsed, "status": status, "version": version}) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
