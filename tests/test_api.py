"""Request validation and error envelopes, through the real app and a real trained model."""
import json

import pytest

from backend import demo
from tests.helpers import write_samples

ROW = {"frustumCoverage": 0.6, "occlusionRatio": 0.1, "meanVisibleDistance": 8.0, "deviceFPS": 72, "deviceCPULoad": 0.3}


def assert_error(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.json["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if code:
        assert error["code"] == code
    return error


def test_predict_before_any_model_is_503(client):
    assert_error(client.post("/api/parima/predict", json={"features": ROW}), 503, "model_not_ready")
    health = client.get("/health").json
    assert health["status"] == "degraded" and health["model_loaded"] is False


def test_unknown_model_and_route_and_method(client):
    error = assert_error(client.post("/api/nope/predict", json={"features": ROW}), 404, "model_not_found")
    assert error["details"]["model"] == "nope"
    assert_error(client.get("/no/such/route"), 404)
    assert_error(client.get("/api/parima/predict"), 405)


def test_single_and_batch_predictions_name_the_version(trained_client):
    single = trained_client.post("/api/parima/predict", json={"features": ROW}).json
    assert single["model"] == "parima" and single["model_version"] == "v1"
    assert single["prediction"] in range(4)
    assert set(single["probabilities"]) == {"0", "1", "2", "3"}
    assert abs(sum(single["probabilities"].values()) - 1) < 1e-6
    batch = trained_client.post("/api/parima/predict", json={"instances": [ROW, ROW, ROW]}).json
    assert batch["predictions"] == [single["prediction"]] * 3 and len(batch["probabilities"]) == 3


def test_null_is_imputed_numeric_strings_accepted_extras_listed(trained_client):
    body = {"features": {**ROW, "deviceFPS": None, "deviceCPULoad": "0.4", "userAgent": "x", "decisionLOD": 1}}
    answer = trained_client.post("/api/parima/predict", json=body)
    assert answer.status_code == 200
    assert answer.json["ignored_features"] == ["decisionLOD", "userAgent"]


def test_fast_and_cell_by_cell_checks_answer_alike(trained_client):
    rows = [{**ROW, "deviceFPS": 30 + i, "deviceCPULoad": None if i == 1 else 0.1 * i} for i in range(4)]
    rows[2]["note"] = "extra"
    plain = trained_client.post("/api/parima/predict", json={"instances": rows}).json  # column-at-a-time path
    texty = [dict(r) for r in rows]
    texty[3]["deviceFPS"] = str(texty[3]["deviceFPS"])  # numeric text sends the whole batch cell by cell
    slow = trained_client.post("/api/parima/predict", json={"instances": texty}).json
    assert plain.pop("prediction_ids") != slow.pop("prediction_ids")  # each request is logged under its own ids
    assert plain == slow and plain["ignored_features"] == ["note"]


@pytest.mark.parametrize(
    "features, field",
    [
        ({k: v for k, v in ROW.items() if k != "deviceFPS"}, ["deviceFPS"]),
        ({**ROW, "deviceFPS": {"value": 3}}, "deviceFPS"),
        ({**ROW, "deviceFPS": [1, 2]}, "deviceFPS"),
        ({**ROW, "deviceFPS": "fast"}, "deviceFPS"),
        ({**ROW, "deviceFPS": True}, "deviceFPS"),
    ],
)
def test_bad_features_are_422_naming_the_field(trained_client, features, field):
    error = assert_error(trained_client.post("/api/parima/predict", json={"features": features}), 422, "invalid_features")
    assert error["details"]["errors"][0]["field"] == field


@pytest.mark.parametrize("raw, status", [
    ('{"features": {"frustumCoverage": NaN}}', 400),
    ('{"features": {"frustumCoverage": Infinity}}', 400),
    ('{"features": {', 400),
    ('[' * 100000 + ']' * 100000, 400),
])
def test_malformed_or_non_finite_json_is_400(trained_client, raw, status):
    assert_error(trained_client.post("/api/parima/predict", data=raw, content_type="application/json"), status)


def test_out_of_range_numbers_are_refused_as_malformed(trained_client):
    # a literal no double can hold is refused while decoding, like NaN and Infinity
    for literal in ("1e999", "-1e999", "1" + "0" * 400):
        raw = json.dumps({"features": ROW}).replace('"deviceFPS": 72', f'"deviceFPS": {literal}')
        error = assert_error(trained_client.post("/api/parima/predict", data=raw, content_type="application/json"), 400)
        assert error["code"] == "malformed_json" and "infinity" in error["message"]


def test_wrong_content_type_and_shapes(trained_client):
    assert_error(trained_client.post("/api/parima/predict", data="features=1", content_type="text/plain"), 415)
    assert_error(trained_client.post("/api/parima/predict", json=[ROW]), 422)
    assert_error(trained_client.post("/api/parima/predict", json={"features": ROW, "instances": [ROW]}), 422)
    assert_error(trained_client.post("/api/parima/predict", json={"instances": []}), 422)
    error = assert_error(trained_client.post("/api/parima/predict", json={"instances": [ROW, "row"]}), 422)
    assert error["details"]["errors"][0]["row"] == 1


def test_limits_on_rows_and_bytes(tmp_path):
    from backend import create_app
    from tests.helpers import write_config

    path = write_config(tmp_path)
    doc = json.loads(path.read_text())
    doc["security"] = {"maxBatchRows": 5, "maxRequestBytes": 2048}
    path.write_text(json.dumps(doc))
    client = create_app(path).test_client()
    assert_error(client.post("/api/parima/samples", json={"samples": [dict(ROW, decisionLOD=1)] * 6}), 413, "too_many_rows")
    assert_error(client.post("/api/parima/samples", json={"samples": [dict(ROW, decisionLOD=1, pad="x" * 4000)]}), 413)
    assert not (tmp_path / "data" / "samples.csv").exists()


def test_samples_are_appended_and_counted(client, samples_csv):
    rows = demo.rows(3, seed=4)
    answer = client.post("/api/parima/samples", json={"samples": rows})
    assert answer.status_code == 201
    assert answer.json == {"accepted": 3, "total_samples": 3, "samples_since_last_training": 3}
    rows[0]["deviceFPS"] = None
    answer = client.post("/api/parima/samples", json={"samples": rows[:1]})
    assert answer.json["total_samples"] == 4
    assert samples_csv.read_text().splitlines()[-1].split(",")[3] == ""  # a null feature is an empty cell


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("decisionLOD"), "decisionLOD"),
    (lambda r: r.update(decisionLOD=None), "decisionLOD"),
    (lambda r: r.update(surprise=1), "surprise"),
    (lambda r: r.pop("deviceFPS"), "deviceFPS"),
    (lambda r: r.update(deviceFPS="fast"), "deviceFPS"),
    (lambda r: r.update(deviceFPS=[1]), "deviceFPS"),
])
def test_one_bad_sample_rejects_the_batch_and_writes_nothing(client, samples_csv, mutate, field):
    write_samples(samples_csv, 20, seed=2)
    before = samples_csv.read_bytes()
    rows = demo.rows(5, seed=3)
    mutate(rows[3])
    error = assert_error(client.post("/api/parima/samples", json={"samples": rows}), 422, "invalid_samples")
    assert {"row": 3, "field": field} == {k: error["details"]["errors"][0][k] for k in ("row", "field")}
    assert samples_csv.read_bytes() == before


