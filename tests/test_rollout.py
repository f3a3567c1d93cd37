"""Controlled rollout (CONTRACT §9): prediction ids and log, feedback, staged/shadow/canary, experiments, the watch."""
from __future__ import annotations

import json
import shutil

import pytest

from backend import create_app, demo, shutdown
from tests.helpers import history_events, wait_job, wait_until, write_config, write_samples


@pytest.fixture
def make_app(trained_folder, tmp_path):
    """An app serving v1 (300 demo rows) on a copy of ``trained_folder``, with the given promotion block."""
    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    apps = []

    def make(promotion=None, **training):
        training.setdefault("drift", {"enabled": False})
        app = create_app(write_config(tmp_path, promotion=promotion, **training))
        apps.append(app)
        return app

    yield make
    for app in apps:
        shutdown(app)


def rt_of(app):
    return app.extensions["refit"].runtimes["parima"]


def features(row):
    return {k: row[k] for k in demo.FEATURES}


def train(client, **body):
    job = client.post("/api/parima/train", json={"force": True, **body}).json
    return wait_job(lambda: client.get(f"/api/parima/jobs/{job['job_id']}").json)


def train_shuffled(client, folder, n=300, seed=5):
    """Train a version on rows whose labels are shuffled (it predicts about at chance); the gate rejects it."""
    path = folder / "data" / "shuffled.csv"
    write_samples(path, n, seed=seed, shuffle_labels=True)
    return train(client, csv_path="shuffled.csv", minImprovement=0.5)


def store_rows(app):
    return rt_of(app).store.count()


def events(tmp_path, kind):
    return [e for e in history_events(tmp_path) if e["event_type"] == kind]


# -- prediction ids, the log and feedback ----------------------------------------------------------------------


def test_every_answer_carries_ids_that_find_the_logged_prediction(make_app):
    client = make_app().test_client()
    rows = demo.rows(3, seed=11)
    one = client.post("/api/parima/predict", json={"features": features(rows[0])}).json
    batch = client.post("/api/parima/predict", json={"instances": [features(r) for r in rows]}).json
    assert isinstance(one["prediction_id"], str)
    assert len(batch["prediction_ids"]) == 3 and len(set(batch["prediction_ids"])) == 3
    logged = client.get(f"/api/parima/predictions/{batch['prediction_ids'][2]}").json
    assert logged["version"] == "v1" and logged["output"] == batch["predictions"][2]
    assert logged["features"] == pytest.approx(features(rows[2]))
    assert "label" not in logged
    for bad in ("nope", "2026010100-1-0.0.0", one["prediction_id"] + "9"):
        answer = client.get(f"/api/parima/predictions/{bad}")
        assert answer.status_code == 404 and answer.json["error"]["code"] == "prediction_not_found"


def test_feedback_appends_labelled_rows_that_count_toward_the_next_training(make_app, tmp_path):
    app = make_app()
    client = app.test_client()
    rows = demo.rows(4, seed=12)
    one = client.post("/api/parima/predict", json={"features": features(rows[0])}).json
    batch = client.post("/api/parima/predict", json={"instances": [features(r) for r in rows[1:]]}).json
    before = client.get("/api/parima/training/status").json
    ids = [one["prediction_id"], *batch["prediction_ids"]]
    answer = client.post("/api/parima/feedback", json={"feedback": [
        {"prediction_id": i, "label": r[demo.TARGET]} for i, r in zip(ids, rows)]})
    assert answer.status_code == 201, answer.json
    assert answer.json["accepted"] == 4
    assert answer.json["samples_since_last_training"] == before["samples_since_last_training"] + 4
    stored = (tmp_path / "data" / "samples.csv").read_text().splitlines()[-4:]
    for line, row in zip(stored, rows):
        assert line.split(",")[-1] == str(row[demo.TARGET])
    assert client.get(f"/api/parima/predictions/{ids[1]}").json["label"] == rows[1][demo.TARGET]


