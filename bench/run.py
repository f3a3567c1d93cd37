"""`make bench`: Refit against the bare model and MLflow's scoring server, printed as one table.

Everything runs on this machine over loopback: the servers pinned to one CPU
and the load generator (bench/loadgen.py) to another where there are two.
Every figure is the median of --reps repetitions, with the min-max beside it.
Same data and models everywhere: make_classification(20000, 20 features,
10 informative, random_state=0) as columns f0..f19, a logistic and a random
forest (100 trees, random_state=0) trained by Refit. The bare pipeline and
MLflow serve the very pipeline objects Refit serves.

MLflow is installed into bench/out/mlflow-venv (never a Refit dependency) with
the scikit-learn, pandas and numpy versions Refit runs. Output:
bench/out/latest.md and latest.json; bench/RESULTS.md keeps a recorded run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import requests

from bench import cluster, counting
from bench.procs import RssSampler, Server, cpu_plan, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WORK = OUT / "work"
MLFLOW_VENV = OUT / "mlflow-venv"
FEATURES = [f"f{i}" for i in range(20)]
SERVED = ("logistic", "forest")


# ---------------------------------------------------------------- figures

def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


class Table:
    """The one table: a row per figure, with its reference, the ratio and the budget it is held to."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def add(self, section: str, figure: str, refit: str, reference: str = "", ratio: str = "", budget: str = "",
            verdict: bool | None = None) -> None:
        self.rows.append({"section": section, "figure": figure, "refit": refit, "reference": reference, "ratio": ratio,
                          "budget": budget, "ok": "" if verdict is None else ("yes" if verdict else "**MISSED**")})

    def markdown(self) -> str:
        head = ["section", "figure", "Refit", "reference", "ratio / difference", "budget", "met"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            lines.append("| " + " | ".join([r["section"], r["figure"], r["refit"], r["reference"], r["ratio"],
                                            r["budget"], r["ok"]]) + " |")
        return "\n".join(lines)


# ---------------------------------------------------------------- set-up

def run(command: list[str], **kwargs: Any) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def write_data(folder: Path) -> None:
    import pandas as pd
    from sklearn.datasets import make_classification

    folder.mkdir(parents=True, exist_ok=True)
    for n, names in ((20_000, ("logistic", "forest", "forest20k")), (200_000, ("forest200k",))):
        X, y = make_classification(n_samples=n, n_features=20, n_informative=10, random_state=0)
        frame = pd.DataFrame(X, columns=FEATURES)
        frame["label"] = y
        for name in names:
            frame.to_csv(folder / f"{name}.csv", index=False)


def write_config(folder: Path) -> Path:
    def model(kind: str, csv: str, n_jobs: int = 1) -> dict:
        return {"task": "classification", "target": "label", "features": FEATURES,
                "training": {"autoTrain": False, "logFile": f"./data/{csv}.csv", "modelType": kind,
                             "minSamplesForTraining": 1, "randomState": 0, "nJobs": n_jobs, "timeoutSeconds": 3600}}

    config = {
        "storage": {"dataDir": "./data", "modelsDir": "./ml_models"},
        "models": {
            "logistic": model("logistic", "logistic"),
            "forest": model("random_forest", "forest"),
            # the training-cost models may use both CPUs, and the bare fit gets the same n_jobs
            "forest20k": model("random_forest", "forest20k", n_jobs=2),
            "forest200k": model("random_forest", "forest200k", n_jobs=2),
        },
    }
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def artifact(model: str, version: str = "v1") -> Path:
    return WORK / "ml_models" / model / version / "model.joblib"


def mlflow_python(log: Path) -> Path:
    """The MLflow venv's python, creating the venv with Refit's scikit-learn, pandas and numpy when missing."""
    import numpy
    import pandas
    import sklearn

    python = MLFLOW_VENV / "bin" / "python"
    stamp = MLFLOW_VENV / ".installed"
    pins = [f"scikit-learn=={sklearn.__version__}", f"pandas=={pandas.__version__}", f"numpy=={numpy.__version__}"]
    if stamp.exists() and stamp.read_text() == " ".join(pins):
        return python
    shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(MLFLOW_VENV)])
    with open(log, "ab") as handle:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "mlflow>=3,<4", *pins], check=True, stdout=handle, stderr=subprocess.STDOUT)
    stamp.write_text(" ".join(pins))
    return python


