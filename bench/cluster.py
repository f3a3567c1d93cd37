"""`make bench`'s cluster section: the same tuned training run locally and on a Dask cluster (CONTRACT §12).

A random search of 32 trials with 5-fold CV (160 fits of a random forest) on
50,000 rows of make_classification(10 features, 6 informative, random_state=0),
trained by a real `python -m backend serve`: once with `compute.executor`
"local" (nJobs 1: one fit after another in the training process) and once with
"dask" against a `distributed.LocalCluster` of 2 worker processes x 1 thread on
this machine. Figures: the job's wall time (POST to decision, from the job
record) and the tuning inside it, the speed-up, and the overhead of a one-trial
job (5 folds) on the cluster against the same job run locally.

The training process runs at nice 19 (it yields to requests); the cluster's
workers are reniced to 19 too, so both sides get the same share of a CPU that
other processes want. Each side first runs one unmeasured one-trial job (imports,
the forkserver, the workers' first tasks); then the measured jobs alternate between
the two servers, so a change in the machine's load falls on both. Run alone:
`python -m bench.cluster`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import requests

from bench.procs import Server, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "out" / "cluster"
ROWS = 50_000
TRIALS = 32
FOLDS = 5
FEATURES = [f"f{i}" for i in range(10)]
SPACE = {"n_estimators": {"low": 5, "high": 15}, "max_depth": {"low": 3, "high": 8}}


def available() -> bool:
    """Whether the optional dask[distributed] package is installed (the section is skipped otherwise)."""
    from backend.executor import installed

    return installed()


def write_data(folder: Path, rows: int) -> None:
    import pandas as pd
    from sklearn.datasets import make_classification

    folder.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(n_samples=rows, n_features=len(FEATURES), n_informative=6, random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["label"] = y
    frame.to_csv(folder / "rows.csv", index=False)


def write_config(folder: Path, compute: dict[str, Any]) -> Path:
    training = {"autoTrain": False, "logFile": "./data/rows.csv", "modelType": "random_forest", "nJobs": 1,
                "minSamplesForTraining": 1, "randomState": 0, "timeoutSeconds": 3600, "trainingWindow": "all",
                "plots": False, "splitStrategy": "random", "cvStrategy": "stratified",
                "tuning": {"method": "random", "n_iter": TRIALS, "cv": FOLDS, "searchSpace": SPACE}}
    config = {"storage": {"dataDir": "./data", "modelsDir": f"./ml_models-{compute['executor']}"}, "compute": compute,
              "models": {"rows": {"task": "classification", "target": "label", "features": FEATURES, "training": training}}}
    path = folder / f"config-{compute['executor']}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def train(base: str, trials: int) -> dict[str, float]:
    """One job on a running server; its wall seconds (created to finished) and its tuning's own seconds."""
    from datetime import datetime

    body = {"force": True, "tuning": {"n_iter": trials}}
    job_id = requests.post(f"{base}/api/rows/train", json=body, timeout=30).json()["job_id"]

    def ended() -> dict | None:
        job = requests.get(f"{base}/api/rows/jobs/{job_id}", timeout=30).json()
        return job if job["status"] not in ("queued", "running") else None

    job = wait_for(ended, 3600, f"the {trials}-trial job")
    if job["status"] != "completed":
        raise RuntimeError(f"the {trials}-trial job ended {job['status']}: {job['error']}")
    record = requests.get(f"{base}/api/rows/versions/{job['result']['version']}", timeout=30).json()
    wall = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()
    # the machine's 1-minute load average at the end: other processes wanting the CPU show here
    return {"wall": wall, "tuning": record["tuning"]["seconds"], "tasks_run": record["tasks_run"],
            "load": round(os.getloadavg()[0], 2)}


def renice(client: Any, niceness: int) -> None:
    """Give the cluster's workers the training process's CPU priority."""
    for pid in client.run(os.getpid).values():
        os.setpriority(os.PRIO_PROCESS, pid, niceness)


