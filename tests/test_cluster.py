"""Training on a Dask cluster (CONTRACT §12), against a real scheduler and worker processes on loopback ports."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend import create_app, fits, shutdown, tuning, windows
from backend.cluster import DaskExecutor, SchedulerProbe
from backend.config import load_config
from backend.errors import ConfigError
from backend.executor import LocalExecutor
from tests.helpers import ROOT, free_port, wait_job, wait_until, write_config, write_samples

distributed = pytest.importorskip("distributed")

# Auto-selection between two forests, then a random search: two windows, 2 candidates x 3 folds,
# 4 trials x 3 folds, the fit and the refit are the job's 22 tasks.
TUNED = {"modelType": "auto", "candidates": ["random_forest", "extra_trees"], "plots": False,
         "tuning": {"method": "random", "n_iter": 4, "cv": 3,
                    "searchSpace": {"max_depth": [3, 6], "min_samples_leaf": [1, 4]}}}
TUNED_TASKS = 2 + 2 * 3 + 4 * 3 + 1 + 1
# Long enough to act on mid-job: 16 trials x 3 folds on 800 rows.
LONG_TRIALS = 16
LONG = {"modelType": "random_forest", "hyperparameters": {"n_estimators": 15}, "plots": False, "trainingWindow": "all",
        "tuning": {"method": "random", "n_iter": LONG_TRIALS, "cv": 3,
                   "searchSpace": {"max_depth": {"low": 3, "high": 16}, "min_samples_leaf": [1, 2, 4]}}}


class DaskCluster:
    """A real ``dask scheduler`` and single-threaded ``dask worker`` processes on free loopback ports."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        # the time-outs end a cluster whose test process died without stopping it
        self.scheduler = self._start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                                   self.address.rsplit(":", 1)[1], "--no-dashboard", "--idle-timeout", "600"])
        self.workers: list[subprocess.Popen] = []
        self.client = None
        try:
            self.workers = [self.add_worker(f"w{i}") for i in range(workers)]
            self.client = distributed.Client(self.address, timeout=60, set_as_default=False)
            if workers:
                self.client.wait_for_workers(workers, timeout=120)
            self.client.get_task_stream()  # the scheduler records its task stream from now on
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        # workers import Refit's code (the checkout, as the README says), never its data folder;
        # BLAS pools of one thread, as the nanny sets them up for its workers
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        log = open(self.folder / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", *args], cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)

    def add_worker(self, name: str) -> subprocess.Popen:
        # --no-nanny: a killed worker stays dead (a nanny would start it again), so the job must finish on the others
        return self._start(name, ["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
                                  "--no-dashboard", "--host", "127.0.0.1", "--name", name, "--preload", "backend.candidate",
                                  "--local-directory", str(self.folder / name), "--death-timeout", "60"])

    def worker_addresses(self) -> set[str]:
        return set(self.client.scheduler_info()["workers"])

    def tasks_of(self, job_id: str) -> list[dict]:
        """The task-stream records of a job's own tasks (keys ``refit_<fit>-<job id>-<n>``)."""
        return [t for t in self.client.get_task_stream() if str(t["key"]).startswith("refit_")
                and f"-{job_id}-" in str(t["key"])]

    def kill_worker_holding(self, key_prefix: str) -> str:
        """SIGKILL the worker holding a key that starts with ``key_prefix``; return its address."""
        held = {key: where for key, where in self.client.who_has().items() if str(key).startswith(key_prefix) and where}
        address = next(iter(held.values()))[0]
        name = self.client.scheduler_info()["workers"][address]["name"]
        os.kill(self.workers[int(name[1:])].pid, signal.SIGKILL)
        return address

    def stop(self) -> None:
        """SIGKILL every process: nothing of a test's cluster needs a clean shutdown."""
        if self.client is not None:
            self.client.close(timeout=5)
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One scheduler and two workers for this module's tests (the start-up is paid once per test process)."""
    started = DaskCluster(tmp_path_factory.mktemp("dask"))
    yield started
    started.stop()


@pytest.fixture
def own_cluster(tmp_path):
    """A cluster a test may break (kill a worker of)."""
    started = DaskCluster(tmp_path / "dask")
    yield started
    started.stop()


def on_cluster(folder: Path, address: str, rows: int = 400, **training) -> Path:
    """A config folder with ``rows`` demo rows whose trainings run on the cluster at ``address``."""
    config = write_config(folder, **training)
    document = json.loads(config.read_text())
    document["compute"] = {"executor": "dask", "daskScheduler": address}
    config.write_text(json.dumps(document))
    write_samples(folder / "data" / "samples.csv", rows, seed=3)
    return config


def train(client, body: dict | None = None) -> dict:
    job_id = client.post("/api/parima/train", json=body or {"force": True}).json["job_id"]
    return wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json, timeout=240)


