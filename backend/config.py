"""config.json → frozen dataclasses.

The file is validated once, at start, by marshmallow schemas that raise on
unknown keys; every problem is reported with the dotted path of the key so a
person can find it. Relative paths resolve against the config file's folder.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from . import catalogue, preprocessing
from .tuning import CV_STRATEGIES, METHODS as TUNING_METHODS

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED_NAMES = frozenset({"models", "datasets", "notifications"})
TASKS = ("classification", "regression")
CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "f1_weighted", "roc_auc", "log_loss")
REGRESSION_METRICS = ("r2", "rmse", "mae", "mape")
SPLIT_STRATEGIES = ("random", "time")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key at fault."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 5001


@dataclass(frozen=True)
class SecurityConfig:
    api_key_env: str = "REFIT_API_KEY"
    protect_predict: bool = False
    max_request_bytes: int = 10 * 1024 * 1024
    max_batch_rows: int = 10_000


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path
    models_dir: Path


@dataclass(frozen=True)
class NotificationsConfig:
    webhook_url: str | None = None
    webhook_timeout_seconds: float = 5.0
    webhook_attempts: int = 4
    keep: int = 1000


@dataclass(frozen=True)
class TrainingConfig:
    log_file: Path
    training_log_file: Path
    auto_train: bool = True
    auto_train_interval_hours: float = 24.0
    min_samples_for_training: int = 100
    model_type: str = "random_forest"
    metric: str | None = None
    min_improvement: float = 0.0
    test_size: float = 0.2
    random_state: int = 42
    timeout_seconds: float = 3600.0
    n_jobs: int = 1
    keep_versions: int = 20
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[str, ...] | None = None
    tuning: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    split_strategy: str = "random"
    cv_strategy: str | None = None
    training_window: str | int = "all"
    plots: bool = True
    cross_validate: bool = False
    data_quality: dict[str, Any] = field(default_factory=lambda: {"max_invalid_fraction": 0.0})


@dataclass(frozen=True)
class ModelConfig:
    name: str
    target: str
    training: TrainingConfig
    task: str | None = None
    features: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig
    security: SecurityConfig
    storage: StorageConfig
    notifications: NotificationsConfig
    models: dict[str, ModelConfig]


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _defaults(schema: type[Schema]):
    """An absent section means every option at its default (marshmallow would otherwise give {})."""
    return lambda: schema().load({})


class _ServerSchema(_Strict):
    host = fields.String(load_default="127.0.0.1")
    port = fields.Integer(load_default=5001, strict=True, validate=validate.Range(0, 65535))


class _SecuritySchema(_Strict):
    api_key_env = fields.String(data_key="apiKeyEnv", load_default="REFIT_API_KEY", validate=validate.Length(min=1))
    protect_predict = fields.Boolean(data_key="protectPredict", load_default=False)
    max_request_bytes = fields.Integer(
        data_key="maxRequestBytes", load_default=10 * 1024 * 1024, strict=True, validate=validate.Range(min=1024)
    )
    max_batch_rows = fields.Integer(data_key="maxBatchRows", load_default=10_000, strict=True, validate=validate.Range(min=1))


class _StorageSchema(_Strict):
    data_dir = fields.String(data_key="dataDir", load_default="./data")
    models_dir = fields.String(data_key="modelsDir", load_default="./ml_models")


class _NotificationsSchema(_Strict):
    webhook_url = fields.Url(data_key="webhookUrl", load_default=None, allow_none=True, require_tld=False,
                             schemes={"http", "https"})
    webhook_timeout_seconds = fields.Float(data_key="webhookTimeoutSeconds", load_default=5.0,
                                           validate=validate.Range(min=0.1, max=120))
    webhook_attempts = fields.Integer(data_key="webhookAttempts", load_default=4, strict=True,
                                      validate=validate.Range(min=1, max=10))
    keep = fields.Integer(load_default=1000, strict=True, validate=validate.Range(min=10, max=1_000_000))


class TuningSchema(_Strict):
    """``training.tuning``; also a ``POST /train`` override."""

    method = fields.String(load_default="none", validate=validate.OneOf(TUNING_METHODS))
    n_iter = fields.Integer(load_default=20, strict=True, validate=validate.Range(min=1, max=10_000))
    cv = fields.Integer(load_default=5, strict=True, validate=validate.Range(min=2, max=20))
    timeout_seconds = fields.Float(data_key="timeoutSeconds", load_default=None, allow_none=True,
                                   validate=validate.Range(min=1))
    search_space = fields.Dict(data_key="searchSpace", keys=fields.String(), load_default=None, allow_none=True)

    @validates_schema
    def _space(self, data: dict, **_: Any) -> None:
        for name, spec in (data.get("search_space") or {}).items():
            ok_list = isinstance(spec, list) and len(spec) > 0
            ok_range = (isinstance(spec, dict) and set(spec) <= {"low", "high", "log"} and {"low", "high"} <= set(spec)
                        and all(isinstance(spec[k], (int, float)) and not isinstance(spec[k], bool) for k in ("low", "high"))
                        and spec["low"] < spec["high"])
            if not (ok_list or ok_range):
                raise ValidationError({name: ["give a non-empty list of values or {\"low\", \"high\", \"log\"}"]},
                                      "searchSpace")


class PreprocessingSchema(_Strict):
    """``training.preprocessing``; also a ``POST /train`` override."""

    missing_values = fields.String(data_key="missingValues", load_default="median",
                                   validate=validate.OneOf(preprocessing.MISSING))
    outliers = fields.String(load_default="none", validate=validate.OneOf(preprocessing.OUTLIERS))
    scaling = fields.String(load_default="standard", validate=validate.OneOf(preprocessing.SCALING))
    encoding = fields.String(load_default="onehot", validate=validate.OneOf(preprocessing.ENCODING))
    feature_selection = fields.String(data_key="featureSelection", load_default="none",
                                      validate=validate.OneOf(preprocessing.SELECTION))
    k = fields.Integer(load_default=10, strict=True, validate=validate.Range(min=1))


class DataQualitySchema(_Strict):
    """``training.dataQuality``: how much bad data a training tolerates."""

    max_invalid_fraction = fields.Float(data_key="maxInvalidFraction", load_default=0.0,
                                        validate=validate.Range(min=0.0, max=1.0))


class TrainingWindow(fields.Field):
    """``"all"`` or a positive number of newest rows."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str | int:
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 10):
            return value
        raise ValidationError('must be "all" or a number of newest rows (at least 10)')


