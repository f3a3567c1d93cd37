"""The training catalogue: algorithms, selection, tuning, preprocessing, splitting, evaluation, plots, datasets."""
import importlib.util
import io
import json
from dataclasses import asdict
from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from backend import catalogue, create_app
from backend.config import load_config
from backend.options import merge
from backend.schemas import load, train_request
from backend.serving import predict_frame, rows_to_frame
from backend.candidate import TrainingSpec, train_candidate
from tests.helpers import wait_job
from tests.onnx_checks import assert_served_equally

DATASETS = {
    "breast_cancer": (load_breast_cancer, "classification"),
    "wine": (load_wine, "classification"),
    "diabetes": (load_diabetes, "regression"),
}


def dataset_config(tmp_path: Path, name: str, **training) -> Path:
    loader, task = DATASETS[name]
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    loader(as_frame=True).frame.to_csv(data / f"{name}.csv", index=False)
    # scikit-learn's toy datasets are ordered by class, not by time: hold out at random, train on all rows
    settings = {"logFile": f"./data/{name}.csv", "minSamplesForTraining": 10, "plots": False,
                "splitStrategy": "random", "trainingWindow": "all", **training}
    config = {"models": {name.replace("_", "-"): {"task": task, "target": "target", "training": settings}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path / "config.json"


def features_of(name: str):
    """Every row of a toy data set, without its target: what the served model must answer as scikit-learn does."""
    return DATASETS[name][0](as_frame=True).frame.drop(columns="target").astype(float)


def run_in_process(tmp_path: Path, name: str, overrides: dict | None = None, **training) -> dict:
    """Train with the training process's own function, in this process (the fast way to cover many options)."""
    config = load_config(dataset_config(tmp_path, name, **training))
    model = next(iter(config.models.values()))
    spec = TrainingSpec(model=model.name, csv_path=str(model.training.log_file), limit_bytes=None, target="target",
                        features=None, task=model.task,
                        options=merge(model.training.options, load(train_request, overrides or {})),
                        staging_dir=str(tmp_path / "staging"))
    return asdict(train_candidate(spec, lambda *message: None))


def train(client, model, **body):
    response = client.post(f"/api/{model}/train", json=body)
    assert response.status_code == 202, response.json
    return wait_job(lambda: client.get(f"/api/{model}/jobs/{response.json['job_id']}").json, timeout=300)


@pytest.mark.parametrize("algorithm", [a for a in catalogue.algorithms("classification")
                                       if a not in catalogue.OPTIONAL and a not in catalogue.ENSEMBLES])
def test_every_classifier_trains_and_predicts(tmp_path, algorithm):
    result = run_in_process(tmp_path, "breast_cancer", {"model_type": algorithm})
    assert result["algorithm"] == algorithm and result["metrics"]["accuracy"] > 0.85
    model = joblib.load(tmp_path / "staging" / "model.joblib")
    frame = rows_to_frame(result["check_rows"], tuple(result["numeric_features"]), tuple(result["categorical_features"]))
    assert predict_frame(model, frame, "classification")[0] == result["check_predictions"]
    assert result["evaluation"]["confusion_matrix"]["labels"] == [0, 1]
    assert result["feature_importance"]["method"] in ("native", "permutation")
    # CONTRACT §11: ONNX Runtime answers as scikit-learn does, or scikit-learn serves and the record says why
    runtime = assert_served_equally(result, tmp_path / "staging", features_of("breast_cancer"))
    assert runtime == ("sklearn" if algorithm == "hist_gradient_boosting" else "onnx"), result["serving_runtime_reason"]


@pytest.mark.parametrize("algorithm", [a for a in catalogue.algorithms("regression")
                                       if a not in catalogue.OPTIONAL and a not in catalogue.ENSEMBLES])
def test_every_regressor_trains_and_predicts(tmp_path, algorithm):
    result = run_in_process(tmp_path, "diabetes", {"model_type": algorithm}, metric="rmse")
    assert result["algorithm"] == algorithm
    assert result["metrics"]["r2"] > 0.0 and result["metrics"]["rmse"] > 0
    assert "explained_variance" in result["metrics"]
    runtime = assert_served_equally(result, tmp_path / "staging", features_of("diabetes"))
    assert runtime == ("sklearn" if algorithm == "hist_gradient_boosting" else "onnx"), result["serving_runtime_reason"]


def test_tuned_and_auto_models_reach_the_known_accuracy(tmp_path):
    (tmp_path / "a").mkdir()
    cancer = create_app(dataset_config(tmp_path / "a", "breast_cancer", metric="accuracy")).test_client()
    job = train(cancer, "breast-cancer", model_type="auto", tuning={"method": "random", "n_iter": 4, "cv": 3})
    record = cancer.get(f"/api/breast-cancer/versions/{job['result']['version']}").json
    assert record["metrics"]["accuracy"] >= 0.93  # rows now train in file order: 0.939 here, 0.95 with another split
    assert record["selection"]["chosen"] == record["algorithm"]
    assert set(record["selection"]["candidates"]) == set(catalogue.DEFAULT_CANDIDATES["classification"])
    assert record["tuning"]["method"] == "random" and record["tuning"]["n_trials"] == 4
    assert record["cv"]["mean"] == record["tuning"]["best_score"]

    (tmp_path / "b").mkdir()
    wine = create_app(dataset_config(tmp_path / "b", "wine", metric="accuracy")).test_client()
    job = train(wine, "wine", model_type="logistic",
                tuning={"method": "optuna", "n_iter": 8, "cv": 3, "searchSpace": {"C": {"low": 0.01, "high": 100, "log": True}}})
    record = wine.get(f"/api/wine/versions/{job['result']['version']}").json
    assert record["metrics"]["accuracy"] >= 0.90
    assert record["tuning"]["method"] == "optuna" and 0.01 <= record["tuning"]["best_params"]["C"] <= 100
    assert record["params"]["C"] == record["tuning"]["best_params"]["C"]


@pytest.mark.parametrize("kind", ["voting", "stacking"])
def test_ensembles_over_candidates(tmp_path, kind):
    result = run_in_process(tmp_path, "wine", {"model_type": kind, "candidates": ["logistic", "random_forest", "knn"]})
    assert result["algorithm"] == kind and result["selection"] == {"members": ["logistic", "random_forest", "knn"]}
    assert result["metrics"]["accuracy"] > 0.85
    assert_served_equally(result, tmp_path / "staging", features_of("wine"))


def test_grid_search_records_every_trial(tmp_path):
    result = run_in_process(tmp_path, "wine", {"model_type": "knn", "tuning": {"method": "grid", "cv": 3}})
    assert result["tuning"]["n_trials"] == 10  # 5 n_neighbors x 2 weights
    assert all(t["mean"] is not None for t in result["tuning"]["trials"])


@pytest.mark.parametrize("preprocessing", [
    {"missingValues": "mean", "outliers": "iqr", "scaling": "minmax"},
    {"missingValues": "most_frequent", "outliers": "zscore", "scaling": "robust"},
    {"missingValues": "constant", "scaling": "none", "encoding": "ordinal"},
    {"missingValues": "drop", "featureSelection": "mutual_info", "k": 3},
    {"featureSelection": "tree_importance", "k": 3},
    {"featureSelection": "rfe", "k": 3},
    {"featureSelection": "correlation", "k": 3},
])
def test_preprocessing_options_live_inside_the_artifact(tmp_path, preprocessing):
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    options = {"model_type": "logistic", "preprocessing": preprocessing}
    result = run_in_process(tmp_path, "wine", options)
    assert result["metrics"]["accuracy"] > 0.7
    model = joblib.load(tmp_path / "staging" / "model.joblib")
    chosen = {"missingValues": "median", "outliers": "none", "scaling": "standard", **preprocessing}
    steps = model.named_steps
    # "drop" drops rows at training; gaps at serving time are still filled, with the median
    assert steps["impute"].strategy == {"drop": "median"}.get(chosen["missingValues"], chosen["missingValues"])
    assert ("cap" in steps) == (chosen["outliers"] != "none")
    if "cap" in steps:
        assert steps["cap"].method == chosen["outliers"]
    scalers = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
    if chosen["scaling"] == "none":
        assert steps["scale"] == "passthrough"
    else:
        assert type(steps["scale"]) is scalers[chosen["scaling"]]
    if "k" in preprocessing:
        assert steps["select"].get_support().sum() == 3
        assert len(result["feature_importance"]["features"]) == 3
    # the artifact alone turns raw rows, gaps included, into answers: nothing outside it preprocesses
    raw = load_wine(as_frame=True).frame.drop(columns="target").head(20)
    raw.iloc[0, 0] = float("nan")
    assert set(model.predict(raw)) <= {0, 1, 2}
    # the preprocessing converts to ONNX too (our own capper and selector included), with the same answers
    everything = features_of("wine")
    everything.iloc[0, 0] = float("nan")
    assert assert_served_equally(result, tmp_path / "staging", everything) == "onnx", result["serving_runtime_reason"]


def test_time_split_and_training_window(tmp_path):
    result = run_in_process(tmp_path, "diabetes", {"split_strategy": "time", "training_window": 200,
                                                   "model_type": "ridge", "test_size": 0.25})
    # the window holds its holdout (the newest 50 rows); the promoted candidate is refit on all 200
    assert result["n_samples"] == 200 and result["n_test_samples"] == 50 and result["refit"] is True
    assert result["trained_rows"] == {"start": 242, "end": 442} and result["holdout"] == {"start": 392, "end": 442, "n": 50}
    frame = load_diabetes(as_frame=True).frame
    newest = frame.drop(columns="target").iloc[-50:].head(5)
    assert [round(r["bmi"], 8) for r in result["check_rows"]] == [round(v, 8) for v in newest["bmi"]]


def test_bad_options_are_422_naming_the_field(tmp_path):
    client = create_app(dataset_config(tmp_path, "wine")).test_client()
    cases = [
        ({"model_type": "logistic", "hyperparameters": {"colour": "red"}}, "hyperparameters"),
        ({"model_type": "svm", "tuning": {"method": "random", "searchSpace": {"nope": [1, 2]}}}, "tuning.searchSpace"),
        ({"model_type": "svm", "tuning": {"method": "grid", "searchSpace": {"C": {"low": 1, "high": 2}}}},
         "tuning.searchSpace"),
        ({"model_type": "auto", "candidates": ["magic"]}, "candidates"),
        ({"model_type": "lasso"}, "model_type"),  # a regressor for a classification model
        ({"metric": "rmse"}, "metric"),
    ]
    for body, field in cases:
        response = client.post("/api/wine/train", json=body)
        assert response.status_code == 422, (body, response.json)
        assert response.json["error"]["details"]["field"] == field
    assert client.post("/api/wine/train", json={"tuning": {"method": "magic"}}).status_code == 422
    assert client.post("/api/wine/train", json={"preprocessing": {"scaling": "huge"}}).status_code == 422


@pytest.mark.skipif(importlib.util.find_spec("xgboost") is not None, reason="xgboost is installed")
def test_an_optional_algorithm_names_its_missing_package(tmp_path):
    client = create_app(dataset_config(tmp_path, "wine")).test_client()
    response = client.post("/api/wine/train", json={"model_type": "xgboost"})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "package_missing" and response.json["error"]["details"]["package"] == "xgboost"


@pytest.mark.parametrize("content, warning", [
    ("a,b,target\n" + "".join(f"{i},,{i % 2}\n" for i in range(40)), "'b' is constant"),
    ("a,b,target\n" + "".join(f"{i},{'oops' if i == 3 else i * 2},{i % 2}\n" for i in range(40)), "non-numeric"),
    ("a,b,target\n" + "".join(f"{i},{'inf' if i == 5 else i},{i % 2}\n" for i in range(40)), "infinite"),
])
def test_messy_but_usable_data_trains_with_warnings(tmp_path, content, warning):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "messy.csv").write_text(content)
    (tmp_path / "config.json").write_text(json.dumps({"models": {"messy": {"target": "target", "training": {
        "logFile": "./data/messy.csv", "minSamplesForTraining": 10, "modelType": "logistic", "splitStrategy": "random",
        "dataQuality": {"maxInvalidFraction": 0.05}}}}}))  # 'oops' in 1 row of 40 fails unless tolerated
    client = create_app(tmp_path / "config.json").test_client()
    job = train(client, "messy")
    assert job["status"] == "completed", job
    record = client.get(f"/api/messy/versions/{job['result']['version']}").json
    assert any(warning in w for w in record["warnings"]), record["warnings"]
    assert client.post("/api/messy/predict", json={"features": {"a": 1, "b": None}}).status_code == 200


def test_an_unseen_category_predicts(tmp_path):
    (tmp_path / "data").mkdir()
    rows = "".join(f"{['red', 'green', 'blue'][i % 3]},{i},{int(i % 3 == 0)}\n" for i in range(60))
    (tmp_path / "data" / "colours.csv").write_text("colour,size,target\n" + rows)
    (tmp_path / "config.json").write_text(json.dumps({"models": {"colours": {"target": "target", "training": {
        "logFile": "./data/colours.csv", "minSamplesForTraining": 10}}}}))
    client = create_app(tmp_path / "config.json").test_client()
    train(client, "colours")
    answer = client.post("/api/colours/predict", json={"features": {"colour": "ultraviolet", "size": 3}})
    assert answer.status_code == 200 and answer.json["prediction"] in (0, 1)


def test_cancel_during_tuning_leaves_the_active_model(tmp_path):
    client = create_app(dataset_config(tmp_path, "breast_cancer")).test_client()
    first = train(client, "breast-cancer", model_type="logistic")
    response = client.post("/api/breast-cancer/train", json={
        "force": True, "model_type": "svm",
        "tuning": {"method": "grid", "cv": 5, "searchSpace": {"C": [0.1, 1, 10, 100, 1000], "gamma": [0.001, 0.01, 0.1, 1]}}})
    job_id = response.json["job_id"]
    from tests.helpers import wait_until

    job = wait_until(lambda: (j := client.get(f"/api/breast-cancer/jobs/{job_id}").json)["stage"].startswith("tuning") and j,
                     timeout=120, interval=0.02, what="the tuning stage")
    assert 40 <= job["progress"] <= 62
    assert client.delete(f"/api/breast-cancer/jobs/{job_id}").status_code == 202
    job = wait_job(lambda: client.get(f"/api/breast-cancer/jobs/{job_id}").json)
    assert job["status"] == "cancelled" and job["error"]["reason"] == "cancelled"
    versions = client.get("/api/breast-cancer/versions").json["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(first["result"]["version"], "active")]


def test_plots_and_feature_importance_are_served(tmp_path):
    client = create_app(dataset_config(tmp_path, "wine", plots=True)).test_client()
    version = train(client, "wine", model_type="random_forest")["result"]["version"]
    record = client.get(f"/api/wine/versions/{version}").json
    assert set(record["plots"]) == {"confusion_matrix", "roc_curve", "precision_recall", "feature_importance"}
    png = client.get(f"/api/wine/versions/{version}/plots/roc_curve.png")
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    assert client.get(f"/api/wine/versions/{version}/plots/secrets.png").status_code == 404
    importance = client.get(f"/api/wine/versions/{version}/feature-importance").json
    assert importance["method"] == "native" and len(importance["features"]) == 13

    (tmp_path / "r").mkdir()
    regression = create_app(dataset_config(tmp_path / "r", "diabetes", plots=True, modelType="ridge")).test_client()
    version = train(regression, "diabetes")["result"]["version"]
    assert set(regression.get(f"/api/diabetes/versions/{version}").json["plots"]) == {
        "predicted_vs_actual", "residuals", "feature_importance"}


def test_data_quality_report_without_training(tmp_path):
    client = create_app(dataset_config(tmp_path, "wine")).test_client()
    report = client.post("/api/wine/data-quality").json
    assert report["ok"] is True and report["rows"] == 178 and report["class_balance"] == {"1": 71, "0": 59, "2": 48}
    assert report["duplicate_rows"] == 0 and report["missing"]["alcohol"] == 0
    (tmp_path / "data" / "one.csv").write_text("alcohol,target\n1,1\n2,1\n")
    bad = client.post("/api/wine/data-quality", json={"csv_path": "one.csv"}).json
    assert bad["ok"] is False and bad["problems"][0]["problem"] == "single_class"
    assert client.get("/api/wine/versions").json["versions"] == []


def test_datasets_upload_inspect_and_train(tmp_path):
    client = create_app(dataset_config(tmp_path, "wine")).test_client()
    csv = load_wine(as_frame=True).frame.to_csv(index=False).encode()
    response = client.post("/api/datasets", data={"file": (io.BytesIO(csv), "wine.csv"), "name": "wine copy"},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.json
    info = response.json
    assert info["rows"] == 178 and info["columns"] == 14 and info["name"] == "wine copy"
    assert info["dtypes"]["alcohol"] == "float64" and info["missing_values"]["alcohol"] == 0
    assert [d["dataset_id"] for d in client.get("/api/datasets").json["datasets"]] == [info["dataset_id"]]
    stats = client.get(f"/api/datasets/{info['dataset_id']}").json["numeric_stats"]
    assert stats["alcohol"]["count"] == 178
    job = train(client, "wine", dataset_id=info["dataset_id"], model_type="logistic")
    assert job["status"] == "completed"
    assert client.get("/api/datasets/ffffffffffff").status_code == 404
    assert client.get("/api/datasets/../etc").status_code == 404
    assert client.post("/api/wine/train", json={"dataset_id": "nope"}).status_code == 422
    for payload, problem in [(b"", "empty"), (b"\xff\xfe\x00garbage", "encoding"), (b"a,b\n1,2,3,4\n", "malformed"),
                             (b"a,b\n", "no_rows")]:
        bad = client.post("/api/datasets", data={"file": (io.BytesIO(payload), "x.csv")}, content_type="multipart/form-data")
        assert bad.status_code == 422 and bad.json["error"]["details"]["problem"] == problem, payload
    assert client.post("/api/datasets", data={}, content_type="multipart/form-data").status_code == 422


def test_tuning_stops_at_its_time_budget_and_cross_validation_is_optional(tmp_path):
    result = run_in_process(tmp_path, "breast_cancer", {"model_type": "svm", "tuning": {
        "method": "grid", "cv": 5, "timeoutSeconds": 1,
        "searchSpace": {"C": [0.01, 0.1, 1, 10, 100, 1000], "gamma": [0.0001, 0.001, 0.01, 0.1, 1]}}})
    assert result["tuning"]["stopped_by_time_budget"] is True and 1 <= result["tuning"]["n_trials"] < 30

    (tmp_path / "b").mkdir()
    plain = run_in_process(tmp_path / "b", "wine", {"model_type": "logistic"})
    assert plain["cv"] is None
    (tmp_path / "c").mkdir()
    crossed = run_in_process(tmp_path / "c", "wine", {"model_type": "logistic"}, crossValidate=True)
    assert len(crossed["cv"]["folds"]) == 5 and 0.9 < crossed["cv"]["mean"] <= 1.0 and crossed["cv"]["std"] >= 0
