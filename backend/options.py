"""A training's options: one frozen dataclass, built by one schema, checked in one place.

``config.json``'s per-model ``training`` block is ``OptionsSchema`` plus the
schedule fields (``config.py``); a ``POST /train`` body is the same schema
loaded partially, plus the request's own fields (``schemas.TrainRequest``), and
``merge`` lays it over the model's configured options. ``check`` is the one
place where the model type, its candidates and parameters, the metric and the
search space are checked against the task and the installed packages: at
start-up for the config (a bad option stops the start naming the key) and
before a job starts for a request (a 422 naming the field).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from . import catalogue, evaluation
from .errors import CatalogueError, Invalid
from .preprocessing import ENCODING, MISSING, OUTLIERS, SCALING, SELECTION, Preprocessing
from .tuning import CV_STRATEGIES, METHODS, Tuning

SPLIT_STRATEGIES = ("random", "time")


@dataclass(frozen=True)
class DataQuality:
    """``training.dataQuality``: how much bad data a training tolerates."""

    max_invalid_fraction: float = 0.0


@dataclass(frozen=True)
class TrainingOptions:
    """Everything one training runs with; plain values, so it pickles into the training process."""

    model_type: str = "random_forest"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[str, ...] | None = None
    tuning: Tuning = field(default_factory=Tuning)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    data_quality: DataQuality = field(default_factory=DataQuality)
    split_strategy: str = "time"
    cv_strategy: str | None = None
    training_window: str | int = "auto"
    test_size: float = 0.2
    metric: str | None = None
    min_improvement: float = 0.0
    random_state: int = 42
    n_jobs: int = 1
    timeout_seconds: float = 3600.0
    plots: bool = True
    cross_validate: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values (for job and version records)."""
        out = asdict(self)
        out["candidates"] = list(self.candidates) if self.candidates else None
        return out


@dataclass(frozen=True)
class TrainingRequest:
    """One submitted training: where its rows come from and the options it runs with."""

    options: TrainingOptions
    force: bool = False
    csv_path: str | None = None  # a file in the data folder instead of the sample store
    overrides: tuple[str, ...] = ()  # the option names the request changed

    def to_dict(self) -> dict[str, Any]:
        return {"force": self.force, "csv_path": self.csv_path, "overrides": list(self.overrides),
                "training": self.options.to_dict()}


class Strict(Schema):
    """Unknown keys are an error, never silently dropped."""

    class Meta:
        unknown = RAISE


def _defaults(schema: type[Schema]):
    """An absent section means every option at its default (marshmallow would otherwise give {})."""
    return lambda: schema().load({})


class TuningSchema(Strict):
    """``training.tuning``."""

    method = fields.String(load_default="none", validate=validate.OneOf(METHODS))
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


class PreprocessingSchema(Strict):
    """``training.preprocessing``."""

    missing_values = fields.String(data_key="missingValues", load_default="median", validate=validate.OneOf(MISSING))
    outliers = fields.String(load_default="none", validate=validate.OneOf(OUTLIERS))
    scaling = fields.String(load_default="standard", validate=validate.OneOf(SCALING))
    encoding = fields.String(load_default="onehot", validate=validate.OneOf(ENCODING))
    feature_selection = fields.String(data_key="featureSelection", load_default="none",
                                      validate=validate.OneOf(SELECTION))
    k = fields.Integer(load_default=10, strict=True, validate=validate.Range(min=1))


class DataQualitySchema(Strict):
    """``training.dataQuality``."""

    max_invalid_fraction = fields.Float(data_key="maxInvalidFraction", load_default=0.0,
                                        validate=validate.Range(min=0.0, max=1.0))