class _TrainingSchema(_Strict):
    auto_train = fields.Boolean(data_key="autoTrain", load_default=True)
    auto_train_interval_hours = fields.Float(
        data_key="autoTrainIntervalHours", load_default=24.0, validate=validate.Range(min=0.0001, max=24 * 365)
    )
    min_samples_for_training = fields.Integer(
        data_key="minSamplesForTraining", load_default=100, strict=True, validate=validate.Range(min=1)
    )
    log_file = fields.String(data_key="logFile", load_default=None)
    model_type = fields.String(data_key="modelType", load_default="random_forest")
    training_log_file = fields.String(data_key="trainingLogFile", load_default=None)
    metric = fields.String(load_default=None, allow_none=True)
    min_improvement = fields.Float(data_key="minImprovement", load_default=0.0, validate=validate.Range(min=0.0))
    test_size = fields.Float(
        data_key="testSize", load_default=0.2, validate=validate.Range(min=0.05, max=0.5)
    )
    random_state = fields.Integer(data_key="randomState", load_default=42, strict=True)
    timeout_seconds = fields.Float(data_key="timeoutSeconds", load_default=3600.0, validate=validate.Range(min=1))
    n_jobs = fields.Integer(data_key="nJobs", load_default=1, strict=True, validate=validate.Range(min=1, max=64))
    keep_versions = fields.Integer(data_key="keepVersions", load_default=20, strict=True, validate=validate.Range(min=2))
    hyperparameters = fields.Dict(keys=fields.String(), load_default=dict)
    candidates = fields.List(fields.String(), load_default=None, allow_none=True, validate=validate.Length(min=1, max=12))
    tuning = fields.Nested(TuningSchema, load_default=_defaults(TuningSchema))
    preprocessing = fields.Nested(PreprocessingSchema, load_default=_defaults(PreprocessingSchema))
    split_strategy = fields.String(data_key="splitStrategy", load_default="random", validate=validate.OneOf(SPLIT_STRATEGIES))
    cv_strategy = fields.String(data_key="cvStrategy", load_default=None, allow_none=True,
                                validate=validate.OneOf(CV_STRATEGIES))
    training_window = TrainingWindow(data_key="trainingWindow", load_default="all")
    plots = fields.Boolean(load_default=True)
    cross_validate = fields.Boolean(data_key="crossValidate", load_default=False)
    data_quality = fields.Nested(DataQualitySchema, data_key="dataQuality", load_default=_defaults(DataQualitySchema))


