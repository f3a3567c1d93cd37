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

from apscheduler.triggers.cron import CronTrigger
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from . import executor, options
from .errors import ConfigError, Invalid
from .executor import ComputeConfig
from .options import OptionsSchema, TrainingOptions

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED_NAMES = frozenset({"models", "datasets", "notifications"})
TASKS = ("classification", "regression")


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
    """A model's ``training`` block: when to train, where its files are, and the options each training runs with."""

    log_file: Path
    training_log_file: Path
    options: TrainingOptions = field(default_factory=TrainingOptions)
    auto_train: bool = True
    auto_train_interval_hours: float = 24.0
    min_samples_for_training: int = 100
    keep_versions: int = 20
    max_model_age_hours: float | None = None  # train when the active version is older (trigger "age")
    schedule: str | None = None  # a 5-field cron expression in UTC (trigger "schedule")
    drift: DriftConfig = field(default_factory=lambda: DriftConfig())


@dataclass(frozen=True)
class DriftConfig:
    """``training.drift``: live-score drop and feature PSI thresholds, over the newest ``min_labels`` labels."""

    enabled: bool = True
    min_labels: int = 100
    metric_drop: float = 0.05
    feature_threshold: float = 0.2


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
    compute: ComputeConfig = field(default_factory=ComputeConfig)


_Strict = options.Strict
_defaults = options._defaults


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


class _ComputeSchema(_Strict):
    """``compute``: where every model's training fits run (CONTRACT §12)."""

    executor = fields.String(load_default="local", validate=validate.OneOf(executor.EXECUTORS))
    dask_scheduler = fields.String(data_key="daskScheduler", load_default=None, allow_none=True,
                                   validate=validate.Regexp(r"^tcp://(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+):\d{1,5}$",
                                                            error="must be a scheduler address such as "
                                                                  "tcp://host:8786"))

    @validates_schema
    def _needs_address(self, data: dict, **_: Any) -> None:
        if data.get("executor") == "dask" and not data.get("dask_scheduler"):
            raise ValidationError("is required with executor \"dask\" (the scheduler's address, e.g. tcp://host:8786)",
                                  "daskScheduler")


class _DriftSchema(_Strict):
    """``training.drift``: when the served model counts as drifting (CONTRACT §8)."""

    enabled = fields.Boolean(load_default=True)
    min_labels = fields.Integer(data_key="minLabels", load_default=100, strict=True, validate=validate.Range(min=10))
    metric_drop = fields.Float(data_key="metricDrop", load_default=0.05, validate=validate.Range(min=0, max=1))
    feature_threshold = fields.Float(data_key="featureThreshold", load_default=0.2,
                                     validate=validate.Range(min=0, min_inclusive=False))


class _TrainingSchema(OptionsSchema):
    """``models.<m>.training``: the training options plus when to train and where the files are."""

    auto_train = fields.Boolean(data_key="autoTrain", load_default=True)
    auto_train_interval_hours = fields.Float(
        data_key="autoTrainIntervalHours", load_default=24.0, validate=validate.Range(min=0.0001, max=24 * 365)
    )
    min_samples_for_training = fields.Integer(
        data_key="minSamplesForTraining", load_default=100, strict=True, validate=validate.Range(min=1)
    )
    log_file = fields.String(data_key="logFile", load_default=None)
    training_log_file = fields.String(data_key="trainingLogFile", load_default=None)
    keep_versions = fields.Integer(data_key="keepVersions", load_default=20, strict=True, validate=validate.Range(min=2))
    max_model_age_hours = fields.Float(data_key="maxModelAgeHours", load_default=None, allow_none=True,
                                       validate=validate.Range(min=0, min_inclusive=False))
    schedule = fields.String(load_default=None, allow_none=True)
    drift = fields.Nested(_DriftSchema, load_default=_defaults(_DriftSchema))

    @validates_schema
    def _cron(self, data: dict, **_: Any) -> None:
        if data.get("schedule") is not None:
            try:
                CronTrigger.from_crontab(data["schedule"], timezone="UTC")
            except ValueError as exc:
                raise ValidationError(f"not a 5-field cron expression in UTC ({exc})", "schedule") from None


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


_SCHEDULE_FIELDS = ("auto_train", "auto_train_interval_hours", "min_samples_for_training", "keep_versions",
                    "max_model_age_hours", "schedule")


class _ConfigSchema(_Strict):
    server = fields.Nested(_ServerSchema, load_default=_defaults(_ServerSchema))
    security = fields.Nested(_SecuritySchema, load_default=_defaults(_SecuritySchema))
    storage = fields.Nested(_StorageSchema, load_default=_defaults(_StorageSchema))
    notifications = fields.Nested(_NotificationsSchema, load_default=_defaults(_NotificationsSchema))
    compute = fields.Nested(_ComputeSchema, load_default=_defaults(_ComputeSchema))
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

    compute = ComputeConfig(**data["compute"])
    if compute.executor == "dask" and not executor.installed():
        raise ConfigError(f"{config_file}: compute.executor: \"dask\" needs the optional package {executor.PACKAGE}: "
                          "pip install -r requirements-optional.txt")
    base = config_file.resolve().parent

    def resolve(value: str) -> Path:
        return (base / value).resolve() if not os.path.isabs(value) else Path(value).resolve()

    storage = StorageConfig(data_dir=resolve(data["storage"]["data_dir"]), models_dir=resolve(data["storage"]["models_dir"]))
    models: dict[str, ModelConfig] = {}
    for name, spec in data["models"].items():
        training = dict(spec["training"])
        log_file = training.pop("log_file") or str(storage.data_dir / f"{name}.csv")
        history_file = training.pop("training_log_file") or str(storage.data_dir / "training_logs" / "training_history.log")
        schedule = {key: training.pop(key) for key in _SCHEDULE_FIELDS}
        schedule["drift"] = DriftConfig(**training.pop("drift"))
        chosen = options.build(training)
        try:
            options.check(chosen, spec["task"])  # what the schema cannot see: parameter names, installed packages
        except Invalid as exc:
            key = options.config_key(exc.details.get("field", ""))
            raise ConfigError(f"{config_file}: models.{name}.training.{key}: {exc.message}") from None
        models[name] = ModelConfig(
            name=name,
            task=spec["task"],
            target=spec["target"],
            features=tuple(spec["features"]) if spec["features"] is not None else None,
            training=TrainingConfig(log_file=resolve(log_file), training_log_file=resolve(history_file), options=chosen,
                                    **schedule),
        )
    return Config(
        path=config_file.resolve(),
        server=ServerConfig(**data["server"]),
        security=SecurityConfig(**data["security"]),
        storage=storage,
        notifications=NotificationsConfig(**data["notifications"]),
        models=models,
        compute=compute,
    )
