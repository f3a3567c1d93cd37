"""Live performance (test-then-train), /monitoring, drift episodes and the drift trigger (CONTRACT §8)."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from backend import create_app, demo, drift, monitoring, shutdown
from tests.helpers import history_events, wait_job, write_config, write_samples


@pytest.fixture
def make_app(trained_folder, tmp_path):
    """An app serving v1 (trained on 300 demo rows) on a copy of ``trained_folder``, with training options changed."""
    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    apps = []

    def make(**training):
        config = write_config(tmp_path, **training)
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        shutdown(app)


def runtime(app):
    return app.extensions["refit"].runtimes["parima"]


def expected_f1(app, rows):
    """f1_macro of the served pipeline on ``rows``, computed here from the same rows."""
    served = runtime(app).slot.served
    frame = pd.DataFrame(rows)
    predicted = served.pipeline.predict(frame[list(served.features)].astype(float))
    return f1_score(frame[demo.TARGET], predicted, average="macro", zero_division=0)


def flipped(n, seed):
    """Demo rows whose labels are clearly wrong (the level mirrored), so the live score collapses."""
    rows = demo.rows(n, seed=seed)
    for row in rows:
        row[demo.TARGET] = demo.LEVELS - 1 - row[demo.TARGET]
    return rows


def drift_events(folder):
    return [e for e in history_events(folder) if e["event_type"] == "DRIFT_DETECTED"]


def test_posted_labels_are_scored_by_the_served_version(make_app):
    app = make_app(minSamplesForTraining=1000, drift={"minLabels": 100})
    client = app.test_client()
    empty = client.get("/api/parima/monitoring").json["live"]
    assert empty["version"] == "v1" and empty["score"] is None and empty["n_labels"] == 0
    rows = demo.rows(150, seed=7)
    assert client.post("/api/parima/samples", json={"samples": rows[:70]}).status_code == 201
    assert client.post("/api/parima/samples", json={"samples": rows[70:]}).status_code == 201

    body = client.get("/api/parima/monitoring").json
    recorded = client.get("/api/parima/versions/v1").json["metrics"]["f1_macro"]
    assert body["model"] == "parima" and body["active_version"] == "v1" and body["metric"] == "f1_macro"
    live = body["live"]
    assert live["version"] == "v1" and live["n_labels"] == 150
    assert live["score"] == pytest.approx(expected_f1(app, rows[50:]))  # the newest minLabels = 100
    assert live["recorded_score"] == pytest.approx(recorded)
    assert live["drop"] == pytest.approx(recorded - live["score"])
    assert body["windows"] == [{"end": 400, "n": 100, "version": "v1",
                                "score": pytest.approx(expected_f1(app, rows[:100]))}]
    assert set(body["drift"]) == {"detected", "kind", "since", "features"}
    assert set(body["staleness"]) == {"model_age_hours", "samples_since_training"}
    assert body["staleness"]["samples_since_training"] == 150 and body["staleness"]["model_age_hours"] >= 0
    assert client.get("/api/nosuch/monitoring").status_code == 404


def test_rows_an_outside_writer_appends_are_scored_at_the_tick(make_app, samples_csv):
    app = make_app(minSamplesForTraining=1000)
    client = app.test_client()
    rows = write_samples(samples_csv, 120, seed=8)
    assert client.get("/api/parima/monitoring").json["live"]["n_labels"] == 0
    assert runtime(app).tick() is None  # below minSamplesForTraining: scored, not trained
    live = client.get("/api/parima/monitoring").json["live"]
    assert live["n_labels"] == 120
    assert live["score"] == pytest.approx(expected_f1(app, rows[20:]))
    runtime(app).tick()  # nothing new: nothing scored twice
    assert client.get("/api/parima/monitoring").json["live"]["n_labels"] == 120


def test_one_drift_event_per_episode_and_one_drift_training_below_the_minimum(make_app, tmp_path):
    app = make_app(minSamplesForTraining=1000, drift={"minLabels": 50, "metricDrop": 0.05})
    client = app.test_client()
    rt = runtime(app)
    client.post("/api/parima/samples", json={"samples": flipped(60, seed=9)})
    events = drift_events(tmp_path)
    assert len(events) == 1
    details = events[0]["details"]
    assert details["kind"] == "performance" and details["version"] == "v1" and details["features"] == []
    assert details["threshold"] == 0.05
    assert details["statistic"] == pytest.approx(client.get("/api/parima/monitoring").json["live"]["drop"])
    assert details["statistic"] > 0.05
    client.post("/api/parima/samples", json={"samples": flipped(60, seed=10)})
    assert len(drift_events(tmp_path)) == 1  # still the same episode
    body = client.get("/api/parima/monitoring").json
    assert body["drift"]["detected"] is True and body["drift"]["kind"] == "performance" and body["drift"]["since"]
    status = client.get("/api/parima/training/status").json
    assert status["drift_detected"] is True and status["samples_since_last_training"] == 120
    assert client.get("/health").json["models"]["parima"]["drift_detected"] is True
    assert [n for n in client.get("/api/notifications").json["notifications"]
            if n["event_type"] == "DRIFT_DETECTED"][0]["level"] == "warning"

    job = rt.tick()  # 120 new rows < minSamplesForTraining 1000, but the episode asks for a training
    assert job is not None and job.trigger == "drift"
    done = wait_job(lambda: client.get(f"/api/parima/jobs/{job.job_id}").json)
    assert done["status"] == "completed" and done["trigger"] == "drift"
    started = [e for e in history_events(tmp_path) if e["event_type"] == "TRAINING_STARTED"]
    assert started[-1]["details"]["trigger"] == "drift"
    assert rt.tick() is None  # the episode's training ran once; the usual rules apply again
    last = history_events(tmp_path)[-1]
    assert last["event_type"] == "TRAINING_SKIPPED" and last["details"]["reason"] == "not_enough_new_samples"

    # another version serving ends the episode; its stream starts afresh
    version = done["result"]["version"]
    client.post(f"/api/parima/versions/{version}/activate", json={"force": True})
    client.post("/api/parima/samples", json={"samples": demo.rows(5, seed=11)})
    body = client.get("/api/parima/monitoring").json
    assert body["active_version"] == version and body["live"]["version"] == version
    assert body["live"]["n_labels"] == 5 and body["drift"]["detected"] is False


def test_no_drift_training_without_min_labels_new_rows_or_when_disabled(make_app, tmp_path):
    app = make_app(minSamplesForTraining=1000, drift={"enabled": False, "minLabels": 50})
    client = app.test_client()
    client.post("/api/parima/samples", json={"samples": flipped(60, seed=9)})
    assert drift_events(tmp_path) == []
    assert runtime(app).tick() is None
    assert client.get("/api/parima/monitoring").json["live"]["n_labels"] == 60  # still scored


def test_a_shifted_feature_is_feature_drift(make_app, tmp_path):
    app = make_app(minSamplesForTraining=1000, drift={"minLabels": 200, "metricDrop": 1.0, "featureThreshold": 0.2})
    client = app.test_client()
    rows = demo.rows(200, seed=12)
    client.post("/api/parima/samples", json={"samples": rows[:100]})
    assert drift_events(tmp_path) == []  # fewer than minLabels rows: no PSI yet
    for row in rows[100:]:
        row["deviceFPS"] += 200  # ten standard deviations
    client.post("/api/parima/samples", json={"samples": rows[100:]})
    events = drift_events(tmp_path)
    assert len(events) == 1
    assert events[0]["details"]["kind"] == "feature" and events[0]["details"]["features"] == ["deviceFPS"]
    features = client.get("/api/parima/monitoring").json["drift"]["features"]
    assert set(features) == set(demo.FEATURES)
    assert features["deviceFPS"]["psi"] == pytest.approx(events[0]["details"]["statistic"]) and features["deviceFPS"]["psi"] > 1
    assert all(features[f]["psi"] < 0.2 for f in demo.FEATURES if f != "deviceFPS")


def test_gauges_and_staleness_fields(make_app):
    app = make_app(minSamplesForTraining=1000, drift={"minLabels": 20})
    client = app.test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'refit_drift_detected{model="parima"} 0.0' in text and "refit_live_score{" not in text
    client.post("/api/parima/samples", json={"samples": flipped(30, seed=13)})
    score = client.get("/api/parima/monitoring").json["live"]["score"]
    text = client.get("/metrics").get_data(as_text=True)
    assert f'refit_live_score{{model="parima",version="v1"}} {score}' in text
    assert 'refit_drift_detected{model="parima"} 1.0' in text
    health = client.get("/health").json["models"]["parima"]
    assert health["samples_since_training"] == 30 and health["drift_detected"] is True
    assert 0 <= health["model_age_hours"] < 24 * 365
    status = client.get("/api/parima/training/status").json
    assert status["model_age_hours"] == pytest.approx(health["model_age_hours"], abs=0.01)


def test_a_restart_keeps_the_live_state(make_app, tmp_path):
    app = make_app(minSamplesForTraining=1000, drift={"minLabels": 50})
    rows = demo.rows(80, seed=14)
    app.test_client().post("/api/parima/samples", json={"samples": rows[:40]})
    before = app.test_client().get("/api/parima/monitoring").json
    assert before["live"]["n_labels"] == 40 and before["live"]["score"] is not None
    again = make_app(minSamplesForTraining=1000, drift={"minLabels": 50})
    restarted = again.test_client().get("/api/parima/monitoring").json
    assert {k: v for k, v in restarted.items() if k != "staleness"} == {k: v for k, v in before.items() if k != "staleness"}
    again.test_client().post("/api/parima/samples", json={"samples": rows[40:]})
    after = again.test_client().get("/api/parima/monitoring").json
    assert after["live"]["n_labels"] == 80
    assert after["live"]["score"] == pytest.approx(expected_f1(again, rows[30:]))
    assert (tmp_path / "ml_models" / "parima" / "monitoring.json").is_file()


def test_live_scores_follow_the_metric_direction():
    assert monitoring.score("rmse", "regression", [[1.0, 2.0, None], [3.0, 3.0, None]], None) == pytest.approx(
        math.sqrt(0.5))
    assert monitoring.score("accuracy", "classification", [[1, 1, None], [2, 1, None]], [1, 2]) == 0.5
    assert monitoring.score("log_loss", "classification", [[1, 1, [0.9, 0.1]], [2, 1, [0.6, 0.4]]], [1, 2]) \
        == pytest.approx(-(math.log(0.9) + math.log(0.4)) / 2)


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000), "c": rng.choice(["a", "b"], 3000)})
    summary = drift.reference(ref, ["x"], ["c"])
    assert drift.psi(summary["x"], rng.normal(0, 1, 1000).tolist()) < 0.05
    assert drift.psi(summary["x"], rng.normal(3, 1, 1000).tolist()) > 1
    assert drift.psi(summary["c"], ["a"] * 500 + ["b"] * 500) < 0.01
    assert drift.psi(summary["c"], ["a"] * 950 + ["z"] * 50) > 0.2
