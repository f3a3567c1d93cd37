"""The fair gate and the adaptive window (CONTRACT §8), on small generated streams with a known concept change."""
import json

import numpy as np

from backend import create_app
from backend.samples import render_rows
from tests.helpers import history_events, wait_job

FEATURES = ["f0", "f1", "f2"]


def stream_config(tmp_path, **training):
    settings = {"logFile": "./data/stream.csv", "trainingLogFile": "./data/training_logs/history.log",
                "minSamplesForTraining": 50, "plots": False, "autoTrain": False, "metric": "accuracy", **training}
    config = {"models": {"stream": {"task": "classification", "target": "y", "features": FEATURES,
                                    "training": settings}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "data").mkdir(exist_ok=True)
    return tmp_path / "config.json"


def append_rows(tmp_path, n, concept, seed):
    """Append ``n`` rows whose label is a threshold on feature ``concept`` (a concept change switches the feature)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(n, 3))
    y = (X[:, concept] > 0.5).astype(int)
    noisy = rng.random(n) < 0.05
    y[noisy] = 1 - y[noisy]
    rows = [{"f0": float(a), "f1": float(b), "f2": float(c), "y": int(label)} for (a, b, c), label in zip(X, y)]
    path = tmp_path / "data" / "stream.csv"
    with open(path, "ab") as handle:
        if handle.tell() == 0:
            handle.write(render_rows(FEATURES + ["y"], [dict(zip(FEATURES + ["y"], FEATURES + ["y"]))]))
        handle.write(render_rows(FEATURES + ["y"], rows))


def train(client, **body):
    response = client.post("/api/stream/train", json={"force": True, **body})
    assert response.status_code == 202, response.json
    return wait_job(lambda: client.get(f"/api/stream/jobs/{response.json['job_id']}").json, timeout=180)


def record(client, version):
    return client.get(f"/api/stream/versions/{version}").json


def test_after_an_abrupt_change_the_new_candidate_wins_on_rows_the_active_version_never_saw(tmp_path):
    client = create_app(stream_config(tmp_path)).test_client()
    append_rows(tmp_path, 1000, concept=0, seed=1)
    first = train(client)
    assert first["result"]["promoted"], first
    v1 = record(client, "v1")
    assert v1["trained_rows"] == {"start": 0, "end": 1000} and v1["refit"] is True
    assert v1["promotion"]["comparison"] == "first_version"

    append_rows(tmp_path, 1000, concept=1, seed=2)  # the concept changes: the label now follows f1
    second = train(client)
    assert second["result"]["promoted"], second  # before the fair gate this candidate was rejected
    v2 = record(client, "v2")
    promotion = v2["promotion"]
    assert promotion["comparison"] == "unseen_rows"
    assert promotion["holdout"]["start"] >= v1["trained_rows"]["end"]  # the active version never trained on these
    assert promotion["holdout"]["end"] == 2000 and promotion["holdout"]["n"] == 400
    assert promotion["candidate_score"] > promotion["active_score"] + 0.2
    assert v2["training_window"] != "all" and v2["training_window"] <= 1000  # a short window after the change
    assert [c["window"] for c in promotion["candidates"]] == ["all", 1000, 500]  # ⌈0.2·2000⌉ = 400 held out
    assert v2["n_samples"] == v2["training_window"] and v2["trained_rows"] == {"start": 2000 - v2["training_window"],
                                                                                 "end": 2000}
    completed = [e for e in history_events(tmp_path) if e["event_type"] == "TRAINING_COMPLETED"][-1]["details"]
    assert completed["training_window"] == v2["training_window"] and completed["candidates"] == promotion["candidates"]
    assert completed["active_score"] == promotion["active_score"]
    assert completed["holdout"] == promotion["holdout"]


def test_on_stationary_data_the_window_is_all_rows(tmp_path):
    client = create_app(stream_config(tmp_path)).test_client()
    append_rows(tmp_path, 1600, concept=0, seed=3)
    assert train(client)["result"]["promoted"]
    append_rows(tmp_path, 400, concept=0, seed=4)
    second = train(client)
    v2 = record(client, second["result"]["version"])
    assert v2["training_window"] == "all", v2["promotion"]["candidates"]
    assert v2["promotion"]["comparison"] == "unseen_rows" and v2["promotion"]["holdout"]["start"] >= 1600


def test_with_no_unseen_rows_the_active_version_is_not_scored_and_the_baseline_decides(tmp_path):
    client = create_app(stream_config(tmp_path)).test_client()
    append_rows(tmp_path, 600, concept=0, seed=5)
    assert train(client)["result"]["promoted"]
    again = train(client)  # nothing new: every row was learnt by v1
    v2 = record(client, again["result"]["version"])
    assert v2["promotion"]["comparison"] == "no_unseen_rows" and v2["promotion"]["active_score"] is None
    assert again["result"]["promoted"] and "baseline" in v2["promotion"]["reason"]


def test_a_pinned_window_and_a_random_split_are_honoured(tmp_path):
    client = create_app(stream_config(tmp_path, trainingWindow=300, splitStrategy="random")).test_client()
    append_rows(tmp_path, 800, concept=0, seed=6)
    first = train(client)
    v1 = record(client, first["result"]["version"])
    assert v1["training_window"] == 300 and [c["window"] for c in v1["promotion"]["candidates"]] == [300]
    assert v1["n_samples"] == 300 and v1["trained_rows"] == {"start": 500, "end": 800}
    assert v1["n_test_samples"] == 60  # ⌈0.2 · 300⌉ rows of the window held out, drawn at random
    assert v1["promotion"]["holdout"]["start"] >= 500
    assert client.post("/api/stream/train", json={"trainingWindow": 20}).status_code == 422  # below 50