class _ModelSchema(_Strict):
    task = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(TASKS))
    target = fields.String(required=True, validate=validate.Length(min=1))
    features = fields.List(fields.String(validate=validate.Length(min=1)), load_default=None, allow_none=True)
    training = fields.Nested(_TrainingSchema, load_default=_defaults(_TrainingSchema))

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        features = data.get("features")
        if features is not None:
            if not features:
                raise ValidationError("must list at least one feature", "features")
            if len(set(features)) != len(features):
                raise ValidationError("lists a feature twice", "features")
            if data["target"] in features:
                raise ValidationError("must not contain the target column", "features")
        training = data.get("training") or {}
        task = data.get("task")
        metric = training.get("metric")
        allowed_metrics = {
            "classification": CLASSIFICATION_METRICS,
            "regression": REGRESSION_METRICS,
            None: CLASSIFICATION_METRICS + REGRESSION_METRICS,
        }[task]
        if metric is not None and metric not in allowed_metrics:
            raise ValidationError({"metric": [f"must be one of {', '.join(allowed_metrics)}"]}, "training")
        allowed_types = catalogue.algorithms(task) if task else catalogue.all_algorithms()
        if training.get("model_type", "random_forest") not in allowed_types:
            raise ValidationError({"modelType": [f"must be one of {', '.join(allowed_types)}"]}, "training")
        unknown = [c for c in training.get("candidates") or [] if c not in allowed_types or c in catalogue.ENSEMBLES]
        if unknown:
            raise ValidationError({"candidates": [f"not algorithms: {', '.join(unknown)}"]}, "training")


class _ConfigSchema(_Strict):
    server = fields.Nested(_ServerSchema, load_default=_defaults(_ServerSchema))
    security = fields.Nested(_SecuritySchema, load_default=_defaults(_SecuritySchema))
    storage = fields.Nested(_StorageSchema, load_default=_defaults(_StorageSchema))
    notifications = fields.Nested(_NotificationsSchema, load_default=_defaults(_NotificationsSchema))
    models = fields.Dict(keys=fields.String(), values=fields.Nested(_ModelSchema), required=True)

    @post_load
    def _names(self, data: dict, **_: Any) -> dict:
        for name in data["models"]:
            if not MODEL_NAME.match(name) or name in RESERVED_NAMES:
                raise ValidationError(
                    {name: ["model names match ^[a-z][a-z0-9_-]{0,63}$ and are not models/datasets/notifications"]},
                    "models",
                )
        if not data["models"]:
            raise ValidationError(["configure at least one model"], "models")
        return data


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """Turn marshmallow's nested message dict into 'dotted.key: message' lines."""
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            # marshmallow reports Dict value errors under {"name": {"value": ...}}
            part = "" if key in ("value", "_schema") else str(key)
            out.extend(_flatten(value, f"{prefix}.{part}" if prefix and part else (part or prefix)))
        return out
    if isinstance(messages, list):
        return [line for item in messages for line in _flatten(item, prefix)]
    return [f"{prefix or 'config'}: {messages}"]


def config_path_from_env() -> Path:
    """Return the config file named by $REFIT_CONFIG, else ./config.json."""
    return Path(os.environ.get("REFIT_CONFIG") or "config.json")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, validate and freeze the config file at ``path``."""
    config_file = Path(path) if path is not None else config_path_from_env()
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {config_file}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid JSON: {exc}") from None
    return parse_config(raw, config_file)


def parse_config(raw: Any, config_file: Path) -> Config:
    """Validate a decoded config document; paths resolve against ``config_file``'s folder."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_file}: the top level must be a JSON object")
    try:
        data = _ConfigSchema().load(raw)
    except ValidationError as exc:
        raise ConfigError(f"{config_file}: " + "; ".join(_flatten(exc.messages))) from None

    base = config_file.resolve().parent

    def resolve(value: str) -> Path:
        return (base / value).resolve() if not os.path.isabs(value) else Path(value).resolve()

    storage = StorageConfig(data_dir=resolve(data["storage"]["data_dir"]), models_dir=resolve(data["storage"]["models_dir"]))
    models: dict[str, ModelConfig] = {}
    for name, spec in data["models"].items():
        training = dict(spec["training"])
        log_file = training.pop("log_file") or str(storage.data_dir / f"{name}.csv")
        history_file = training.pop("training_log_file") or str(storage.data_dir / "training_logs" / "training_history.log")
        models[name] = ModelConfig(
            name=name,
            task=spec["task"],
            target=spec["target"],
            features=tuple(spec["features"]) if spec["features"] is not None else None,
            training=TrainingConfig(log_file=resolve(log_file), training_log_file=resolve(history_file), **training),
        )
    return Config(
        path=config_file.resolve(),
        server=ServerConfig(**data["server"]),
        security=SecurityConfig(**data["security"]),
        storage=storage,
        notifications=NotificationsConfig(**data["notifications"]),
        models=models,
    )
