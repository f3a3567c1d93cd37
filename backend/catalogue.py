"""The algorithms Refit can train, their default candidates and their built-in search spaces.

Names are the ``modelType`` values of config.json. ``xgboost`` and
``lightgbm`` are offered only when those packages are installed
(``requirements-optional.txt``); asking for one that is not gives a clear
error naming the package.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    AdaBoostClassifier,
    AdaBoostRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    StackingRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge, RidgeCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from .errors import CatalogueError

Factory = Callable[[int, int], BaseEstimator]  # (random_state, n_jobs) -> estimator

_CLASSIFIERS: dict[str, Factory] = {
    "random_forest": lambda rs, nj: RandomForestClassifier(n_estimators=100, random_state=rs, n_jobs=nj),
    "extra_trees": lambda rs, nj: ExtraTreesClassifier(n_estimators=100, random_state=rs, n_jobs=nj),
    "gradient_boosting": lambda rs, nj: GradientBoostingClassifier(random_state=rs),
    "hist_gradient_boosting": lambda rs, nj: HistGradientBoostingClassifier(random_state=rs),
    "logistic": lambda rs, nj: LogisticRegression(max_iter=5000),
    "svm": lambda rs, nj: SVC(probability=True, random_state=rs),
    "knn": lambda rs, nj: KNeighborsClassifier(n_jobs=nj),
    "naive_bayes": lambda rs, nj: GaussianNB(),
    "decision_tree": lambda rs, nj: DecisionTreeClassifier(random_state=rs),
    "adaboost": lambda rs, nj: AdaBoostClassifier(random_state=rs),
    "mlp": lambda rs, nj: MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, early_stopping=True, random_state=rs),
}
_REGRESSORS: dict[str, Factory] = {
    "random_forest": lambda rs, nj: RandomForestRegressor(n_estimators=100, random_state=rs, n_jobs=nj),
    "extra_trees": lambda rs, nj: ExtraTreesRegressor(n_estimators=100, random_state=rs, n_jobs=nj),
    "gradient_boosting": lambda rs, nj: GradientBoostingRegressor(random_state=rs),
    "hist_gradient_boosting": lambda rs, nj: HistGradientBoostingRegressor(random_state=rs),
    "linear": lambda rs, nj: LinearRegression(),
    "ridge": lambda rs, nj: Ridge(),
    "lasso": lambda rs, nj: Lasso(max_iter=10000, random_state=rs),
    "elasticnet": lambda rs, nj: ElasticNet(max_iter=10000, random_state=rs),
    "svr": lambda rs, nj: SVR(),
    "knn": lambda rs, nj: KNeighborsRegressor(n_jobs=nj),
    "decision_tree": lambda rs, nj: DecisionTreeRegressor(random_state=rs),
    "adaboost": lambda rs, nj: AdaBoostRegressor(random_state=rs),
    "mlp": lambda rs, nj: MLPRegressor(hidden_layer_sizes=(64,), max_iter=2000, early_stopping=True, random_state=rs),
}
OPTIONAL = {"xgboost": "xgboost", "lightgbm": "lightgbm"}  # modelType -> package
ENSEMBLES = ("auto", "voting", "stacking")
DEFAULT_CANDIDATES = {
    "classification": ["logistic", "random_forest", "extra_trees", "hist_gradient_boosting"],
    "regression": ["ridge", "random_forest", "extra_trees", "hist_gradient_boosting"],
}

# Built-in search spaces: parameter -> list of values (grid and random), also used as Optuna's choices.
# A user space may give {"low", "high", "log"} ranges instead, for random and optuna searches.
SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "random_forest": {"n_estimators": [100, 200, 400], "max_depth": [None, 8, 16], "min_samples_leaf": [1, 2, 4],
                      "max_features": ["sqrt", 0.5, 1.0]},
    "extra_trees": {"n_estimators": [100, 200, 400], "max_depth": [None, 8, 16], "min_samples_leaf": [1, 2, 4]},
    "gradient_boosting": {"n_estimators": [100, 200], "learning_rate": [0.03, 0.1, 0.3], "max_depth": [2, 3, 4]},
    "hist_gradient_boosting": {"learning_rate": [0.03, 0.1, 0.3], "max_leaf_nodes": [15, 31, 63],
                               "l2_regularization": [0.0, 0.1, 1.0]},
    "logistic": {"C": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "svm": {"C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale", 0.01, 0.1]},
    "svr": {"C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale", 0.01, 0.1], "epsilon": [0.01, 0.1, 1.0]},
    "knn": {"n_neighbors": [3, 5, 9, 15, 25], "weights": ["uniform", "distance"]},
    "naive_bayes": {"var_smoothing": [1e-11, 1e-9, 1e-7, 1e-5]},
    "decision_tree": {"max_depth": [None, 4, 8, 16], "min_samples_leaf": [1, 2, 5, 10]},
    "adaboost": {"n_estimators": [50, 100, 200], "learning_rate": [0.1, 0.5, 1.0]},
    "mlp": {"hidden_layer_sizes": [[32], [64], [64, 32]], "alpha": [1e-5, 1e-4, 1e-3, 1e-2]},
    "linear": {"fit_intercept": [True, False]},
    "ridge": {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "lasso": {"alpha": [0.001, 0.01, 0.1, 1.0, 10.0]},
    "elasticnet": {"alpha": [0.001, 0.01, 0.1, 1.0], "l1_ratio": [0.2, 0.5, 0.8]},
    "xgboost": {"n_estimators": [100, 300], "learning_rate": [0.03, 0.1, 0.3], "max_depth": [3, 6]},
    "lightgbm": {"n_estimators": [100, 300], "learning_rate": [0.03, 0.1, 0.3], "num_leaves": [15, 31, 63]},
}


def algorithms(task: str) -> list[str]:
    """Every modelType name for ``task``, optional ones included."""
    own = _CLASSIFIERS if task == "classification" else _REGRESSORS
    return list(own) + list(OPTIONAL) + list(ENSEMBLES)


def all_algorithms() -> list[str]:
    """Every modelType name for either task."""
    return sorted(set(algorithms("classification")) | set(algorithms("regression")))


def make(task: str, name: str, random_state: int, n_jobs: int = 1) -> BaseEstimator:
    """Return the unfitted estimator ``name`` for ``task`` (not the ensembles)."""
    own = _CLASSIFIERS if task == "classification" else _REGRESSORS
    if name in own:
        return own[name](random_state, n_jobs)
    if name in OPTIONAL:
        return _optional(task, name, random_state, n_jobs)
    raise CatalogueError(f"model type '{name}' is not available for {task}; choose one of {', '.join(algorithms(task))}")


def _optional(task: str, name: str, random_state: int, n_jobs: int) -> BaseEstimator:
    package = OPTIONAL[name]
    if importlib.util.find_spec(package) is None:
        raise CatalogueError(f"model type '{name}' needs the '{package}' package: pip install -r requirements-optional.txt",
                             package=package)
    if name == "xgboost":
        if task == "classification":
            from .xgb import LabelledXGBClassifier

            return LabelledXGBClassifier(random_state=random_state, n_jobs=n_jobs)
        import xgboost

        return xgboost.XGBRegressor(random_state=random_state, n_jobs=n_jobs)
    import lightgbm

    cls = lightgbm.LGBMClassifier if task == "classification" else lightgbm.LGBMRegressor
    return cls(random_state=random_state, n_jobs=n_jobs, verbose=-1)


def ensemble(task: str, kind: str, members: list[tuple[str, BaseEstimator]]) -> BaseEstimator:
    """Combine fitted-later ``members`` into a voting or stacking ensemble."""
    if kind == "voting":
        if task == "classification":
            soft = all(hasattr(est, "predict_proba") for _, est in members)
            return VotingClassifier(members, voting="soft" if soft else "hard")
        return VotingRegressor(members)
    if task == "classification":
        return StackingClassifier(members, final_estimator=LogisticRegression(max_iter=5000))
    return StackingRegressor(members, final_estimator=RidgeCV())


def with_parameters(estimator: BaseEstimator, parameters: dict[str, Any]) -> BaseEstimator:
    """Set fixed parameters, refusing names the estimator does not have."""
    known = estimator.get_params(deep=False)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise CatalogueError(f"unknown hyperparameter(s) for {type(estimator).__name__}: {', '.join(unknown)}",
                             field="hyperparameters")
    return estimator.set_params(**{k: tuple(v) if isinstance(v, list) else v for k, v in parameters.items()})


def search_space(name: str, override: dict[str, Any] | None) -> dict[str, Any]:
    """The space to search for ``name``: the user's if given, else the built-in one."""
    return dict(override) if override else dict(SEARCH_SPACES.get(name, {}))
