"""The check every catalogue test makes of a trained candidate: ONNX Runtime answers as scikit-learn does, or says why not."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from backend import onnx_serving
from backend.files import sha256_file
from backend.serving import answers_of


def assert_served_equally(result: dict[str, Any], staging: Path, rows: pd.DataFrame) -> str:
    """Either ONNX Runtime serves the candidate, answering ``rows`` as scikit-learn does, or the record says why not.

    Returns the runtime. ``rows`` hold the raw features (every row of the data set, held-out ones included).
    """
    pipeline = joblib.load(staging / "model.joblib")
    if result["serving_runtime"] == "sklearn":
        assert result["serving_runtime_reason"], result
        assert not (staging / onnx_serving.ONNX_ARTIFACT).exists()
        return "sklearn"
    assert result["serving_runtime"] == "onnx" and result["serving_runtime_reason"] is None, result
    assert result["onnx"]["sha256"] == sha256_file(staging / onnx_serving.ONNX_ARTIFACT)
    assert result["conversion_seconds"] > 0 and result["onnx"]["rows_checked"] == result["n_test_samples"]
    features = result["numeric_features"] + result["categorical_features"]
    predictor = onnx_serving.load_predictor(staging, result, pipeline)  # sha256 and check rows, as serving does
    frame = rows[features]
    got = predictor.predict({name: frame[name].to_numpy() for name in features})
    want = answers_of(pipeline, frame, result["task"])
    if result["task"] == "classification":
        assert list(got.labels) == list(want.labels)
        np.testing.assert_allclose(got.probabilities, want.probabilities, rtol=0, atol=1e-4)
    else:
        scale = float(np.mean(np.abs(want.labels)))
        np.testing.assert_allclose(got.labels, want.labels, rtol=1e-4, atol=1e-4 * scale)
    return "onnx"