def measure(reps: int, rows: int = ROWS, trials: int = TRIALS) -> dict[str, Any]:
    """Run the jobs on both executors, alternating (so a change in the machine's load hits both); return the figures."""
    from contextlib import ExitStack

    from distributed import Client, LocalCluster

    from backend.training_process import TRAINING_NICENESS

    shutil.rmtree(WORK, ignore_errors=True)
    write_data(WORK / "data", rows)
    raw: dict[str, Any] = {"reps": reps, "rows": rows, "trials": trials}
    with ExitStack() as stack:
        cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                   dashboard_address=None, host="127.0.0.1"))
        renice(stack.enter_context(Client(cluster)), TRAINING_NICENESS)
        servers = {}
        for compute in ({"executor": "local"}, {"executor": "dask", "daskScheduler": cluster.scheduler_address}):
            kind, port = compute["executor"], free_port()
            servers[kind] = stack.enter_context(Server(
                f"refit-{kind}", [sys.executable, "-m", "backend", "--config", str(write_config(WORK, compute)), "serve",
                                  "--port", str(port)], WORK / f"refit-{kind}.log", f"http://127.0.0.1:{port}/health",
                cwd=ROOT))
            raw[kind] = {"one_trial": [], "search": []}
        for server in servers.values():
            train(server.url, 1)  # warm-up, not measured
        for figure, n in (("one_trial", 1), ("search", trials)):
            for _ in range(reps):
                for kind, server in servers.items():
                    raw[kind][figure].append(train(server.url, n))
    return raw


def rows_of(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows (bench.run's columns): the search's wall and speed-up, the one-trial overhead.

    The speed-up is the median over the repetitions of local / cluster, each pair run one after the
    other, so a pair shares the machine's load of the moment.
    """
    local, dask = raw["local"], raw["dask"]

    def walls(side: dict[str, Any], figure: str, key: str = "wall") -> dict[str, float]:
        return spread([r[key] for r in side[figure]])

    pairs = [a["wall"] / b["wall"] for a, b in zip(local["search"], dask["search"])]
    tuning_pairs = [a["tuning"] / b["tuning"] for a, b in zip(local["search"], dask["search"])]
    one_pairs = [b["wall"] - a["wall"] for a, b in zip(local["one_trial"], dask["one_trial"])]
    loads = [r["load"] for side in (local, dask) for figure in ("search", "one_trial") for r in side[figure]]
    tasks = dask["search"][0]["tasks_run"]
    speedup = statistics.median(pairs)
    return [
        {"figure": f"random search {raw['trials']} trials x {FOLDS}-fold CV, {raw['rows']:,} rows: job wall s, "
                   f"LocalCluster 2 workers x 1 thread ({tasks} tasks) vs local nJobs 1 (speed-up: median of "
                   f"{len(pairs)} back-to-back pairs {', '.join(f'{p:.2f}' for p in pairs)}; load average "
                   f"{min(loads):.1f}-{max(loads):.1f})",
         "refit": fmt(walls(dask, "search")), "reference": f"local {fmt(walls(local, 'search'))}",
         "ratio": f"{speedup:.2f}x faster", "budget": ">= 1.6x", "ok": speedup >= 1.6},
        {"figure": "the tuning inside those jobs, s", "refit": fmt(walls(dask, "search", "tuning")),
         "reference": f"local {fmt(walls(local, 'search', 'tuning'))}",
         "ratio": f"{statistics.median(tuning_pairs):.2f}x faster", "budget": "", "ok": None},
        {"figure": f"one-trial job ({FOLDS} folds, same rows): job wall s", "refit": fmt(walls(dask, "one_trial")),
         "reference": f"local {fmt(walls(local, 'one_trial'))}", "ratio": f"{statistics.median(one_pairs):+.1f} s",
         "budget": "", "ok": None},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=ROWS, help="fewer for a quick run (RESULTS.md wants 50,000)")
    parser.add_argument("--trials", type=int, default=TRIALS, help="fewer for a quick run (RESULTS.md wants 32)")
    args = parser.parse_args()
    if not available():
        sys.exit("the cluster benchmark needs dask[distributed]: pip install -r requirements-optional.txt")
    raw = measure(args.reps, args.rows, args.trials)
    (WORK / "latest.json").write_text(json.dumps(raw, indent=2))
    print("| figure | cluster | local | ratio / difference | budget | met |\n|---|---|---|---|---|---|")
    for row in rows_of(raw):
        met = "" if row["ok"] is None else ("yes" if row["ok"] else "**MISSED**")
        print(f"| {row['figure']} | {row['refit']} | {row['reference']} | {row['ratio']} | {row['budget']} | {met} |")


if __name__ == "__main__":
    main()
