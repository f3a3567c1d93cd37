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
SERVING_RUNTIMES = ("auto", "sklearn", "onnx")


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
class ServingConfig:
    """The global ``serving`` block: which runtime answers predictions (CONTRACT §11)."""

    runtime: str = "auto"  # "auto": ONNX Runtime when the converted model agrees, else scikit-learn
    onnx_threads: int = 1  # ONNX Runtime's intra-op threads per prediction (requests already run in parallel)


@dataclass(frozen=True)
class EmailConfig:
    """``notifications.email``: where notifications of ``levels`` are mailed (mailer.py)."""

    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 25
    levels: tuple[str, ...] = ("warning", "error")
    starttls: bool = False
    username_env: str | None = None  # environment variables holding the SMTP login, read once at start
    password_env: str | None = None
    timeout_seconds: float = 5.0  # per attempt; at most 6 so that 4 attempts fit in 30 s (CONTRACT §10)


@dataclass(frozen=True)
class NotificationsConfig:
    webhook_url: str | None = None
    webhook_timeout_seconds: float = 5.0
    webhook_attempts: int = 4
    keep: int = 1000
    email: EmailConfig | None = None


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


PROMOTION_MODES = ("auto", "manual", "shadow", "canary")


@dataclass(frozen=True)
class PromotionConfig:
    """A model's ``promotion`` block: how a candidate that passed the gate reaches traffic (CONTRACT §9)."""

    mode: str = "auto"
    min_labels: int = 200  # labels per arm (or shadow pair) before a rollout decision
    canary_fraction: float = 0.1
    max_hours: float = 24.0  # a shadow or canary still short of labels after this warns
    watch_labels: int = 200  # labels the post-promotion watch compares
    watch_max_drop: float = 0.05


@dataclass(frozen=True)
class PredictionLogConfig:
    """The global ``predictionLog`` block: how long and how much of the served predictions are kept for feedback."""

    keep_hours: float = 168.0
    max_megabytes: int = 1024


@dataclass(frozen=True)
class ModelConfig:
    name: str
    target: str
    training: TrainingConfig
    task: str | None = None
    features: tuple[str, ...] | None = None
    promotion: PromotionConfig = field(default_factory=PromotionConfig)


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig
    security: SecurityConfig
    storage: StorageConfig
    notifications: NotificationsConfig
    models: dict[str, ModelConfig]
    prediction_log: PredictionLogConfig = field(default_factory=PredictionLogConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
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


class _ServingSchema(_Strict):
    runtime = fields.String(load_default="auto", validate=validate.OneOf(SERVING_RUNTIMES))
    onnx_threads = fields.Integer(data_key="onnxThreads", load_default=1, strict=True, validate=validate.Range(1, 64))


_ADDRESS = validate.Regexp(r"^[^@\s]+@[^@\s]+$", error="not an e-mail address")


class _EmailSchema(_Strict):
    host = fields.String(required=True, validate=validate.Length(min=1))
    port = fields.Integer(load_default=25, strict=True, validate=validate.Range(1, 65535))
    sender = fields.String(data_key="from", required=True, validate=_ADDRESS)
    to = fields.List(fields.String(validate=_ADDRESS), required=True, validate=validate.Length(min=1))
    levels = fields.List(fields.String(validate=validate.OneOf(("success", "warning", "error"))),
                         load_default=["warning", "error"], validate=validate.Length(min=1))
    starttls = fields.Boolean(load_default=False)
    username_env = fields.String(data_key="usernameEnv", load_default=None, allow_none=True)
    password_env = fields.String(data_key="passwordEnv", load_default=None, allow_none=True)
    timeout_seconds = fields.Float(data_key="timeoutSeconds", load_default=5.0, validate=validate.Range(min=0.1, max=6))

    @post_load
    def _freeze(self, data: dict, **_: Any) -> EmailConfig:
        return EmailConfig(**{**data, "to": tuple(data["to"]), "levels": tuple(data["levels"])})


class _NotificationsSchema(_Strict):
    webhook_url = fields.Url(data_key="webhookUrl", load_default=None, allow_none=True, require_tld=False,
                             schemes={"http", "https"})
    webhook_timeout_seconds = fields.Float(data_key="webhookTimeoutSeconds", load_default=5.0,
                                           validate=validate.Range(min=0.1, max=120))
    webhook_attempts = fields.Integer(data_key="webhookAttempts", load_default=4, strict=True,
                                      validate=validate.Range(min=1, max=10))
    keep = fields.Integer(load_default=1000, strict=True, validate=validate.Range(min=10, max=1_000_000))
    email = fields.Nested(_EmailSchema, load_default=None, allow_none=True)


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


class _PromotionSchema(_Strict):
    """``models.<m>.promotion`` (CONTRACT §9)."""

    mode = fields.String(load_default="auto", validate=validate.OneOf(PROMOTION_MODES))
    min_labels = fields.Integer(data_key="minLabels", load_default=200, strict=True, validate=validate.Range(min=10))
    canary_fraction = fields.Float(data_key="canaryFraction", load_default=0.1,
                                   validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False))
    max_hours = fields.Float(data_key="maxHours", load_default=24.0, validate=validate.Range(min=0, min_inclusive=False))
    watch_labels = fields.Integer(data_key="watchLabels", load_default=200, strict=True, validate=validate.Range(min=10))
    watch_max_drop = fields.Float(data_key="watchMaxDrop", load_default=0.05, validate=validate.Range(min=0))


class _PredictionLogSchema(_Strict):
    keep_hours = fields.Float(data_key="keepHours", load_default=168.0,
                              validate=validate.Range(min=0, max=24 * 366, min_inclusive=False))
    max_megabytes = fields.Integer(data_key="maxMegabytes", load_default=1024, strict=True,
                                   validate=validate.Range(min=1))


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
    promotion = fields.Nested(_PromotionSchema, load_default=_defaults(_PromotionSchema))

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
    serving = fields.Nested(_ServingSchema, load_default=_defaults(_ServingSchema))
    notifications = fields.Nested(_NotificationsSchema, load_default=_defaults(_NotificationsSchema))
    prediction_log = fields.Nested(_PredictionLogSchema, data_key="predictionLog",
                                   load_default=_defaults(_PredictionLogSchema))
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
            promotion=PromotionConfig(**spec["promotion"]),
        )
    return Config(
        path=config_file.resolve(),
        server=ServerConfig(**data["server"]),
        security=SecurityConfig(**data["security"]),
        storage=storage,
        notifications=NotificationsConfig(**data["notifications"]),
        models=models,
        prediction_log=PredictionLogConfig(**data["prediction_log"]),
        serving=ServingConfig(**data["serving"]),
        compute=compute,
    )