# ---------------------------------------------------------------- measuring

class Bench:
    def __init__(self, reps: int, seconds: float, workers: int):
        self.reps, self.seconds, self.workers = reps, seconds, workers
        self.server_pin, self.client_pin, self.pinning = cpu_plan()
        self.table = Table()
        self.raw: dict[str, Any] = {}
        self.bodies = WORK / "bodies"

    # -- load
    def load(self, url: str, body: Path, concurrency: int, seconds: float | None = None,
             trace: Path | None = None) -> dict:
        command = [*self.client_pin, sys.executable, "-m", "bench.loadgen", "--url", url, "--body", str(body),
                   "--concurrency", str(concurrency), "--seconds", str(seconds or self.seconds)]
        if trace:
            command += ["--trace", str(trace)]
        return json.loads(run(command, cwd=ROOT))

    def reps_of(self, url: str, body: Path, concurrency: int) -> dict[str, dict[str, float]]:
        runs = [self.load(url, body, concurrency) for _ in range(self.reps)]
        failed = sum(r["failures"] for r in runs)
        if failed:
            raise RuntimeError(f"{failed} failed requests against {url}: {runs}")
        return {key: spread([r[key] for r in runs]) for key in ("rps", "p50_ms", "p99_ms")}

    def refit_server(self, name: str, pinned: bool = True) -> Server:
        port = free_port()
        prefix = self.server_pin if pinned else []
        return Server(name, [*prefix, sys.executable, "-m", "backend", "--config", str(WORK / "config.json"), "serve",
                             "--port", str(port), "--workers", str(self.workers)],
                      OUT / f"{name}.log", f"http://127.0.0.1:{port}/health", cwd=ROOT)

    # -- set-up
    def prepare(self) -> None:
        import pandas as pd

        shutil.rmtree(WORK, ignore_errors=True)
        write_data(WORK / "data")
        write_config(WORK)
        for model in SERVED:
            run([sys.executable, "-m", "backend", "--config", str(WORK / "config.json"), "train", model], cwd=ROOT)
        self.bodies.mkdir(parents=True, exist_ok=True)
        frame = pd.read_csv(WORK / "data" / "logistic.csv", nrows=1000).drop(columns="label")
        one = frame.iloc[0].to_dict()
        (self.bodies / "refit-1.json").write_text(json.dumps({"features": one}))
        # many rows: the columnar body, the fastest Refit takes (README); the row body is timed beside it
        (self.bodies / "refit-1000.json").write_text(json.dumps({"columns": frame.to_dict("list")}))
        (self.bodies / "refit-1000-instances.json").write_text(json.dumps({"instances": frame.to_dict("records")}))
        # MLflow's recommended body: the compact split orientation (smaller than records)
        for name, data in (("mlflow-1.json", [list(one.values())]), ("mlflow-1000.json", frame.values.tolist())):
            (self.bodies / name).write_text(json.dumps({"dataframe_split": {"columns": FEATURES, "data": data}}))

    # -- 1. serving
    def serving(self, mlflow: Path) -> None:
        for model in SERVED:
            floor = json.loads(run([*self.server_pin, sys.executable, "-m", "bench.inprocess", "floor",
                                    str(artifact(model)), str(WORK / "data" / f"{model}.csv"),
                                    "--reps", str(self.reps)], cwd=ROOT))
            floor = {cell: {k: spread([r[k] for r in reps]) for k in ("rps", "p50_ms", "p99_ms")}
                     for cell, reps in floor.items()}
            cells: dict[str, dict] = {"floor": floor, "refit": {}, "mlflow": {}}
            with self.refit_server(f"refit-{model}") as server:
                url = server.url + f"/api/{model}/predict"
                self._check_answers(model, server.url)  # before anything is timed
                with RssSampler(server.process.pid) as rss:
                    for rows in (1, 1000):
                        for c in (1, 8):
                            cells["refit"][f"{rows}x{c}"] = self.reps_of(url, self.bodies / f"refit-{rows}.json", c)
                    cells["refit"]["1000x1 instances"] = self.reps_of(url, self.bodies / "refit-1000-instances.json", 1)
                self.raw.setdefault("memory", {})[f"serve ({model}, {self.workers} worker(s)) under load"] = rss.peak_total_kib
            export = WORK / f"mlflow-{model}"
            run([str(mlflow), str(ROOT / "bench" / "mlflow_export.py"), str(artifact(model)),
                 str(WORK / "data" / f"{model}.csv"), str(export)])
            port = free_port()
            env = {"PATH": f"{mlflow.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   "MLFLOW_TRACKING_URI": (WORK / "mlruns").as_uri()}
            with Server(f"mlflow-{model}", [*self.server_pin, str(mlflow.parent / "mlflow"), "models", "serve", "-m",
                                            str(export), "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
                                            "-w", str(self.workers)],
                        OUT / f"mlflow-{model}.log", f"http://127.0.0.1:{port}/ping", env=env):
                for rows in (1, 1000):
                    for c in (1, 8):
                        cells["mlflow"][f"{rows}x{c}"] = self.reps_of(f"http://127.0.0.1:{port}/invocations",
                                                                      self.bodies / f"mlflow-{rows}.json", c)
            self.raw.setdefault("serving", {})[model] = cells
            self._serving_rows(model, cells)

    def _check_answers(self, model: str, base: str) -> None:
        """Refit's answers on the 1,000 bench rows must be scikit-learn's (labels; probabilities within 1e-4)."""
        import joblib
        import numpy as np
        import pandas as pd

        record = requests.get(f"{base}/api/{model}/versions/v1", timeout=30).json()
        body = json.loads((self.bodies / "refit-1000.json").read_text())
        answer = requests.post(f"{base}/api/{model}/predict", json=body, timeout=60).json()
        pipeline = joblib.load(artifact(model))
        frame = pd.DataFrame(body["columns"])[FEATURES]
        proba = pipeline.predict_proba(frame)
        labels = pipeline.classes_[proba.argmax(axis=1)].tolist()
        served = np.array([[row[str(c)] for c in pipeline.classes_] for row in answer["probabilities"]])
        gap = float(np.abs(served - proba).max())
        same = answer["predictions"] == labels and gap <= 1e-4
        self.raw.setdefault("answers", {})[model] = {"runtime": record.get("serving_runtime"), "labels_equal":
                                                     answer["predictions"] == labels, "max_probability_gap": gap}
        self.table.add("serving", f"{model}: answers on the 1,000 bench rows vs scikit-learn "
                       f"(served by {record.get('serving_runtime')}, {record.get('onnx', {}) and record['onnx']['scope']}; "
                       f"conversion {record.get('conversion_seconds')} s)", "labels equal" if answer["predictions"] == labels
                       else "LABELS DIFFER", f"max probability gap {gap:.1e}", "", "same labels, <= 1e-4", same)
        if not same:
            raise RuntimeError(f"{model}: Refit's answers differ from scikit-learn's; nothing timed")

    def _serving_rows(self, model: str, cells: dict) -> None:
        rows_body = cells["refit"]["1000x1 instances"]
        self.table.add("serving", f"{model}, 1000 rows as 'instances' (row objects), concurrency 1: requests/s",
                       fmt(rows_body["rps"], 0), "the columnar body above", "", "")
        for rows in (1, 1000):
            for c in (1, 8):
                cell = f"{rows}x{c}"
                refit, mlflow, floor = cells["refit"][cell], cells["mlflow"][cell], cells["floor"][cell]
                ratio = refit["rps"]["median"] / mlflow["rps"]["median"]
                need = (4.0 if model == "logistic" else 5.0) if rows == 1 else 3.0  # issue 13's budgets
                label = f"{model}, {rows} row(s), concurrency {c}"
                self.table.add("serving", f"{label}: requests/s (floor {fmt(floor['rps'], 0)})", fmt(refit["rps"], 0),
                               f"MLflow {fmt(mlflow['rps'], 0)}", f"{ratio:.2f}x", f">= {need:g}x MLflow",
                               ratio >= need)
                self.table.add("serving", f"{label}: p50 / p99 ms",
                               f"{fmt(refit['p50_ms'], 2)} / {fmt(refit['p99_ms'], 2)}",
                               f"MLflow {fmt(mlflow['p50_ms'], 2)} / {fmt(mlflow['p99_ms'], 2)}; "
                               f"floor {fmt(floor['p50_ms'], 2)} / {fmt(floor['p99_ms'], 2)}")
                if rows == 1 and c == 1:
                    over = refit["p50_ms"]["median"] - floor["p50_ms"]["median"]
                    allowed = 0.6 if model == "logistic" else 0.0  # the forest: below the scikit-learn floor itself
                    budget = "<= floor + 0.6 ms" if model == "logistic" else "< floor"
                    self.table.add("serving", f"{label}: Refit p50 - floor p50", f"{over:+.2f} ms", "", "", budget,
                                   over <= allowed if model == "logistic" else over < 0)

    # -- 2. serving while training, 6. memory during training
    def while_training(self) -> None:
        with self.refit_server("refit-while-training") as server:
            base = server.url
            url, body = f"{base}/api/logistic/predict", self.bodies / "refit-1.json"
            idle = self.reps_of(url, body, 1)
            with RssSampler(server.process.pid) as rss:
                job = requests.post(f"{base}/api/forest200k/train", json={"force": True}, timeout=30).json()["job_id"]
                wait_for(lambda: job_record(base, "forest200k", job)["stage"] == "fitting", 300, "the 200k fit to start")
                busy = self.reps_of(url, body, 1)
                still = job_record(base, "forest200k", job)["stage"] == "fitting"
                requests.delete(f"{base}/api/forest200k/jobs/{job}", timeout=30)
                wait_for(lambda: job_record(base, "forest200k", job)["status"] != "running", 120, "the job to stop")
            memory = self.raw.setdefault("memory", {})
            memory["serve (logistic) + 200k-row forest training, peak of the sum"] = rss.peak_total_kib
            trainer = max((v for v in rss.peak_by_pid.values() if "forkserver" in v[0] or "multiprocessing" in v[0]),
                          key=lambda v: v[1], default=("", 0))
            memory["the training process alone, peak"] = trainer[1]
        ratio = busy["p99_ms"]["median"] / idle["p99_ms"]["median"]
        self.raw["while_training"] = {"idle": idle, "training": busy, "fit_covered_all_reps": still}
        note = "" if still else " (the fit ended before the last repetition)"
        self.table.add("while training", "logistic 1 row, concurrency 1: p50 / p99 ms idle",
                       f"{fmt(idle['p50_ms'], 2)} / {fmt(idle['p99_ms'], 2)}")
        self.table.add("while training", "same, while a 200k-row forest trains" + note,
                       f"{fmt(busy['p50_ms'], 2)} / {fmt(busy['p99_ms'], 2)}", "", f"p99 {ratio:.2f}x idle",
                       "<= 1.5x idle p99", ratio <= 1.5)

    # -- 3. hot reload under load
    def hot_reload(self, swaps: int = 10, seconds: float = 30.0) -> None:
        run([sys.executable, "-m", "backend", "--config", str(WORK / "config.json"), "train", "logistic", "--force"],
            cwd=ROOT)
        with self.refit_server("refit-reload") as server:
            base = server.url
            trace = WORK / "reload-trace.jsonl"
            result: dict[str, Any] = {}
            loader = threading.Thread(target=lambda: result.update(self.load(
                f"{base}/api/logistic/predict", self.bodies / "refit-1.json", 8, seconds, trace)))
            loader.start()
            time.sleep(seconds / (swaps + 1))
            swapped_at = []
            for i in range(swaps):
                target = "v1" if i % 2 == 0 else "v2"
                started = time.perf_counter()
                answer = requests.post(f"{base}/api/logistic/versions/{target}/activate", json={}, timeout=60)
                answer.raise_for_status()
                swapped_at.append((started, time.perf_counter(), target))
                time.sleep(seconds / (swaps + 1))
            loader.join()
        records = [json.loads(line) for line in trace.read_text().splitlines()]
        around = [r["latency"] * 1000 for r in records
                  if any(a - 0.5 <= r["t"] <= b + 0.5 for a, b, _ in swapped_at)]
        versions = sorted({r["version"] for r in records if r["version"]})
        self.raw["hot_reload"] = {"summary": result, "swaps": len(swapped_at), "versions_seen": versions,
                                  "worst_ms_within_0.5s_of_a_swap": max(around, default=0.0)}
        self.table.add("hot reload", f"8 clients, {seconds:g} s, {len(swapped_at)} activations: failed requests",
                       f"{result['failures']} of {result['requests']}", "", "", "0", result["failures"] == 0)
        self.table.add("hot reload", "worst latency within 0.5 s of a swap / p99 overall, ms",
                       f"{max(around, default=0.0):.1f} / {result['p99_ms']:.1f}", f"versions answered: {', '.join(versions)}")

    # -- 4. training overhead
    def training_cost(self) -> None:
        with self.refit_server("refit-training", pinned=False) as server:  # no load now: training may use both CPUs
            base = server.url
            for model, rows in (("forest20k", 20_000), ("forest200k", 200_000)):
                walls, fits = [], []
                for _ in range(self.reps):
                    job = requests.post(f"{base}/api/{model}/train", json={"force": True}, timeout=30).json()["job_id"]
                    record = wait_for(lambda model=model, job=job: done_record(base, model, job), 1800, f"{model} training")
                    if record["status"] != "completed":
                        raise RuntimeError(f"{model} training ended {record['status']}: {record['error']}")
                    walls.append(seconds_between(record["created_at"], record["finished_at"]))
                    version = record["result"]["version"]
                    fits.append(requests.get(f"{base}/api/{model}/versions/{version}", timeout=30).json()["training_seconds"])
                bare = json.loads(run([sys.executable, "-m", "bench.inprocess", "fit", str(artifact(model)),
                                       str(WORK / "data" / f"{model}.csv"), "--rows", str(rows), "--reps", str(self.reps)],
                                      cwd=ROOT))
                refit_s, bare_s = spread(walls), spread(bare["seconds"])
                ratio = refit_s["median"] / bare_s["median"]
                self.raw.setdefault("training", {})[model] = {"refit_job_s": refit_s, "fit_inside_job_s": spread(fits),
                                                             "bare_fit_s": bare_s, "train_rows": bare["rows"]}
                self.table.add("training", f"random forest, {rows // 1000}k rows ({bare['rows']} fitted), n_jobs 2: "
                               f"job wall s (fit inside it: {fmt(spread(fits), 1)})", fmt(refit_s, 1),
                               f"bare fit {fmt(bare_s, 1)}", f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2)

    # -- 5. counting
    def counting(self) -> None:
        with tempfile.TemporaryDirectory(dir=OUT) as folder:
            results = counting.measure(Path(folder))
        self.raw["counting"] = results
        small = statistics.median(results[0]["tick_ms"])
        for r in results:
            tick = spread(r["tick_ms"])
            ratio = tick["median"] / small
            big = r["rows"] == max(x["rows"] for x in results)
            self.table.add("counting", f"check after +1k rows on a {r['rows']:,}-row CSV ({r['file_mb']:.0f} MB; "
                           f"first full scan {r['first_s']:.2f} s), ms", fmt(tick, 3), "", f"{ratio:.2f}x the 10k check",
                           "<= 2x" if big else "", ratio <= 2 if big else None)

    # -- 6. training on a cluster (bench/cluster.py)
    def on_cluster(self) -> None:
        if not cluster.available():
            self.table.add("cluster", "skipped: dask[distributed] is not installed", "")
            return
        self.raw["cluster"] = raw = cluster.measure(self.reps)
        for row in cluster.rows_of(raw):
            self.table.add("cluster", row["figure"], row["refit"], row["reference"], row["ratio"], row["budget"], row["ok"])

    def memory_rows(self) -> None:
        for label, kib in self.raw.get("memory", {}).items():
            self.table.add("memory", f"peak RSS: {label}", f"{kib / 1024:.0f} MiB")


# ---------------------------------------------------------------- helpers

def job_record(base: str, model: str, job: str) -> dict:
    return requests.get(f"{base}/api/{model}/jobs/{job}", timeout=30).json()


def done_record(base: str, model: str, job: str) -> dict | None:
    record = job_record(base, model, job)
    return record if record["status"] not in ("queued", "running") else None


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def versions(mlflow: Path) -> dict[str, str]:
    import numpy
    import pandas
    import sklearn

    import onnxruntime
    import skl2onnx

    mlflow_version = run([str(mlflow), "-c", "import mlflow; print(mlflow.__version__)"]).strip()
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "pandas": pandas.__version__,
            "numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__, "skl2onnx": skl2onnx.__version__,
            "mlflow": mlflow_version,
            "refit commit": run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).strip()}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs ({model}), {memory:.0f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (at least 3 for RESULTS.md)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one load repetition")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for both servers")
    parser.add_argument("--only", nargs="*",
                        choices=["serving", "while_training", "hot_reload", "training", "counting", "cluster"],
                        help="run only these sections (for working on one; RESULTS.md wants them all)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    bench = Bench(args.reps, args.seconds, args.workers)
    mlflow: list[Path] = []
    steps: list[tuple[str, str, Callable[[], None]]] = [
        ("setup", "preparing data and training the two models with Refit", bench.prepare),
        ("setup", "installing MLflow into bench/out/mlflow-venv (first run only)",
         lambda: mlflow.append(mlflow_python(OUT / "mlflow-install.log"))),
        ("serving", "1. serving: floor, Refit, MLflow", lambda: bench.serving(mlflow[0])),
        ("while_training", "2. serving while a 200k-row forest trains", bench.while_training),
        ("hot_reload", "3. hot reload under load", bench.hot_reload),
        ("training", "4. training cost against a bare fit", bench.training_cost),
        ("counting", "5. counting cost", bench.counting),
        ("cluster", "6. training on a Dask cluster against the same training run locally", bench.on_cluster),
    ]
    for section, title, step in steps:
        if section != "setup" and args.only and section not in args.only:
            continue
        print(f"[{time.monotonic() - began:6.0f} s] {title}", flush=True)
        step()
        (OUT / "latest.json").write_text(json.dumps(bench.raw, indent=2, default=str))  # kept if a later step fails
    bench.memory_rows()
    header = (f"Refit benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
              f"- machine: {machine()}\n- pinning: {bench.pinning}\n"
              f"- versions: {', '.join(f'{k} {v}' for k, v in versions(mlflow[0]).items())}\n"
              f"- {args.reps} repetitions per figure (median, min-max in brackets); load repetitions of "
              f"{args.seconds:g} s; {args.workers} worker process(es) for Refit and for MLflow\n"
              f"- whole run: {time.monotonic() - began:.0f} s\n")
    report = header + "\n" + bench.table.markdown() + "\n"
    (OUT / "latest.md").write_text(report)
    print()
    print(report)
    missed = [r for r in bench.table.rows if r["ok"] == "**MISSED**"]
    print(f"{len(missed)} budget(s) missed" if missed else "every budget met")


if __name__ == "__main__":
    main()
