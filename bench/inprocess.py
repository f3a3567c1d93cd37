"""The in-process references the servers are compared with; run as a subprocess so it can be pinned.

    python -m bench.inprocess floor ARTIFACT CSV --reps 3 --seconds 1
        pipeline.predict on a one-row and a 1000-row DataFrame, at concurrency 1
        and 8 (threads), built once: what a prediction costs with no server at all.
    python -m bench.inprocess fit ARTIFACT CSV --rows N --test-size 0.2 --random-state R --reps 3
        a bare clone(pipeline).fit on the rows Refit's job trains on (its
        stratified training split), with the artifact's own parameters.

Each prints one JSON object with a list of repetitions.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import joblib
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from bench.loadgen import percentile

TARGET = "label"


def _predict_rep(pipeline, frame: pd.DataFrame, concurrency: int, seconds: float) -> dict:
    barrier = threading.Barrier(concurrency + 1)
    stop = [float("inf")]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]

    def client(mine: list[float]) -> None:
        pipeline.predict(frame)
        barrier.wait()
        while time.perf_counter() < stop[0] and len(mine) < 200_000:
            started = time.perf_counter()
            pipeline.predict(frame)
            mine.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    stop[0] = began + seconds
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ms = [x * 1000 for mine in latencies for x in mine]
    return {"rps": len(ms) / wall, "p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 99), "requests": len(ms)}


def floor(args: argparse.Namespace) -> dict:
    pipeline = joblib.load(args.artifact)
    frame = pd.read_csv(args.csv, nrows=1000).drop(columns=TARGET)
    cells = {}
    for rows in (1, 1000):
        for concurrency in (1, 8):
            part = frame.iloc[:rows].copy()
            cells[f"{rows}x{concurrency}"] = [_predict_rep(pipeline, part, concurrency, args.seconds) for _ in range(args.reps)]
    return cells


def fit(args: argparse.Namespace) -> dict:
    pipeline = joblib.load(args.artifact)
    data = pd.read_csv(args.csv, nrows=args.rows)
    y = data.pop(TARGET)
    X_train, _, y_train, _ = train_test_split(data, y, test_size=args.test_size, random_state=args.random_state,
                                              stratify=y)
    seconds = []
    for _ in range(args.reps):
        fresh = clone(pipeline)
        started = time.perf_counter()
        fresh.fit(X_train, y_train)
        seconds.append(time.perf_counter() - started)
    return {"rows": len(X_train), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("floor")
    one.add_argument("artifact")
    one.add_argument("csv")
    one.add_argument("--reps", type=int, default=3)
    one.add_argument("--seconds", type=float, default=1.0)
    two = commands.add_parser("fit")
    two.add_argument("artifact")
    two.add_argument("csv")
    two.add_argument("--rows", type=int, required=True)
    two.add_argument("--test-size", type=float, default=0.2)
    two.add_argument("--random-state", type=int, default=0)
    two.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(floor(args) if args.command == "floor" else fit(args)))


if __name__ == "__main__":
    main()