def test_bad_feedback_is_422_naming_the_item_and_nothing_is_written(make_app, tmp_path):
    app = make_app()
    client = app.test_client()
    rows = demo.rows(2, seed=13)
    ids = client.post("/api/parima/predict", json={"instances": [features(r) for r in rows]}).json["prediction_ids"]
    client.post("/api/parima/feedback", json={"feedback": [{"prediction_id": ids[0], "label": 1}]})
    store = tmp_path / "data" / "samples.csv"
    size = store.stat().st_size
    cases = [
        ([{"prediction_id": ids[1], "label": 1}, {"prediction_id": "2026010100-1-0.0.0", "label": 1}],
         1, "unknown_prediction"),
        ([{"prediction_id": ids[1], "label": 1}, {"prediction_id": ids[0], "label": 2}], 1, "already_labelled"),
        ([{"prediction_id": ids[1], "label": 1}, {"prediction_id": ids[1], "label": 1}], 1, "already_labelled"),
        ([{"prediction_id": ids[1], "label": {"level": 1}}], 0, "invalid_label"),
        ([{"prediction_id": ids[1], "label": None}], 0, "invalid_label"),
        ([{"prediction_id": ids[1]}], 0, "invalid_label"),
    ]
    for items, index, reason in cases:
        answer = client.post("/api/parima/feedback", json={"feedback": items})
        assert answer.status_code == 422, (items, answer.json)
        assert answer.json["error"]["details"] == {**answer.json["error"]["details"], "index": index, "reason": reason}
        assert store.stat().st_size == size
    # the item that was part of each refused batch is still open for its label
    assert client.post("/api/parima/feedback", json={"feedback": [{"prediction_id": ids[1], "label": 0}]}).status_code == 201


def test_a_regression_label_of_the_wrong_kind_is_refused(trained_folder, tmp_path):
    from backend.feedback import _label

    with pytest.raises(ValueError):
        _label("many", "regression")
    assert _label(2.5, "regression") == 2.5
    assert _label(2.0, "classification") == 2


# -- predict by version ----------------------------------------------------------------------------------------


def test_a_pinned_version_answers_and_unknown_ones_are_404(make_app, tmp_path):
    app = make_app()
    client = app.test_client()
    bad = train_shuffled(client, tmp_path)
    assert bad["result"]["version"] == "v2" and not bad["result"]["promoted"]
    rows = [features(r) for r in demo.rows(40, seed=14)]
    pinned = client.post("/api/parima/predict", json={"instances": rows, "version": "v2"}).json
    active = client.post("/api/parima/predict", json={"instances": rows}).json
    assert pinned["model_version"] == "v2" and active["model_version"] == "v1"
    assert pinned["predictions"] != active["predictions"]
    assert client.get(f"/api/parima/predictions/{pinned['prediction_ids'][0]}").json["version"] == "v2"
    assert client.post("/api/parima/predict", json={"features": rows[0], "version": "v9"}).status_code == 404
    assert client.post("/api/parima/predict", json={"features": rows[0], "version": "x"}).status_code == 404
    assert client.post("/api/parima/predict", json={"features": rows[0], "version": 2}).status_code == 422


# -- manual mode -------------------------------------------------------------------------------------------------


def test_manual_mode_stages_until_promote_and_a_newer_candidate_replaces_the_older(make_app, tmp_path):
    app = make_app(promotion={"mode": "manual"})
    client = app.test_client()
    write_samples(tmp_path / "data" / "samples.csv", 100, seed=21)
    job = train(client)
    assert job["result"]["staged"] and not job["result"]["promoted"], job
    assert client.get("/api/parima/versions/v2").json["status"] == "staged"
    assert client.post("/api/parima/predict", json={"features": features(demo.rows(1)[0])}).json["model_version"] == "v1"
    assert [e["details"]["version"] for e in events(tmp_path, "MODEL_STAGED")] == ["v2"]
    newer = train(client)
    assert newer["result"]["version"] == "v3" and newer["result"]["staged"]
    assert client.get("/api/parima/versions/v2").json["status"] == "rejected"
    assert client.post("/api/parima/versions/v2/promote").status_code == 409
    promoted = client.post("/api/parima/versions/v3/promote")
    assert promoted.status_code == 200, promoted.json
    assert promoted.json == {"model": "parima", "active_version": "v3", "previous_version": "v1"}
    assert client.post("/api/parima/predict", json={"features": features(demo.rows(1)[0])}).json["model_version"] == "v3"
    last = events(tmp_path, "MODEL_PROMOTED")[-1]
    assert last["details"]["version"] == "v3" and last["details"]["trigger"] == "manual"
    assert client.post("/api/parima/versions/v3/reject").status_code == 409


