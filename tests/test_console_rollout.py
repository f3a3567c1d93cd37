"""The console's parts that drive controlled rollout (CONTRACT §9): the client's promote, reject, feedback and
experiment methods, and the dashboard's Promote/Reject buttons and Experiments page.

Written against the contract's routes while the rollout branch is being built: these tests fail until it is
merged (then /api/<m>/versions/<v>/promote, /reject, /feedback, /predictions/<id> and /experiments exist).
"""
import json

import pytest

from backend import demo
from backend.client import Client, ConflictError, ValidationError
from tests.helpers import write_config, write_samples
from tests.test_dashboard_browser import KEY, browser, page  # noqa: F401 (fixtures)

ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.3}


def manual_rollout(tmp_path):
    """A model whose first version learns from 80 rows, so a candidate trained on many more passes the gate and,
    in manual mode, is staged."""
    config = write_config(tmp_path, autoTrain=False, minSamplesForTraining=10, plots=False)
    doc = json.loads(config.read_text())
    doc["models"]["parima"]["promotion"] = {"mode": "manual", "minLabels": 20}
    config.write_text(json.dumps(doc))
    write_samples(tmp_path / "data" / "samples.csv", 80, seed=1)
    return config


def staged_version(refit: Client, seed: int) -> str:
    """Add 500 fresh rows and train; return the version the gate staged."""
    refit.add_samples("parima", demo.rows(500, seed=seed))
    job = refit.train("parima", force=True, progress=False)
    assert job["status"] == "completed" and job["result"]["version"], job
    version = job["result"]["version"]
    assert refit.version("parima", version)["status"] == "staged", refit.version("parima", version)
    return version


def test_the_client_promotes_rejects_and_sends_feedback(tmp_path, servers):
    server = servers(manual_rollout(tmp_path), env={"REFIT_API_KEY": KEY})
    refit = Client(server.url, api_key=KEY)
    assert refit.train("parima", progress=False)["result"]["version"] == "v1"  # a first version serves at once
    v2 = staged_version(refit, seed=2)
    assert refit.status("parima")["active_version"] == "v1"
    refit.promote("parima", v2)
    assert refit.status("parima")["active_version"] == v2
    assert "MODEL_STAGED" in [e["event_type"] for e in refit.history("parima", limit=20)["events"]]
    v3 = staged_version(refit, seed=3)
    refit.reject("parima", v3)
    assert refit.version("parima", v3)["status"] == "rejected"
    with pytest.raises(ConflictError):
        refit.promote("parima", v3)  # only a staged version can be promoted

    answer = refit.predict("parima", ROW)
    logged = refit.prediction("parima", answer["prediction_id"])
    assert logged["version"] == answer["model_version"] and logged["features"] == ROW
    accepted = refit.feedback("parima", [{"prediction_id": answer["prediction_id"], "label": 1}])
    assert accepted["accepted"] == 1
    assert refit.prediction("parima", answer["prediction_id"])["label"] == 1
    with pytest.raises(ValidationError) as twice:  # a second label for the same prediction
        refit.feedback("parima", [{"prediction_id": answer["prediction_id"], "label": 2}])
    assert twice.value.status == 422


def test_the_client_starts_lists_and_stops_experiments(tmp_path, servers):
    server = servers(manual_rollout(tmp_path), env={"REFIT_API_KEY": KEY})
    refit = Client(server.url, api_key=KEY)
    refit.train("parima", progress=False)
    v2 = staged_version(refit, seed=2)
    refit.promote("parima", v2)
    started = refit.start_experiment("parima", "v1-vs-v2", ["v1", v2], split=[0.5, 0.5])
    assert started["status"] == "running" and set(started["arms"]) == {"v1", v2}
    with pytest.raises(ConflictError) as running:
        refit.start_experiment("parima", "another", ["v1", v2])
    assert running.value.code == "experiment_running"
    for user in range(20):
        assert refit.predict("parima", ROW, routing_key=f"user-{user}")["experiment"] == started["id"]
    found = refit.experiment("parima", started["id"])
    assert sum(arm["requests"] for arm in found["arms"].values()) == 20
    assert [e["id"] for e in refit.experiments("parima")["experiments"]] == [started["id"]]
    stopped = refit.stop_experiment("parima", started["id"], promote=None)
    assert stopped["status"] == "stopped" and stopped["winner"] is None


@pytest.mark.server
def test_the_dashboard_promotes_rejects_and_shows_experiments(page, tmp_path, servers):  # noqa: F811
    from playwright.sync_api import expect

    server = servers(manual_rollout(tmp_path), env={"REFIT_API_KEY": KEY})
    refit = Client(server.url, api_key=KEY)
    refit.train("parima", progress=False)
    v2 = staged_version(refit, seed=2)

    page.goto(f"{server.url}/dashboard/models/parima")
    page.fill("#key-input", KEY)
    page.click("#key-form button")
    row = page.locator(f"#versions tr[data-version={v2}]")
    expect(row.locator(".badge")).to_have_text("staged")
    expect(page.locator("#metric-chart .point.staged")).to_have_count(1)
    row.locator("button", has_text="Promote").click()
    expect(row.locator(".badge")).to_have_text("active")  # updated from the event stream, no reload
    expect(page.locator("#active-version")).to_have_text(v2)
    v3 = staged_version(refit, seed=3)
    staged = page.locator(f"#versions tr[data-version={v3}]")
    expect(staged.locator(".badge")).to_have_text("staged")  # appeared without a reload
    staged.locator("button", has_text="Reject").click()
    expect(staged.locator(".badge")).to_have_text("rejected")

    started = refit.start_experiment("parima", "v1-vs-v2", ["v1", v2], split=[0.5, 0.5])
    for user in range(6):
        refit.predict("parima", ROW, routing_key=f"user-{user}")
    page.click("header nav >> text=Experiments")
    experiment = page.locator(f"#experiments tr[data-experiment='{started['id']}']")
    expect(experiment.locator(".badge")).to_have_text("running")
    expect(experiment.locator(".arm")).to_have_count(2)
    page.screenshot(path=tmp_path / "experiments.png", full_page=True)
    experiment.locator("button", has_text="Stop").click()
    expect(experiment.locator(".badge")).to_have_text("stopped")
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("#card-parima [data-field=experiment]")).to_be_hidden()
    assert page.problems == []
