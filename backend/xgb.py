"""XGBoost's classifier for any class labels (it accepts only 0..k-1 itself).

Imported only when ``modelType`` is ``xgboost``, so the package stays optional;
the class lives at module level so a saved artifact unpickles by name.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xgboost
from sklearn.preprocessing import LabelEncoder


class LabelledXGBClassifier(xgboost.XGBClassifier):
    """An XGBClassifier that encodes the labels it is given and answers with them."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> LabelledXGBClassifier:
        encoder = LabelEncoder().fit(y)
        self.__dict__.pop("label_encoder_", None)  # XGBoost checks classes_ against 0..k-1 while it fits
        super().fit(X, encoder.transform(y), **kwargs)
        self.label_encoder_ = encoder
        return self

    @property
    def classes_(self) -> Any:
        encoder = self.__dict__.get("label_encoder_")
        return encoder.classes_ if encoder is not None else np.arange(self.n_classes_)

    def predict(self, X: Any, **kwargs: Any) -> Any:
        return self.label_encoder_.inverse_transform(super().predict(X, **kwargs))
