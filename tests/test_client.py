"""backend.client.Client against a real server: every method, errors as exceptions, the CLI's remote commands."""
import json
import os
import subprocess
import sys

import pytest

from backend import demo
from backend.client import (APIError, Client, ConflictError, NotFoundError, TransportError, UnauthorizedError,
                            ValidationError)
from tests.helpers import ROOT, free_port, wait_job, write_samples

KEY = "client-key"
ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.3}


@pytest.fixture
def server(trained_config, servers):
    return servers(trained_config, env={"REFIT_API_KEY": KEY})


def test_every_method_answers_with_the_json_body(server, tmp_path, capsys):
    refit = Client(server.url, api_key=KEY)
    health = refit.health()
    assert health["auth_required"] is True and health["models"]["parima"]["version"] == "v1"
    assert refit.ready()["ready"] is True
    assert [m["name"] for m in refit.models()["models"]] == ["parima"]
    assert refit.add_samples("parima", demo.rows(120, seed=5))["accepted"] == 120
    one = refit.predict("parima", ROW)
    assert one["model_version"] == "v1" and str(one["prediction"]) in one["probabilities"]
    assert len(refit.predict_many("parima", [ROW, ROW])["predictions"]) == 2
    assert refit.monitoring("parima")["live"]["n_labels"] == 120  # the posted rows, scored as they arrived
    assert refit.status("parima")["total_samples"] == 420
    assert refit.data_quality("parima")["ok"] is True
    assert refit.version("parima", "v1")["version"] == [v["version"] for v in refit.versions("parima")["versions"]][0]
    assert refit.feature_importance("parima", "v1")["features"]
    plot = refit.version("parima", "v1")["plots"][0]
    assert refit.plot("parima", "v1", plot).startswith(b"\x89PNG")
    assert refit.history("parima", limit=3)["events"][-1]["event_type"] == "MODEL_PROMOTED"

    job = refit.train("parima", force=True, progress=True)  # waits, drawing a tqdm bar on stderr
    assert job["status"] == "completed" and job["result"]["version"] == "v2", job
    assert "100/100" in capsys.readouterr().err
    assert refit.job("parima", job["job_id"])["result"] == job["result"]
    assert job["job_id"] in [j["job_id"] for j in refit.jobs("parima", status="completed")["jobs"]]
    assert [v["version"] for v in refit.compare("parima", ["v1", "v2"])["versions"]] == ["v1", "v2"]
    assert refit.activate("parima", "v2", force=True)["active_version"] == "v2"  # force: it may have been rejected
    assert refit.rollback("parima", to_version="v1") == {"model": "parima", "active_version": "v1",
                                                         "previous_version": "v2"}
    assert refit.notifications(limit=5)["notifications"]

    started = refit.train("parima", wait=False, force=True)
    assert started["status"] == "training_in_progress"
    assert refit.cancel("parima", started["job_id"])["cancel_requested"] is True
    assert refit.wait_job("parima", started["job_id"], progress=False)["status"] == "cancelled"
    all_jobs = refit.train_all(force=False)["jobs"]
    wait_job(lambda: refit.job("parima", all_jobs["parima"]["job_id"]))

    follow = refit.history("parima", follow=True, limit=2)
    tail = [next(follow), next(follow)]
    assert tail == refit.history("parima", limit=2)["events"]
    refit.activate("parima", "v1", force=True)
    assert next(follow)["event_type"] == "MODEL_ACTIVATED"  # from the event stream, as it was written
    follow.close()
    stream = refit.events("parima")
    refit.activate("parima", "v1", force=True)
    first, second = next(stream), next(stream)
    assert (first.kind, first.data["event_type"]) == ("history", "MODEL_ACTIVATED")
    assert (second.kind, second.data["level"], second.id) == ("notification", "success", first.id + 1)
    stream.close()

    csv = tmp_path / "upload.csv"
    write_samples(csv, 60, seed=3)
    uploaded = refit.upload_dataset(csv, name="june")
    assert uploaded["rows"] == 60
    assert uploaded["dataset_id"] in [d["dataset_id"] for d in refit.datasets()["datasets"]]
    assert refit.dataset(uploaded["dataset_id"])["name"] == "june"
    refit.close()


def test_an_error_envelope_becomes_the_right_exception(server):
    refit = Client(server.url, api_key=KEY)
    with pytest.raises(NotFoundError) as missing:
        refit.status("nope")
    assert (missing.value.status, missing.value.code) == (404, "model_not_found")
    assert missing.value.details["model"] == "nope" and "nope" in missing.value.message
    with pytest.raises(NotFoundError) as version:
        refit.version("parima", "v99")
    assert version.value.code == "version_not_found"
    with pytest.raises(ValidationError) as invalid:
        refit.add_samples("parima", [{**ROW, "decisionLOD": 1, "extra": 3}])
    assert invalid.value.status == 422 and invalid.value.details
    with pytest.raises(UnauthorizedError) as refused:
        Client(server.url).train("parima", force=True)
    assert refused.value.code == "unauthorized"
    first = refit.train("parima", wait=False, force=True)
    with pytest.raises(ConflictError) as busy:
        refit.train("parima", wait=False, force=True)
    assert busy.value.code == "training_in_progress" and busy.value.details["job_id"] == first["job_id"]
    refit.cancel("parima", first["job_id"])
    assert isinstance(busy.value, APIError)
    with pytest.raises(TransportError):
        Client(f"http://127.0.0.1:{free_port()}", timeout=2).health()


def test_the_cli_asks_a_running_server_with_url(server):
    def backend(*args, **kwargs):
        return [sys.executable, "-m", "backend", "--config", str(server.config), *args]

    env = {"REFIT_API_KEY": KEY}
    status = subprocess.run(backend("status", "parima", "--url", server.url), cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, **env})
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["active_version"] == "v1"
    follow = subprocess.Popen(backend("history", "parima", "--follow", "--limit", "1", "--url", server.url), cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(follow.stdout.readline())["event_type"] == "MODEL_PROMOTED"  # the newest event
        Client(server.url, api_key=KEY).activate("parima", "v1")
        assert json.loads(follow.stdout.readline())["event_type"] == "MODEL_ACTIVATED"  # then each new one
    finally:
        follow.terminate()
        follow.wait(10)


@pytest.mark.server
def test_importing_the_client_imports_neither_flask_nor_scikit_learn():
    probe = ("import sys, backend.client\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'werkzeug', 'sklearn', 'pandas', 'numpy'})\n"
             "print(','.join(heavy))\n"
             "from backend import create_app, build_state, shutdown\n")  # the package's own names still import
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
