"""The preprocessing inside every artifact, so serving and training always agree.

Everything here is a scikit-learn transformer fitted on the training rows
only (the pipeline is fitted on the training split): imputation, outlier
capping, scaling, categorical encoding and optional feature selection.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.feature_selection import RFE, SelectFromModel, SelectKBest, mutual_info_classif, mutual_info_regression
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler, StandardScaler

MISSING = ("mean", "median", "most_frequent", "constant", "drop")
OUTLIERS = ("none", "iqr", "zscore")
SCALING = ("standard", "minmax", "robust", "none")
ENCODING = ("onehot", "ordinal")
SELECTION = ("none", "mutual_info", "tree_importance", "rfe", "correlation")


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing options of one training (config.json ``training.preprocessing``)."""

    missing_values: str = "median"
    outliers: str = "none"
    scaling: str = "standard"
    encoding: str = "onehot"
    feature_selection: str = "none"
    k: int = 10


class OutlierCapper(BaseEstimator, TransformerMixin):
    """Clip each column to bounds learned from the training rows (IQR fences or mean ± 3 sd)."""

    def __init__(self, method: str = "iqr", factor: float | None = None):
        self.method = method
        self.factor = factor

    def fit(self, X: Any, y: Any = None) -> OutlierCapper:
        values = np.asarray(X, dtype=float)
        if self.method == "iqr":
            q1, q3 = np.nanpercentile(values, [25, 75], axis=0)
            spread = (q3 - q1) * (self.factor or 1.5)
            self.lower_, self.upper_ = q1 - spread, q3 + spread
        else:
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            self.lower_, self.upper_ = mean - (self.factor or 3.0) * std, mean + (self.factor or 3.0) * std
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.clip(np.asarray(X, dtype=float), self.lower_, self.upper_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else
                          [f"x{i}" for i in range(self.n_features_in_)], dtype=object)


class CorrelationSelector(BaseEstimator, TransformerMixin):
    """Keep the ``k`` columns most correlated (in absolute value) with the target."""

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X: Any, y: Any) -> CorrelationSelector:
        values = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)
        target = np.asarray(y)
        if not np.issubdtype(target.dtype, np.number):
            target = np.unique(target, return_inverse=True)[1]
        target = target.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            centred = values - values.mean(axis=0)
            t = target - target.mean()
            corr = (centred * t[:, None]).sum(axis=0) / (np.sqrt((centred ** 2).sum(axis=0) * (t ** 2).sum()))
        corr = np.nan_to_num(np.abs(corr))
        self.support_ = np.zeros(values.shape[1], dtype=bool)
        self.support_[np.argsort(-corr)[: min(self.k, values.shape[1])]] = True
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X: Any) -> Any:
        return X[:, self.support_]

    def get_support(self) -> np.ndarray:
        return self.support_


class SelectK(BaseEstimator, TransformerMixin):
    """Keep ``k`` features by ``method``; ``k`` is capped at the number of columns seen in fit."""

    def __init__(self, method: str = "mutual_info", k: int = 10, task: str = "classification", random_state: int = 0):
        self.method = method
        self.k = k
        self.task = task
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> SelectK:
        k = max(1, min(self.k, X.shape[1]))
        classify = self.task == "classification"
        if self.method == "mutual_info":
            score = mutual_info_classif if classify else mutual_info_regression
            selector = SelectKBest(partial(score, random_state=self.random_state), k=k)
        elif self.method == "tree_importance":
            trees = (ExtraTreesClassifier if classify else ExtraTreesRegressor)(n_estimators=100, random_state=self.random_state)
            selector = SelectFromModel(trees, max_features=k, threshold=-np.inf)
        elif self.method == "rfe":
            base = LogisticRegression(max_iter=5000) if classify else Ridge()
            selector = RFE(base, n_features_to_select=k)
        else:
            selector = CorrelationSelector(k=k)
        self.selector_ = clone(selector).fit(X, y)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> Any:
        return self.selector_.transform(X)

    def get_support(self) -> np.ndarray:
        return self.selector_.get_support()


def _scaler(name: str) -> Any:
    return {"standard": StandardScaler(), "minmax": MinMaxScaler(), "robust": RobustScaler(), "none": "passthrough"}[name]


def build(options: Preprocessing, numeric: list[str], categorical: list[str], task: str, random_state: int) -> list[tuple[str, Any]]:
    """Return the pipeline steps that come before the estimator."""
    strategy = "median" if options.missing_values == "drop" else options.missing_values  # rows were dropped; serve-time gaps still need a fill
    transformers = []
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy=strategy, fill_value=0,
                                                                     keep_empty_features=True))]
    if options.outliers != "none":
        numeric_steps.append(("cap", OutlierCapper(options.outliers)))
    numeric_steps.append(("scale", _scaler(options.scaling)))
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), numeric))
    if categorical:
        fill = "most_frequent" if strategy in ("mean", "median") else strategy
        encoder = (OneHotEncoder(handle_unknown="ignore") if options.encoding == "onehot"
                   else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))
        transformers.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy=fill, fill_value="missing", keep_empty_features=True)),
            ("encode", encoder),
        ]), categorical))
    # All-numeric data needs no column routing. A ColumnTransformer costs about 2 ms on every
    # one-row prediction (pandas and validation overhead), more than the model itself.
    steps = list(numeric_steps) if not categorical else [("preprocess", ColumnTransformer(transformers))]
    if options.feature_selection != "none":
        steps.append(("select", SelectK(options.feature_selection, options.k, task, random_state)))
    return steps
