"""Pure feature-drift statistics: the population stability index of each feature against a reference.

There is no PSI in scipy or scikit-learn, so it is computed here with numpy:
``PSI = Σ (a − e) · ln(a / e)`` over bins, where ``e`` is the share of the
reference rows in a bin and ``a`` the share of the recent rows. Numeric
features are binned on the reference's deciles (so each reference bin holds
about a tenth of its rows); categorical features use one bin per category.
An empty bin gets a small ``EPSILON`` share, so a category or range that
appears or vanishes gives a large but finite index.

A ``Reference`` is computed once per version from its training rows and kept
in the monitoring state (a few numbers per feature), so a check never reads
the training rows again.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

BINS = 10
EPSILON = 1e-4
REFERENCE_CAP = 5000  # rows before a version's activation used when its training rows are unknown


def reference(frame: pd.DataFrame, numeric: Iterable[str], categorical: Iterable[str]) -> dict[str, Any]:
    """Summarise the reference rows: decile edges and shares per numeric feature, category shares per categorical."""
    out: dict[str, Any] = {}
    for name in numeric:
        if name not in frame.columns:
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        out[name] = {"kind": "numeric", "edges": edges.tolist(), "shares": _shares(np.searchsorted(edges, values, "right"),
                                                                                  len(edges) + 1)}
    for name in categorical:
        if name not in frame.columns:
            continue
        counts = frame[name].dropna().astype(str).value_counts(normalize=True)
        if len(counts):
            out[name] = {"kind": "categorical", "shares": {str(k): float(v) for k, v in counts.items()}}
    return out


def psi(summary: dict[str, Any], recent: list[Any]) -> float | None:
    """The PSI of ``recent`` values of one feature against its reference summary; None without a usable value."""
    if summary["kind"] == "numeric":
        values = np.array([v for v in recent if v is not None], dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        edges = np.asarray(summary["edges"], dtype=float)
        actual = np.asarray(_shares(np.searchsorted(edges, values, "right"), len(edges) + 1))
        expected = np.asarray(summary["shares"], dtype=float)
    else:
        texts = [str(v) for v in recent if v is not None]
        if not texts:
            return None
        categories = sorted(set(summary["shares"]) | set(texts))
        counts = pd.Series(texts).value_counts(normalize=True)
        actual = np.array([float(counts.get(c, 0.0)) for c in categories])
        expected = np.array([float(summary["shares"].get(c, 0.0)) for c in categories])
    actual, expected = np.maximum(actual, EPSILON), np.maximum(expected, EPSILON)
    value = float(np.sum((actual - expected) * np.log(actual / expected)))
    return value if math.isfinite(value) else None


def _shares(bins: np.ndarray, n_bins: int) -> list[float]:
    counts = np.bincount(bins, minlength=n_bins).astype(float)
    return (counts / counts.sum()).tolist()
