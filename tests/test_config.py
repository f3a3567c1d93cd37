import json
from pathlib import Path

import pytest

from backend import build_state, create_app
from backend.config import ConfigError, load_config
from tests.helpers import ROOT, write_config


def edit(path: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


def test_shipped_demo_config_loads():
    config = load_config(ROOT / "config.json")
    parima = config.models["parima"]
    assert parima.target == "decisionLOD"
    assert parima.features == ("frustumCoverage", "occlusionRatio", "meanVisibleDistance", "deviceFPS", "deviceCPULoad")
    assert parima.training.log_file == ROOT / "data" / "training_logs" / "parima_decisions_log.csv"
    assert parima.training.auto_train_interval_hours < 0.1  # the demo retrains about every minute


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    path = write_config(tmp_path)
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.storage.data_dir == tmp_path / "data"
    assert config.models["parima"].training.training_log_file == tmp_path / "data" / "training_logs" / "history.log"


def test_refit_config_environment_variable(tmp_path, monkeypatch):
    path = write_config(tmp_path)
    monkeypatch.setenv("REFIT_CONFIG", str(path))
    assert load_config().path == path


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda d: d["models"]["parima"]["training"].update(bogusOption=1), "models.parima.training.bogusOption"),
        (lambda d: d.update(extra={}), "extra"),
        (lambda d: d["models"]["parima"]["training"].update(minSamplesForTraining="many"),
         "models.parima.training.minSamplesForTraining"),
        (lambda d: d["server"].update(port="5001"), "server.port"),
        (lambda d: d["models"]["parima"]["training"].update(metric="rmse"), "models.parima.training.metric"),
        (lambda d: d["models"]["parima"]["training"].update(modelType="magic"), "models.parima.training.modelType"),
        (lambda d: d["models"]["parima"].pop("target"), "models.parima.target"),
        (lambda d: d["models"].update({"Bad Name": d["models"]["parima"]}), "models.Bad Name"),
        (lambda d: d["models"].update({"models": d["models"]["parima"]}), "models.models"),
        (lambda d: d["models"]["parima"]["training"].update(hyperparameters={"colour": "red"}),
         "models.parima.training.hyperparameters"),
        (lambda d: d["models"]["parima"]["training"].update(tuning={"method": "grid", "searchSpace": {"nope": [1]}}),
         "models.parima.training.tuning.searchSpace"),
        (lambda d: d["models"]["parima"]["training"].update(schedule="61 * * * *"), "models.parima.training.schedule"),
        (lambda d: d["models"]["parima"]["training"].update(schedule="every sunday"), "models.parima.training.schedule"),
        (lambda d: d["models"]["parima"]["training"].update(maxModelAgeHours=0), "models.parima.training.maxModelAgeHours"),
    ],
)
def test_bad_config_stops_the_start_naming_the_key(tmp_path, change, named):
    path = edit(write_config(tmp_path), change)
    with pytest.raises(ConfigError) as caught:
        create_app(path)
    assert named in str(caught.value)


def test_unreadable_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "config.json")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")


def test_an_empty_api_key_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("REFIT_API_KEY", "")
    with pytest.raises(ConfigError, match="REFIT_API_KEY"):
        build_state(load_config(write_config(tmp_path)))