def small_rows() -> fits.Rows:
    """200 rows of two features and a holdout, for the executor on its own."""
    X = pd.DataFrame({"a": np.arange(200.0), "b": np.arange(200.0) % 7})
    return fits.Rows(X, pd.Series(np.arange(200) % 2), windows.Holdout(np.arange(160, 200), "first_version", 160, 200))


@pytest.fixture(scope="module")
def tuned_on_cluster(cluster, tmp_path_factory):
    """A tuned training that ran on the module's cluster: the app, its finished job and the version record."""
    folder = tmp_path_factory.mktemp("tuned")
    app = create_app(on_cluster(folder, cluster.address, **TUNED))
    client = app.test_client()
    job = train(client)
    record = client.get("/api/parima/versions/v1").json if job["status"] == "completed" else None
    yield app, client, job, record
    shutdown(app)


@pytest.mark.server
def test_a_tuned_training_completes_on_the_cluster_and_serves(tuned_on_cluster, cluster):
    app, client, job, record = tuned_on_cluster
    assert job["status"] == "completed" and job["result"]["promoted"], job
    assert record["executor"] == "dask" and record["scheduler"] == cluster.address
    assert record["tasks_run"] == TUNED_TASKS and record["tuning"]["n_trials"] == 4
    assert set(record["selection"]["candidates"]) == {"random_forest", "extra_trees"}
    assert len(record["promotion"]["candidates"]) == 2  # both windows were tried
    answer = client.post("/api/parima/predict", json={"features": dict(zip(
        ["frustumCoverage", "occlusionRatio", "meanVisibleDistance", "deviceFPS", "deviceCPULoad"], [0.6, 0.1, 8, 72, 0.3]))})
    assert answer.status_code == 200 and answer.json["model_version"] == "v1"
    assert client.get("/health").json["executor"] == {"kind": "dask", "scheduler": cluster.address,
                                                      "scheduler_answers": True}
    events = [e["event_type"] for e in client.get("/api/parima/training/history").json["events"]]
    assert events == ["TRAINING_STARTED", "TRAINING_COMPLETED", "MODEL_PROMOTED"]


@pytest.mark.server
def test_the_jobs_tasks_were_run_by_the_workers(tuned_on_cluster, cluster):
    _, _, job, record = tuned_on_cluster
    ran = cluster.tasks_of(job["job_id"])
    assert len(ran) == record["tasks_run"]  # the scheduler saw each task once: nothing ran in the training process
    assert {t["worker"] for t in ran} == cluster.worker_addresses()  # both workers took some
    kinds = {str(t["key"]).split("-")[0] for t in ran}
    assert kinds == {"refit_score_window", "refit_score_fold", "refit_fit_window"}


@pytest.mark.server
def test_an_estimators_own_parallel_loops_run_as_tasks_of_the_cluster(cluster):
    from sklearn.ensemble import RandomForestClassifier

    executor = DaskExecutor(cluster.address, n_jobs=2, name="nested")  # nJobs 2
    try:
        executor.share(small_rows())
        forest = executor.run([(fits.fit_window, (RandomForestClassifier(n_estimators=4, n_jobs=2), "all", False))])[0]
        assert len(forest.estimators_) == 4
        # joblib's Dask backend sent the forest's trees to the cluster as tasks of their own
        trees = [t for t in cluster.client.get_task_stream() if "parallel_build_trees" in str(t["key"])]
        assert trees and {t["worker"] for t in trees} <= cluster.worker_addresses()
    finally:
        executor.close()


