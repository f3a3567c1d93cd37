"""What a model's version count costs the hot paths: it must not grow with it.

Trains one small model with the app (random forest with a short random
search, so the record has a real tuning table), then gives two models 10 and
1,000 versions that are copies of that record: the folders are written in
the layout ``main`` wrote (full records in registry.json, a metadata.json
beside each hard-linked artifact), then one write through the Registry API
(re-activating the active version) lets the code under test rewrite
registry.json in its own layout. Then, per model: the median of
``Registry.state()`` and of one ``POST /api/<m>/samples`` (one row, Flask
test client, in-process) over a few hundred calls.

    python -m bench.registry_cost [--posts 300] [--states 300]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from backend import create_app, demo
from backend.registry import Registry
from backend.samples import render_rows

COUNTS = (10, 1_000)
COLUMNS = demo.FEATURES + [demo.TARGET]


def _config(folder: Path) -> Path:
    training = {"autoTrain": False, "minSamplesForTraining": 50, "modelType": "random_forest",
                "tuning": {"method": "random", "n_iter": 8, "cv": 3}}
    models = {name: {"task": "classification", "target": demo.TARGET, "features": demo.FEATURES,
                     "training": {**training, "logFile": f"./data/{name}.csv",
                                  "trainingLogFile": "./data/history.log"}}
              for name in ("seed", *(f"v{n}" for n in COUNTS))}
    path = folder / "config.json"
    path.write_text(json.dumps({"storage": {"dataDir": "./data", "modelsDir": "./models"}, "models": models}))
    (folder / "data").mkdir()
    header = render_rows(COLUMNS, [dict(zip(COLUMNS, COLUMNS))])
    for name in models:
        (folder / "data" / f"{name}.csv").write_bytes(header + render_rows(COLUMNS, demo.rows(300, seed=1)))
    return path


def _train_seed(config: Path) -> None:
    client = create_app(config).test_client()
    job = client.post("/api/seed/train", json={}).json
    while job["status"] not in {"completed", "skipped", "failed", "cancelled"}:
        time.sleep(0.1)
        job = client.get(f"/api/seed/jobs/{job['job_id']}").json
    assert job["status"] == "completed" and job["result"]["promoted"], job


def _synthesise(seed: Path, folder: Path, model: str, count: int) -> None:
    """Write ``count`` copies of the seed's v1 in the old layout, then let the Registry rewrite it."""
    metadata = json.loads((seed / "v1" / "metadata.json").read_text())
    versions: dict[str, Any] = {}
    for n in range(1, count + 1):
        version = f"v{n}"
        (folder / version).mkdir(parents=True)
        os.link(seed / "v1" / "model.joblib", folder / version / "model.joblib")
        record = {**metadata, "version": version, "status": "ok" if n % 3 else "rejected"}
        (folder / version / "metadata.json").write_text(json.dumps(record, indent=2))
        versions[version] = {k: v for k, v in record.items() if k not in ("check_rows", "check_predictions")}
    state = {"model": model, "next_version": count + 1, "active": f"v{count - 1}",
             "activation_stack": [f"v{n}" for n in range(max(1, count - 20), count - 1)],
             "trained_rows": 300, "last_training_time": metadata["created_at"], "versions": versions}
    (folder / "registry.json").write_text(json.dumps(state, indent=2))
    Registry(folder, model).activate(state["active"])  # one write in the layout of the code under test


def _median_ms(call, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(folder: Path, posts: int, states: int) -> list[dict[str, Any]]:
    """One entry per version count: registry.json size, state() and sample POST medians in ms."""
    config = _config(folder)
    _train_seed(config)
    models = folder / "models"
    record_kb = (models / "seed" / "v1" / "metadata.json").stat().st_size / 1e3
    for count in COUNTS:
        _synthesise(models / "seed", models / f"v{count}", f"v{count}", count)
    client = create_app(config).test_client()
    rows = demo.rows(posts + 10, seed=2)
    results = []
    for count in COUNTS:
        name = f"v{count}"
        registry = Registry(models / name, name)
        for row in rows[:10]:  # warm up
            assert client.post(f"/api/{name}/samples", json={"samples": [row]}).status_code == 201
        batches = iter(rows[10:])
        post = lambda: client.post(f"/api/{name}/samples", json={"samples": [next(batches)]})  # noqa: E731, B023 (timed in this iteration)
        results.append({"versions": count, "record_kb": record_kb,
                        "registry_kb": registry.path.stat().st_size / 1e3,
                        "state_ms": _median_ms(registry.state, states),
                        "post_ms": _median_ms(post, posts)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--states", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = measure(Path(folder), args.posts, args.states)
    print(f"{'versions':>8} {'record kB':>10} {'registry.json kB':>17} {'state() ms':>11} {'POST /samples ms':>17}")
    for r in results:
        print(f"{r['versions']:>8} {r['record_kb']:>10.1f} {r['registry_kb']:>17.1f} "
              f"{r['state_ms']:>11.3f} {r['post_ms']:>17.3f}")


if __name__ == "__main__":
    main()
