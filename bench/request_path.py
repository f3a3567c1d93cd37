"""What controlled rollout adds to a one-row prediction's request path (issue 11: at most 0.2 ms on the p50).

    python -m bench.request_path [--calls 20000]

Trains the demo model once in a temporary folder, then times, each over
``--calls`` calls in this process, the pieces a predict request now runs on
top of the prediction itself: the experiment routing check (one ``stat`` of
rollout.json), building the logged row, the prediction-log append (one
``os.write``) and the shadow check; then the same with a running experiment
(assignment by routing key and the in-memory arm count). Prints medians and
99th percentiles in microseconds, and a one-row ``predict_columns`` for scale.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from backend import create_app, demo, shutdown
from backend.schemas import parse_predict
from backend.serving import predict_columns
from bench.loadgen import percentile
from tests.helpers import wait_job, write_config, write_samples


def _time(fn, calls: int) -> tuple[float, float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6, percentile(samples, 99) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="refit-bench-path-"))
    config = write_config(folder, autoTrain=False)
    write_samples(folder / "data" / "samples.csv", 300, seed=1)
    app = create_app(config)
    client = app.test_client()
    job = client.post("/api/parima/train", json={}).json
    wait_job(lambda: client.get(f"/api/parima/jobs/{job['job_id']}").json)
    write_samples(folder / "data" / "samples.csv", 100, seed=2)
    job = client.post("/api/parima/train", json={"force": True}).json
    wait_job(lambda: client.get(f"/api/parima/jobs/{job['job_id']}").json)
    rt = app.extensions["refit"].runtimes["parima"]
    served = rt.slot.require()
    row = {k: v for k, v in demo.rows(1, seed=3)[0].items() if k in demo.FEATURES}
    columns, _, _ = parse_predict({"features": row}, served.numeric, served.categorical, 10_000)
    predictions, probabilities = predict_columns(served, columns)

    def added(key: str | None = None) -> None:
        route = rt.rollout.route(key)
        rows = [list(r) for r in zip(*(columns[name].tolist() for name in served.features))]
        rt.predictions.append(served.version, served.features, rows, predictions, probabilities, route.experiment)
        if route.experiment is None:
            rt.rollout.shadow_model(served.version)

    figures = {"predict_columns (one row, for scale)": _time(lambda: predict_columns(served, columns), args.calls // 4),
               "route + log row + append + shadow check": _time(added, args.calls),
               "prediction-log append alone": _time(lambda: rt.predictions.append(
                   served.version, served.features, [[1.0] * len(served.features)], predictions, probabilities),
                   args.calls)}
    rt.rollout.start_experiment("bench", ["v1", "v2"], [0.5, 0.5])
    figures["the same, in an experiment, with a routing key"] = _time(lambda: added("user-17"), args.calls)
    rt.rollout.flush()
    print(f"{'request-path piece':<50} {'p50 µs':>8} {'p99 µs':>8}")
    for name, (p50, p99) in figures.items():
        print(f"{name:<50} {p50:8.1f} {p99:8.1f}")
    shutdown(app)


if __name__ == "__main__":
    main()