@pytest.mark.server
def test_cancel_frees_the_workers(cluster, tmp_path):
    app = create_app(on_cluster(tmp_path, cluster.address, rows=800, **LONG))
    client = app.test_client()
    try:
        job_id = client.post("/api/parima/train", json={"force": True}).json["job_id"]
        wait_until(lambda: cluster.tasks_of(job_id), timeout=120, interval=0.05, what="the job's first task")
        assert client.delete(f"/api/parima/jobs/{job_id}").status_code == 202
        job = wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json)
        assert job["status"] == "cancelled"

        def freed() -> bool:  # the scheduler forgot every task of the job and no worker is busy with one
            left = cluster.client.run_on_scheduler(
                lambda dask_scheduler, part=f"-{job_id}-": [k for k in dask_scheduler.tasks if part in str(k)])
            return not left and not any(cluster.client.processing().values())

        wait_until(freed, timeout=60, what="the workers to be freed")
        assert len(cluster.tasks_of(job_id)) < LONG_TRIALS * 3  # stopped well before the end
        assert client.get("/api/parima/versions").json["versions"] == []
    finally:
        shutdown(app)


@pytest.mark.server
def test_a_stopped_scheduler_fails_the_job_and_the_active_version_stays(trained_folder, tmp_path):
    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    scheduler = DaskCluster(tmp_path / "dask", workers=0)
    config = on_cluster(tmp_path, scheduler.address, rows=0)
    app = create_app(config)
    client = app.test_client()
    try:
        assert client.get("/health").json["executor"]["scheduler_answers"] is True
        scheduler.stop()
        job = train(client)
        assert job["status"] == "failed" and job["error"]["reason"] == "executor_unavailable", job
        assert scheduler.address in job["error"]["message"]
        assert client.get("/api/parima/training/status").json["active_version"] == "v1"
        answer = client.post("/api/parima/predict", json={"instances": [{f: 1 for f in (
            "frustumCoverage", "occlusionRatio", "meanVisibleDistance", "deviceFPS", "deviceCPULoad")}]})
        assert answer.status_code == 200 and answer.json["model_version"] == "v1"
        failed = [e for e in client.get("/api/parima/training/history").json["events"] if e["event_type"] == "TRAINING_FAILED"]
        assert failed[-1]["details"]["reason"] == "executor_unavailable"
    finally:
        shutdown(app)
    # a new process asks the scheduler afresh: it no longer answers
    assert create_app(config).test_client().get("/health").json["executor"]["scheduler_answers"] is False


@pytest.mark.server
def test_a_worker_killed_mid_job_does_not_fail_it(own_cluster, tmp_path):
    app = create_app(on_cluster(tmp_path, own_cluster.address, rows=800, **LONG))
    client = app.test_client()
    try:
        job_id = client.post("/api/parima/train", json={"force": True}).json["job_id"]
        wait_until(lambda: len(own_cluster.tasks_of(job_id)) >= 4, timeout=120, interval=0.05, what="a few tasks done")
        killed = own_cluster.kill_worker_holding(f"refit_rows-{job_id}-")  # one holding the scattered rows
        job = wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json, timeout=240)
        assert job["status"] == "completed", job
        record = client.get(f"/api/parima/versions/{job['result']['version']}").json
        assert record["executor"] == "dask" and record["tuning"]["n_trials"] == LONG_TRIALS
        assert record["tasks_run"] >= LONG_TRIALS * 3 + 1
        assert killed not in own_cluster.worker_addresses()
        assert killed not in {t["worker"] for t in own_cluster.tasks_of(job_id)[-3:]}  # the survivor finished it
    finally:
        shutdown(app)