def test_history_and_jobs_queries_are_validated(client):
    assert_error(client.get("/api/parima/training/history?limit=abc"), 422)
    assert_error(client.get("/api/parima/training/history?event_type=NOPE"), 422)
    assert_error(client.get("/api/parima/jobs?status=weird"), 422)
    assert_error(client.get("/api/parima/jobs/unknown"), 404, "job_not_found")
    assert_error(client.get("/api/parima/versions/v9"), 404, "version_not_found")
    assert_error(client.get("/api/parima/versions/..%2Fetc"), 404)
    assert_error(client.get("/api/parima/versions/bad-id"), 404, "version_not_found")  # CONTRACT §7: malformed ids are 404


def test_train_body_is_validated(client):
    assert_error(client.post("/api/parima/train", json={"force": "yes please"}), 422)
    assert_error(client.post("/api/parima/train", json={"unknown": 1}), 422)
    assert_error(client.post("/api/parima/train", json={"model_type": "quantum"}), 422, "invalid_model_type")


def test_api_key_guards_mutating_endpoints(tmp_path, monkeypatch):
    from backend import create_app
    from tests.helpers import write_config

    monkeypatch.setenv("REFIT_API_KEY", "s3cret")
    client = create_app(write_config(tmp_path)).test_client()
    body = {"samples": demo.rows(1)}
    assert_error(client.post("/api/parima/samples", json=body), 401, "unauthorized")
    assert_error(client.post("/api/parima/samples", json=body, headers={"X-API-Key": "wrong"}), 401)
    assert client.post("/api/parima/samples", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 201
    assert client.post("/api/parima/samples", json=body, headers={"X-API-Key": "s3cret"}).status_code == 201
    assert client.get("/api/parima/training/status").status_code == 200
    assert client.post("/api/parima/predict", json={"features": ROW}).status_code == 503  # predict stays open


@pytest.mark.server
def test_counts_stay_exact_while_another_process_appends(client, samples_csv):
    import subprocess
    import sys

    from tests.helpers import ROOT

    client.post("/api/parima/samples", json={"samples": demo.rows(5, seed=1)})
    script = (
        "import sys; from pathlib import Path; from tests.helpers import write_samples\n"
        "for i in range(20): write_samples(Path(sys.argv[1]), 10, seed=i)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(samples_csv)], cwd=ROOT)
    for _ in range(10):  # the API appends and counts while the other process writes
        client.post("/api/parima/samples", json={"samples": demo.rows(2, seed=2)})
        client.get("/api/parima/training/status")
    assert writer.wait(60) == 0
    status = client.get("/api/parima/training/status").json
    assert status["total_samples"] == 5 + 200 + 20
    assert status["samples_since_last_training"] == 225


def test_ready_metrics_and_request_log(client, samples_csv, caplog, monkeypatch):
    import logging

    from tests.helpers import wait_job, write_samples

    assert client.get("/ready").status_code == 200  # no data yet: nothing to wait for
    write_samples(samples_csv, 200, seed=1)
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503 and not_ready.json["error"]["code"] == "not_ready"
    job_id = client.post("/api/parima/train", json={}).json["job_id"]
    wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json)
    assert client.get("/ready").json["models"]["parima"] == {"ready": True, "version": "v1", "has_data": True}

    with caplog.at_level(logging.INFO, logger="refit.requests"):
        for _ in range(3):
            client.post("/api/parima/predict", json={"features": ROW}, headers={"X-API-Key": "not-logged"})
    lines = [json.loads(r.message) for r in caplog.records if r.name == "refit.requests"]
    assert lines[-1]["path"] == "/api/parima/predict" and lines[-1]["status"] == 200
    assert lines[-1]["model"] == "parima" and lines[-1]["model_version"] == "v1" and lines[-1]["duration_ms"] >= 0
    assert "not-logged" not in caplog.text

    client.post("/api/parima/samples", json={"samples": demo.rows(4, seed=2)})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'refit_http_requests_total{endpoint="/api/<model>/predict",method="POST",model="parima",status="200"} 3.0' in text
    assert 'refit_trainings_total{model="parima",outcome="promoted"} 1.0' in text
    assert 'refit_samples_ingested_total{model="parima"} 4.0' in text
    assert 'refit_served_version{model="parima"} 1.0' in text
    assert "refit_http_request_duration_seconds_bucket" in text
