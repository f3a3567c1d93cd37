"""The command line: each command called in-process through ``backend.cli.main``, plus real `python -m backend` runs."""
import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import requests

from backend import demo
from backend.cli import main
from tests.helpers import ROOT, wait_job, write_config


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """Run one command in this process as `python -m backend --config CONFIG ...` would; return what it printed."""

    def run(config, *args, check=True) -> Result:
        capsys.readouterr()  # drop anything printed before
        try:
            code = main(["--config", str(config), *args])
        except SystemExit as exc:  # argparse refusing the arguments
            code = exc.code
        out, err = capsys.readouterr()
        if check:
            assert code == 0, err
        return Result(code, out, err)

    return run


def program(config, *args) -> subprocess.CompletedProcess:
    """Run `python -m backend --config CONFIG ...` as a separate process, as users do."""
    return subprocess.run([sys.executable, "-m", "backend", "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.mark.server
def test_python_m_backend_runs_the_commands(tmp_path):
    config = write_config(tmp_path)
    wrote = program(config, "demo-data")
    assert wrote.returncode == 0 and "wrote 600 demo samples" in wrote.stdout, wrote.stderr
    status = program(config, "status", "parima")
    assert status.returncode == 0 and json.loads(status.stdout)["total_samples"] == 600, status.stderr
    refused = program(config, "status", "nope")
    assert refused.returncode == 1 and refused.stderr.strip() == "error: no model named 'nope' in the config"


def test_demo_data_train_versions_history_status(tmp_path, cli):
    config = write_config(tmp_path)
    assert "wrote 600 demo samples" in cli(config, "demo-data").stdout
    assert "kept it" in cli(config, "demo-data").stdout

    trained = cli(config, "train", "parima").stdout
    assert "version: v1" in trained and "promoted: yes" in trained and "f1_macro:" in trained
    assert "skipped" in cli(config, "train", "parima").stdout
    again = cli(config, "train", "parima", "--force", "--model-type", "logistic").stdout
    assert "version: v2" in again

    table = cli(config, "versions", "parima").stdout.splitlines()
    assert table[0].split()[:2] == ["version", "status"] and table[1].startswith("v2") and "v1" in table[2]
    records = json.loads(cli(config, "versions", "parima", "--json").stdout)
    assert [r["version"] for r in records] == ["v2", "v1"]

    events = [json.loads(line) for line in cli(config, "history", "parima", "--limit", "4").stdout.splitlines()]
    assert len(events) == 4 and events[-1]["event_type"] in ("MODEL_PROMOTED", "MODEL_REJECTED")
    status = json.loads(cli(config, "status", "parima").stdout)
    assert status["total_samples"] == 600 and status["active_version"] in ("v1", "v2")


def test_errors_are_one_line_and_non_zero(tmp_path, cli):
    config = write_config(tmp_path)
    result = cli(config, "train", "nope", check=False)
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0 and "nope" in result.stderr
    failed = cli(config, "train", "parima", "--force", check=False)  # no samples yet
    assert failed.returncode != 0 and "data_quality" in failed.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": {"parima": {"target": "x", "colour": 1}}}')
    result = cli(bad, "status", check=False)
    assert result.returncode != 0 and "models.parima.colour" in result.stderr
    (tmp_path / "x").mkdir()
    unknown = write_config(tmp_path / "x", hyperparameters={"colour": "red"})
    result = cli(unknown, "serve", "--port", "0", check=False)  # refused before any worker starts
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "models.parima.training.hyperparameters" in result.stderr
    assert cli(config, "simulate", "parima", "--rate", "0", "--duration", "1", check=False).returncode == 2


def test_simulate_posts_samples_to_a_running_server(tmp_path, servers, cli):
    config = write_config(tmp_path, autoTrain=False)
    server = servers(config)
    out = cli(config, "simulate", "parima", "--rate", "40", "--duration", "1.5", "--url", server.url).stdout
    assert "sent 60/60" in out
    status = requests.get(f"{server.url}/api/parima/training/status", timeout=10).json()
    assert status["total_samples"] == 60 and status["auto_training_enabled"] is False
    assert server.stop() == 0


@pytest.mark.server
def test_history_follow_prints_new_events(tmp_path, cli):
    config = write_config(tmp_path)
    cli(config, "demo-data")
    history = subprocess.Popen([sys.executable, "-m", "backend", "--config", str(config), "history", "parima", "--follow"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        cli(config, "train", "parima")
        line = history.stdout.readline()
        assert json.loads(line)["event_type"] == "TRAINING_STARTED"
    finally:
        history.terminate()
        history.wait(10)


def test_train_all_activate_and_rollback(tmp_path, cli):
    config = write_config(tmp_path)
    cli(config, "demo-data")
    out = cli(config, "train", "--all").stdout
    assert "parima: version: v1" in out
    cli(config, "train", "parima", "--force")
    assert cli(config, "rollback", "parima").stdout.strip() == "parima: v2 -> v1"
    assert cli(config, "activate", "parima", "v2").stdout.strip() == "parima: v1 -> v2"
    refused = cli(config, "activate", "parima", "v9", check=False)
    assert refused.returncode != 0 and "v9" in refused.stderr
    assert cli(config, "train", check=False).returncode != 0


@pytest.mark.server
def test_rollout_commands_act_on_the_running_server(trained_folder, tmp_path, servers, cli):
    import shutil

    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    config = write_config(tmp_path, promotion={"mode": "manual", "minLabels": 20}, autoTrain=False,
                          drift={"enabled": False})
    server = servers(config)
    url = ["--url", server.url]
    job = requests.post(f"{server.url}/api/parima/train", json={"force": True}, timeout=10).json()
    wait_job(lambda: requests.get(f"{server.url}/api/parima/jobs/{job['job_id']}", timeout=10).json())
    assert requests.get(f"{server.url}/api/parima/versions/v2", timeout=10).json()["status"] == "staged"
    started = json.loads(cli(config, "experiments", "parima", *url, "--start", "ab", "--versions", "v1", "v2").stdout)
    assert started["status"] == "running" and started["split"] == [0.5, 0.5]
    rows = demo.rows(6, seed=3)
    answers = [requests.post(f"{server.url}/api/parima/predict", timeout=10,
                             json={"features": {k: r[k] for k in demo.FEATURES}}).json() for r in rows]
    feedback_csv = tmp_path / "labels.csv"
    feedback_csv.write_text("prediction_id,label\n" + "".join(f"{a['prediction_id']},{r[demo.TARGET]}\n"
                                                              for a, r in zip(answers, rows)))
    assert json.loads(cli(config, "feedback", "parima", *url, "--file", str(feedback_csv)).stdout)["accepted"] == 6
    again = cli(config, "feedback", "parima", *url, "--file", str(feedback_csv), check=False)
    assert again.returncode == 1 and "already_labelled" not in again.stdout and "422" in again.stderr
    listed = cli(config, "experiments", "parima", *url).stdout
    assert started["id"] in listed and "running" in listed
    cli(config, "experiments", "parima", *url, "--stop", started["id"])
    assert json.loads(cli(config, "promote", "parima", "v2", *url).stdout)["active_version"] == "v2"
    refused = cli(config, "reject", "parima", "v2", *url, check=False)
    assert refused.returncode == 1 and "version_not_staged" in refused.stderr
    assert requests.get(f"{server.url}/health", timeout=10).json()["models"]["parima"]["version"] == "v2"