@pytest.mark.server
def test_rows_lost_with_their_only_holder_are_scattered_again(own_cluster):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    rows = small_rows()
    calls = tuning.fold_calls(LogisticRegression(), "all", KFold(4), 4, "classification", "accuracy")
    executor = DaskExecutor(own_cluster.address, name="lost")
    try:
        executor.share(rows)
        own_cluster.kill_worker_holding("refit_rows-lost-")  # before any batch copied them to the other worker
        wait_until(lambda: len(own_cluster.worker_addresses()) == 1, timeout=60, what="the scheduler to see it go")
        first = executor.run(calls[:1])  # its task is cancelled for the lost rows: they are scattered again
        assert executor.scatters == 2 and isinstance(first[0], fits.FoldScore)
        results = executor.run(calls)
        assert executor.tasks_run == 5
        # the same folds in this process give the same scores
        local = LocalExecutor()
        local.share(rows)
        assert [r.value for r in local.run(calls)] == [r.value for r in results] and first[0] == results[0]
    finally:
        executor.close()


@pytest.mark.server
def test_a_deadline_leaves_out_the_trials_the_cluster_had_not_begun(cluster):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    executor = DaskExecutor(cluster.address, name="deadline")
    try:
        executor.share(small_rows())
        calls = tuning.fold_calls(LogisticRegression(), "all", KFold(2), 2, "classification", "accuracy") * 6
        results = executor.run(calls, deadline=time.monotonic() - 1, group=2)
        trials = [results[i:i + 2] for i in range(0, 12, 2)]
        assert all(r is not None for r in trials[0])  # the first trial always runs
        assert all(all(r is None for r in t) or all(r is not None for r in t) for t in trials)  # whole trials only
        assert any(r is None for t in trials for r in t)  # the ones not begun were left out
    finally:
        executor.close()


# -- without a cluster -----------------------------------------------------------------------------


def test_the_local_executor_leaves_out_groups_not_begun_by_the_deadline():
    ran: list[int] = []
    calls = [(lambda rows, i: ran.append(i) or i, (i,)) for i in range(6)]
    executor = LocalExecutor()
    assert executor.run(calls, group=3, deadline=time.monotonic() - 1) == [0, 1, 2, None, None, None]
    assert executor.run(calls) == list(range(6)) and executor.summary()["executor"] == "local"


def test_the_health_probe_asks_the_scheduler_at_most_every_five_seconds():
    now, asked = [100.0], []
    probe = SchedulerProbe("tcp://127.0.0.1:8786", clock=lambda: now[0], ask=lambda a: asked.append(a) or True)
    assert probe.status() == {"kind": "dask", "scheduler": "tcp://127.0.0.1:8786", "scheduler_answers": True}
    now[0] += 4.9
    probe.status()
    assert len(asked) == 1
    now[0] += 0.1
    probe.status()
    assert len(asked) == 2


def test_health_names_the_local_executor(client):
    assert client.get("/health").json["executor"] == {"kind": "local"}


@pytest.mark.parametrize("compute, key", [
    ({"executor": "dask"}, "compute.daskScheduler"),
    ({"executor": "dask", "daskScheduler": "http://host:8786"}, "compute.daskScheduler"),
    ({"executor": "ray", "daskScheduler": "tcp://host:8786"}, "compute.executor"),
    ({"executor": "local", "workers": 3}, "compute.workers"),
])
def test_a_bad_compute_block_stops_the_start_naming_the_key(tmp_path, compute, key):
    config = write_config(tmp_path)
    document = json.loads(config.read_text())
    document["compute"] = compute
    config.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=key):
        load_config(config)


def test_the_compute_block_defaults_to_local_and_reads_the_scheduler(tmp_path):
    assert load_config(write_config(tmp_path)).compute.executor == "local"
    config = on_cluster(tmp_path, "tcp://127.0.0.1:8786", rows=0)
    compute = load_config(config).compute
    assert (compute.executor, compute.dask_scheduler) == ("dask", "tcp://127.0.0.1:8786")


def test_without_dask_the_dask_executor_stops_the_start_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the optional package were not installed
    with pytest.raises(ConfigError, match=r"dask\[distributed\]"):
        load_config(on_cluster(tmp_path, "tcp://127.0.0.1:8786", rows=0))
