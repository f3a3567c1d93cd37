"""Text in a numeric column: a data-quality failure unless training.dataQuality tolerates it."""
import json

import numpy as np
import pandas as pd
import pytest

from backend import create_app
from backend.config import ConfigError, load_config
from backend.training import DataQualityError, prepare
from tests.helpers import history_events, wait_job, write_config


def frame_with_forty(n: int = 100, every: int = 20) -> pd.DataFrame:
    """Ages with the text 'forty' in one row of every ``every`` (the first at data row 7)."""
    rng = np.random.default_rng(0)
    ages = [str(int(a)) for a in rng.integers(18, 80, n)]
    for i in range(6, n, every):
        ages[i] = "forty"
    return pd.DataFrame({"age": pd.Series(ages, dtype=object), "city": rng.choice(["a", "b", "c"], n),
                         "label": rng.integers(0, 2, n)})


def test_text_in_a_numeric_column_fails_naming_the_column_and_the_first_bad_row():
    with pytest.raises(DataQualityError) as caught:
        prepare(frame_with_forty(), "label", ["age", "city"], "classification")
    assert caught.value.problem == "invalid_numbers"
    message = str(caught.value)
    assert "'age'" in message and "5 of 100 rows" in message and "row 7" in message and "'forty'" in message
    found = caught.value.report["problems"][0]
    assert (found["column"], found["count"], found["first_row"], found["first_value"]) == ("age", 5, 7, "forty")


def test_a_tolerated_fraction_of_bad_cells_becomes_missing_and_is_counted():
    data = prepare(frame_with_forty(), "label", ["age", "city"], "classification", max_invalid_fraction=0.1)
    assert "age" in data.numeric and "city" in data.categorical
    assert int(data.X["age"].isna().sum()) == 5
    assert any("'age'" in w and "5 non-numeric" in w for w in data.warnings), data.warnings
    with pytest.raises(DataQualityError):  # 5 % of the rows is more than a 4 % tolerance
        prepare(frame_with_forty(), "label", ["age", "city"], "classification", max_invalid_fraction=0.04)


def test_a_column_that_is_mostly_text_stays_categorical():
    frame = frame_with_forty()
    frame["city"] = ["12" if i % 4 == 0 else "lyon" for i in range(len(frame))]  # 25 % numbers
    data = prepare(frame, "label", ["city"], "classification")
    assert data.categorical == ["city"] and data.X["city"].notna().all()


def test_text_in_a_regression_target_fails_unless_tolerated():
    frame = frame_with_forty().rename(columns={"age": "price", "label": "unused"})
    frame["age"] = np.arange(len(frame), dtype=float)
    with pytest.raises(DataQualityError) as caught:
        prepare(frame, "price", ["age"], "regression")
    assert caught.value.problem == "invalid_numbers" and caught.value.report["problems"][0]["column"] == "price"
    data = prepare(frame, "price", ["age"], "regression", max_invalid_fraction=0.05)
    assert len(data.y) == 95 and data.y.notna().all()


def write_forty_csv(path, n: int = 300) -> None:
    """Demo rows where one row in 20 says 'forty' in the numeric feature deviceFPS."""
    from backend import demo

    frame = demo.generate(n, seed=3)
    frame["deviceFPS"] = [("forty" if i % 20 == 6 else str(v)) for i, v in enumerate(frame["deviceFPS"])]
    frame.to_csv(path, index=False)


def test_training_on_a_csv_with_text_in_a_numeric_feature_fails_and_the_active_version_stays(
        trained_client, tmp_path):
    write_forty_csv(tmp_path / "data" / "forty.csv")
    report = trained_client.post("/api/parima/data-quality", json={"csv_path": "forty.csv"}).json
    assert report["ok"] is False and report["problems"][0]["problem"] == "invalid_numbers"
    assert report["problems"][0]["column"] == "deviceFPS"
    job_id = trained_client.post("/api/parima/train", json={"csv_path": "forty.csv", "force": True}).json["job_id"]
    job = wait_job(lambda: trained_client.get(f"/api/parima/jobs/{job_id}").json)
    assert job["status"] == "failed" and job["error"]["reason"] == "data_quality", job
    failed = [e for e in history_events(tmp_path) if e["event_type"] == "TRAINING_FAILED"][-1]
    assert failed["details"]["problem"] == "invalid_numbers" and "'deviceFPS'" in failed["details"]["error"]
    assert trained_client.get("/api/parima/training/status").json["active_version"] == "v1"
    assert [v["version"] for v in trained_client.get("/api/parima/versions").json["versions"]] == ["v1"]


def test_a_configured_tolerance_reaches_the_training_and_its_warnings(tmp_path):
    config = write_config(tmp_path, dataQuality={"maxInvalidFraction": 0.1})
    write_forty_csv(tmp_path / "data" / "forty.csv")
    client = create_app(config).test_client()
    assert client.post("/api/parima/data-quality", json={"csv_path": "forty.csv"}).json["ok"] is True
    job_id = client.post("/api/parima/train", json={"csv_path": "forty.csv", "force": True}).json["job_id"]
    job = wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json)
    assert job["status"] == "completed", job
    version = client.get(f"/api/parima/versions/{job['result']['version']}").json
    assert any("'deviceFPS'" in w and "15 non-numeric" in w for w in version.get("warnings", [])), version


@pytest.mark.parametrize("value", [-0.1, 1.5, "lots"])
def test_an_out_of_range_tolerance_stops_the_start_naming_the_key(tmp_path, value):
    config = write_config(tmp_path, dataQuality={"maxInvalidFraction": value})
    with pytest.raises(ConfigError, match="dataQuality.maxInvalidFraction"):
        load_config(config)
    raw = json.loads(config.read_text())
    raw["models"]["parima"]["training"]["dataQuality"] = {"maxInvalid": 0.1}
    config.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="maxInvalid"):
        load_config(config)