def test_reject_drops_a_staged_version(make_app, tmp_path):
    app = make_app(promotion={"mode": "manual"})
    client = app.test_client()
    assert train(client)["result"]["staged"]
    answer = client.post("/api/parima/versions/v2/reject")
    assert answer.status_code == 200 and answer.json["status"] == "rejected"
    assert client.get("/api/parima/versions/v2").json["status"] == "rejected"
    assert client.get("/health").json["models"]["parima"]["version"] == "v1"
    assert client.post("/api/parima/versions/v9/reject").status_code == 404


# -- shadow mode -------------------------------------------------------------------------------------------------


def stage_good_against_bad(client, folder):
    """v2 (trained on shuffled labels) serves; v3, trained on the clean store, passes the gate against it: staged."""
    train_shuffled(client, folder)
    assert client.post("/api/parima/versions/v2/activate", json={"force": True}).status_code == 200
    job = train(client)
    assert job["result"]["version"] == "v3" and job["result"]["staged"], job


def test_shadow_answers_are_never_returned_and_a_better_candidate_is_promoted(make_app, tmp_path):
    app = make_app(promotion={"mode": "shadow", "minLabels": 20})
    client = app.test_client()
    stage_good_against_bad(client, tmp_path)
    rt = rt_of(app)
    rows = demo.rows(20, seed=30)
    active = client.post("/api/parima/predict", json={"instances": [features(r) for r in rows]}).json
    candidate = client.post("/api/parima/predict", json={"instances": [features(r) for r in rows], "version": "v3"}).json
    assert active["model_version"] == "v2" and "experiment" not in active
    assert active["predictions"] != candidate["predictions"]  # the shadow's answers are never the ones returned
    assert rt.shadow.wait_idle()
    shadow_log = tmp_path / "ml_models" / "parima" / "predictions" / "shadow"
    logged = [json.loads(line) for f in shadow_log.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert [entry["y"] for entry in logged if entry["v"] == "v3"] == [candidate["predictions"]]
    items = [{"prediction_id": i, "label": r[demo.TARGET]} for i, r in zip(active["prediction_ids"], rows)]
    assert client.post("/api/parima/feedback", json={"feedback": items[:19]}).status_code == 201
    assert client.get("/api/parima/versions/v3").json["status"] == "staged"  # 19 < minLabels
    assert client.post("/api/parima/feedback", json={"feedback": items[19:]}).status_code == 201
    assert client.get("/health").json["models"]["parima"]["version"] == "v3"
    promoted = events(tmp_path, "MODEL_PROMOTED")[-1]["details"]
    assert promoted["trigger"] == "shadow" and promoted["candidate_score"] > promoted["active_score"]


def test_a_shadow_candidate_that_is_worse_on_live_labels_is_rejected(make_app, tmp_path):
    app = make_app(promotion={"mode": "shadow", "minLabels": 20})
    client = app.test_client()
    stage_good_against_bad(client, tmp_path)
    rows = [features(r) for r in demo.rows(20, seed=40)]
    active = client.post("/api/parima/predict", json={"instances": rows}).json
    # the live labels agree with the serving version wherever the two differ
    items = [{"prediction_id": i, "label": a} for i, a in zip(active["prediction_ids"], active["predictions"])]
    assert client.post("/api/parima/feedback", json={"feedback": items}).status_code == 201
    assert client.get("/api/parima/versions/v3").json["status"] == "rejected"
    assert client.get("/health").json["models"]["parima"]["version"] == "v2"
    assert events(tmp_path, "MODEL_REJECTED")[-1]["details"]["trigger"] == "shadow"


# -- experiments -------------------------------------------------------------------------------------------------


def test_an_experiment_routes_keys_stickily_and_concludes_for_the_better_version(make_app, tmp_path):
    app = make_app(promotion={"minLabels": 60})
    client = app.test_client()
    assert train_shuffled(client, tmp_path)["result"]["version"] == "v2"  # rejected, still servable
    client.post("/api/parima/versions/v2/activate", json={"force": True})  # the worse version serves
    started = client.post("/api/parima/experiments", json={"name": "good-vs-shuffled", "versions": ["v2", "v1"],
                                                           "split": [0.5, 0.5]})
    assert started.status_code == 201, started.json
    experiment = started.json["id"]
    assert started.json["status"] == "running" and started.json["arms"]["v1"] == {"requests": 0, "labels": 0, "score": None}
    again = client.post("/api/parima/experiments", json={"name": "second", "versions": ["v2", "v1"]})
    assert again.status_code == 409 and again.json["error"]["code"] == "experiment_running"
    rows = demo.rows(400, seed=50)
    seen: dict[str, str] = {}
    feedback = []
    for i, row in enumerate(rows):
        key = f"user-{i % 150}"
        answer = client.post("/api/parima/predict", json={"features": features(row), "routing_key": key}).json
        assert answer["experiment"] == experiment
        assert seen.setdefault(key, answer["model_version"]) == answer["model_version"]  # sticky
        feedback.append({"prediction_id": answer["prediction_id"], "label": row[demo.TARGET]})
    pinned = client.post("/api/parima/predict", json={"features": features(rows[0]), "version": "v1"}).json
    assert "experiment" not in pinned
    for start in range(0, len(feedback), 100):
        assert client.post("/api/parima/feedback", json={"feedback": feedback[start:start + 100]}).status_code == 201
    done = client.get(f"/api/parima/experiments/{experiment}").json
    assert done["status"] == "concluded", done
    assert done["winner"] == "v1" and done["p_value"] < 0.05
    assert done["arms"]["v1"]["score"] > done["arms"]["v2"]["score"]
    assert sum(a["requests"] for a in done["arms"].values()) == 400
    assert client.get("/health").json["models"]["parima"]["version"] == "v1"
    concluded = events(tmp_path, "EXPERIMENT_CONCLUDED")[-1]["details"]
    assert concluded["winner"] == "v1" and concluded["experiment"] == experiment
    assert [e["details"]["experiment"] for e in events(tmp_path, "EXPERIMENT_STARTED")] == [experiment]
    assert client.get("/api/parima/experiments").json["experiments"][0]["id"] == experiment


def test_an_experiment_without_a_significant_difference_keeps_the_active_version(make_app, tmp_path):
    app = make_app(promotion={"minLabels": 20})
    client = app.test_client()
    write_samples(tmp_path / "data" / "samples.csv", 60, seed=60)
    assert train(client, minImprovement=0.5)["result"]["version"] == "v2"  # rejected by the gate, near-identical
    experiment = client.post("/api/parima/experiments", json={"name": "same", "versions": ["v1", "v2"]}).json["id"]
    rows = demo.rows(80, seed=61)
    answers = [client.post("/api/parima/predict", json={"features": features(r)}).json for r in rows]
    items = [{"prediction_id": a["prediction_id"], "label": a["prediction"]} for a in answers]  # both always right
    assert client.post("/api/parima/feedback", json={"feedback": items}).status_code == 201
    done = client.get(f"/api/parima/experiments/{experiment}").json
    assert done["status"] == "concluded" and done["winner"] is None and done["p_value"] >= 0.05
    assert client.get("/health").json["models"]["parima"]["version"] == "v1"


def test_the_split_follows_the_ratio_and_an_experiment_survives_a_restart(make_app, tmp_path):
    app = make_app()
    client = app.test_client()
    assert train_shuffled(client, tmp_path)["result"]["version"] == "v2"
    experiment = client.post("/api/parima/experiments", json={"name": "split", "versions": ["v1", "v2"],
                                                              "split": [0.8, 0.2]}).json["id"]
    row = features(demo.rows(1)[0])
    versions = [client.post("/api/parima/predict", json={"features": row}).json["model_version"] for _ in range(1000)]
    keyed = [client.post("/api/parima/predict", json={"features": row, "user_id": f"u{i}"}).json["model_version"]
             for i in range(2000)]
    for answers in (versions, keyed):
        assert abs(answers.count("v2") / len(answers) - 0.2) < 0.04
    shutdown(app)
    restarted = make_app()
    client = restarted.test_client()
    kept = client.get(f"/api/parima/experiments/{experiment}").json
    assert kept["status"] == "running" and sum(a["requests"] for a in kept["arms"].values()) == 3000
    assert [client.post("/api/parima/predict", json={"features": row, "user_id": f"u{i}"}).json["model_version"]
            for i in range(200)] == keyed[:200]  # the same key, the same arm, after a restart
    stopped = client.post(f"/api/parima/experiments/{experiment}/stop", json={"promote": "v1"})
    assert stopped.status_code == 200 and stopped.json["status"] == "stopped" and stopped.json["winner"] == "v1"
    assert "experiment" not in client.post("/api/parima/predict", json={"features": row}).json
    assert client.post(f"/api/parima/experiments/{experiment}/stop", json={}).status_code == 409
    assert client.get("/api/parima/experiments/e99").status_code == 404
    assert client.get("/api/parima/experiments/../x").status_code == 404


def test_bad_experiments_are_refused(make_app):
    client = make_app().test_client()
    for body, status in [({"name": "x", "versions": ["v1"]}, 422), ({"name": "x", "versions": ["v1", "v1"]}, 422),
                         ({"name": "x", "versions": ["v1", "v7"]}, 404),
                         ({"name": "x", "versions": ["v1", "v2"], "split": [0.7, 0.7]}, 422),
                         ({"versions": ["v1", "v2"]}, 422)]:
        answer = client.post("/api/parima/experiments", json=body)
        assert answer.status_code == status, (body, answer.json)
    assert client.get("/api/parima/experiments").json == {"experiments": []}


# -- canary ------------------------------------------------------------------------------------------------------


def test_a_canary_candidate_gets_its_fraction_and_is_decided_by_the_server(make_app, tmp_path):
    app = make_app(promotion={"mode": "canary", "canaryFraction": 0.3, "minLabels": 30})
    client = app.test_client()
    train_shuffled(client, tmp_path)
    client.post("/api/parima/versions/v2/activate", json={"force": True})  # a bad version serves
    job = train(client)  # a good candidate passes the gate against it and goes to a canary
    assert job["result"]["staged"], job
    experiment = client.get("/api/parima/experiments").json["experiments"][0]
    assert experiment["versions"] == ["v2", "v3"] and experiment["split"] == pytest.approx([0.7, 0.3])
    rows = demo.rows(400, seed=70)
    answers = [client.post("/api/parima/predict", json={"features": features(r)}).json for r in rows]
    share = sum(a["model_version"] == "v3" for a in answers) / len(answers)
    assert 0.22 < share < 0.38
    items = [{"prediction_id": a["prediction_id"], "label": r[demo.TARGET]} for a, r in zip(answers, rows)]
    assert client.post("/api/parima/feedback", json={"feedback": items}).status_code == 201
    done = client.get(f"/api/parima/experiments/{experiment['id']}").json
    assert done["status"] == "concluded" and done["winner"] == "v3", done
    assert client.get("/health").json["models"]["parima"]["version"] == "v3"


# -- the watch ---------------------------------------------------------------------------------------------------


def flipped(n, seed):
    rows = demo.rows(n, seed=seed)
    for row in rows:
        row[demo.TARGET] = demo.LEVELS - 1 - row[demo.TARGET]
    return rows


def test_a_promoted_version_that_serves_clearly_worse_is_rolled_back_by_the_watch(make_app, tmp_path):
    app = make_app(promotion={"watchLabels": 40, "watchMaxDrop": 0.1})
    client = app.test_client()
    assert client.post("/api/parima/samples", json={"samples": demo.rows(40, seed=80)}).status_code == 201  # v1's live labels
    job = train(client)
    assert job["result"]["promoted"] and client.get("/health").json["models"]["parima"]["version"] == "v2"
    assert client.post("/api/parima/samples", json={"samples": flipped(39, seed=81)}).status_code == 201
    assert client.get("/health").json["models"]["parima"]["version"] == "v2"  # 39 < watchLabels
    assert client.post("/api/parima/samples", json={"samples": flipped(1, seed=82)}).status_code == 201
    assert client.get("/health").json["models"]["parima"]["version"] == "v1"
    rolled = events(tmp_path, "MODEL_ROLLED_BACK")[-1]["details"]
    assert rolled["reason"] == "watch" and rolled["version"] == "v1" and rolled["previous_version"] == "v2"
    assert rolled["reference"] == "live" and rolled["drop"] > 0.1
    notes = client.get("/api/notifications").json["notifications"]
    assert any(n["event_type"] == "MODEL_ROLLED_BACK" and n["level"] == "error" for n in notes)


def test_a_promoted_version_that_serves_as_well_stays(make_app, tmp_path):
    app = make_app(promotion={"watchLabels": 200, "watchMaxDrop": 0.1})
    client = app.test_client()
    client.post("/api/parima/samples", json={"samples": demo.rows(200, seed=90)})
    assert train(client)["result"]["promoted"]
    client.post("/api/parima/samples", json={"samples": demo.rows(250, seed=91)})
    assert client.get("/health").json["models"]["parima"]["version"] == "v2"
    assert not events(tmp_path, "MODEL_ROLLED_BACK")
    assert json.loads((tmp_path / "ml_models" / "parima" / "rollout.json").read_text())["watch"] is None


# -- several workers ---------------------------------------------------------------------------------------------


@pytest.mark.server
def test_four_workers_route_a_key_to_the_same_arm_and_lose_no_arm_count(trained_folder, tmp_path, servers):
    from concurrent.futures import ThreadPoolExecutor

    import requests

    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    config = write_config(tmp_path, autoTrain=False, drift={"enabled": False})
    app = create_app(config)
    train_shuffled(app.test_client(), tmp_path)  # v2, a second servable version
    shutdown(app)
    server = servers(config, workers=4)
    started = requests.post(f"{server.url}/api/parima/experiments", timeout=10,
                            json={"name": "four", "versions": ["v1", "v2"], "split": [0.7, 0.3]})
    assert started.status_code == 201, started.text
    experiment = started.json()["id"]
    row = features(demo.rows(1)[0])

    def ask(keys):
        with requests.Session() as session:  # one keep-alive connection per thread: the threads meet different workers
            return [(key, session.post(f"{server.url}/api/parima/predict", timeout=10,
                                       json={"features": row, "routing_key": key}).json()) for key in keys]

    keys = [f"user-{i % 200}" for i in range(800)]
    with ThreadPoolExecutor(8) as pool:
        answers = [a for part in pool.map(ask, [keys[i::8] for i in range(8)]) for a in part]
    arm_of: dict[str, set[str]] = {}
    for key, answer in answers:
        assert answer["experiment"] == experiment
        arm_of.setdefault(key, set()).add(answer["model_version"])
    assert all(len(arms) == 1 for arms in arm_of.values())  # whichever worker answered
    pids = {answer["prediction_id"].split(".")[0].split("-")[1] for _, answer in answers}
    assert len(pids) >= 2, "the requests all reached one worker"
    share = sum(a["model_version"] == "v2" for _, a in answers) / len(answers)
    assert abs(share - 0.3) < 0.1  # 200 keys; the in-process test checks the ratio over 2,000 requests

    def counted():
        arms = requests.get(f"{server.url}/api/parima/experiments/{experiment}", timeout=10).json()["arms"]
        return sum(a["requests"] for a in arms.values()) == len(keys) and arms

    arms = wait_until(counted, timeout=30, what="every worker's arm counts")
    assert arms["v2"]["requests"] == sum(a["model_version"] == "v2" for _, a in answers)


def test_a_shadow_short_of_labels_after_max_hours_stays_staged_and_warns_once(make_app, tmp_path):
    app = make_app(promotion={"mode": "shadow", "maxHours": 0.5})
    client = app.test_client()
    stage_good_against_bad(client, tmp_path)
    state_file = tmp_path / "ml_models" / "parima" / "rollout.json"
    state = json.loads(state_file.read_text())
    state["staged"]["since"] = "2026-01-01T00:00:00+00:00"  # staged long before maxHours ago
    state_file.write_text(json.dumps(state))
    rt_of(app).tick()
    rt_of(app).tick()
    warnings = [n for n in client.get("/api/notifications?level=warning").json["notifications"]
                if n["event_type"] == "MODEL_STAGED"]
    assert len(warnings) == 1 and "still staged" in warnings[0]["message"] and warnings[0]["version"] == "v3"
    assert client.get("/api/parima/versions/v3").json["status"] == "staged"