class TrainingWindow(fields.Field):
    """``"auto"``, ``"all"`` or a number of newest rows (at least 50)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str | int:
        if value in ("auto", "all") or (isinstance(value, int) and not isinstance(value, bool) and value >= 50):
            return value
        raise ValidationError('must be "auto", "all" or a number of newest rows (at least 50)')


class OptionsSchema(Strict):
    """The training options, by their config.json names."""

    model_type = fields.String(data_key="modelType", load_default="random_forest", validate=validate.Length(min=1, max=64))
    hyperparameters = fields.Dict(keys=fields.String(), load_default=dict)
    candidates = fields.List(fields.String(), load_default=None, allow_none=True, validate=validate.Length(min=1, max=12))
    tuning = fields.Nested(TuningSchema, load_default=_defaults(TuningSchema))
    preprocessing = fields.Nested(PreprocessingSchema, load_default=_defaults(PreprocessingSchema))
    data_quality = fields.Nested(DataQualitySchema, data_key="dataQuality", load_default=_defaults(DataQualitySchema))
    split_strategy = fields.String(data_key="splitStrategy", load_default="time",
                                   validate=validate.OneOf(SPLIT_STRATEGIES))
    cv_strategy = fields.String(data_key="cvStrategy", load_default=None, allow_none=True,
                                validate=validate.OneOf(CV_STRATEGIES))
    training_window = TrainingWindow(data_key="trainingWindow", load_default="auto")
    test_size = fields.Float(data_key="testSize", load_default=0.2, validate=validate.Range(min=0.05, max=0.5))
    metric = fields.String(load_default=None, allow_none=True)
    min_improvement = fields.Float(data_key="minImprovement", load_default=0.0, validate=validate.Range(min=0.0))
    random_state = fields.Integer(data_key="randomState", load_default=42, strict=True,
                                  validate=validate.Range(min=0, max=2**32 - 1))  # what numpy and scikit-learn accept
    n_jobs = fields.Integer(data_key="nJobs", load_default=1, strict=True, validate=validate.Range(min=1, max=64))
    timeout_seconds = fields.Float(data_key="timeoutSeconds", load_default=3600.0, validate=validate.Range(min=1))
    plots = fields.Boolean(load_default=True)
    cross_validate = fields.Boolean(data_key="crossValidate", load_default=False)


_NESTED = {"tuning": Tuning, "preprocessing": Preprocessing, "data_quality": DataQuality}
OPTION_NAMES = tuple(OptionsSchema().fields)


def config_key(option: str) -> str:
    """The config.json spelling of an option path (``model_type`` -> ``modelType``; nested parts stay)."""
    head, _, rest = option.partition(".")
    schema_field = OptionsSchema().fields.get(head)
    name = schema_field.data_key if schema_field is not None and schema_field.data_key else head
    return f"{name}.{rest}" if rest else name


def build(loaded: dict[str, Any]) -> TrainingOptions:
    """Freeze a full load of ``OptionsSchema`` (every default filled in)."""
    values = {name: loaded[name] for name in OPTION_NAMES if name in loaded}
    for name, kind in _NESTED.items():
        if name in values:
            values[name] = kind(**values[name])
    if values.get("candidates") is not None:
        values["candidates"] = tuple(values["candidates"])
    return TrainingOptions(**values)


def merge(base: TrainingOptions, given: dict[str, Any]) -> TrainingOptions:
    """Lay a partial load of ``OptionsSchema`` over ``base``; nested blocks change only the keys they give."""
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if name not in OPTION_NAMES or value is None:
            continue
        if name in _NESTED:
            value = replace(getattr(base, name), **value)
        elif name == "candidates":
            value = tuple(value)
        changes[name] = value
    if "model_type" in changes and "hyperparameters" not in changes:
        changes["hyperparameters"] = {}  # the configured parameters belong to the configured algorithm
    return replace(base, **changes)


def check(options: TrainingOptions, task: str | None) -> None:
    """Raise a 422 naming the option that cannot work for ``task`` (either task when not configured)."""
    tasks = [task] if task else ["classification", "regression"]
    model_type = options.model_type
    usable = [t for t in tasks if model_type in catalogue.algorithms(t)]
    if not usable:
        allowed = catalogue.algorithms(tasks[0]) if task else catalogue.all_algorithms()
        raise Invalid(f"model_type '{model_type}' is not available; choose one of {', '.join(allowed)}",
                      code="invalid_model_type", details={"field": "model_type", "allowed": allowed})
    names = (options.candidates or catalogue.DEFAULT_CANDIDATES[usable[0]]) if model_type in catalogue.ENSEMBLES \
        else (model_type,)
    for name in names:
        if name in catalogue.ENSEMBLES or not any(name in catalogue.algorithms(t) for t in usable):
            raise Invalid(f"candidate '{name}' is not an algorithm", code="invalid_candidates",
                          details={"field": "candidates"})
    for t in usable:
        for name in names:
            estimator = catalogue.make(t, name, options.random_state)
            if name == model_type:
                catalogue.with_parameters(estimator, options.hyperparameters)
                space = options.tuning.search_space or {}
                unknown = sorted(set(space) - set(estimator.get_params(deep=False)))
                if unknown:
                    raise CatalogueError(f"searchSpace names unknown parameter(s): {', '.join(unknown)}",
                                         field="tuning.searchSpace")
    metric = options.metric
    allowed_metrics = sorted({m for t in tasks for m in evaluation.METRICS[t]})
    if metric and not any(metric in evaluation.METRICS[t] for t in tasks):
        raise Invalid(f"metric '{metric}' does not apply to {task or 'either task'}; choose one of "
                      f"{', '.join(allowed_metrics)}", code="invalid_option", details={"field": "metric"})
    if options.tuning.method == "grid" and any(not isinstance(v, list) for v in (options.tuning.search_space or {}).values()):
        raise Invalid("a grid search needs a list of values for every parameter", code="invalid_option",
                      details={"field": "tuning.searchSpace"})
