"""Save a Refit artifact as an MLflow model (run with the MLflow venv's python, never Refit's).

    python bench/mlflow_export.py ARTIFACT CSV OUT_DIR

The fitted pipeline is the very object Refit serves. The model is saved the
way MLflow's docs recommend: with a signature inferred from sample rows (so
the scoring server checks and casts inputs as it does for its users) and
MLflow's default serialisation (skops), trusting only the two types these
pipelines hold that skops does not trust by default: numpy's dtype (the
imputer) and scikit-learn's tree structure (the forest).
"""
import sys

import joblib
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature

artifact, csv, out = sys.argv[1:4]
pipeline = joblib.load(artifact)
sample = pd.read_csv(csv, nrows=100).drop(columns="label")
mlflow.sklearn.save_model(pipeline, out, signature=infer_signature(sample, pipeline.predict(sample)),
                          skops_trusted_types=["numpy.dtype", "sklearn.tree._tree.Tree"])
