"""PARIMA demo data: a plausible level-of-detail policy with noise, deterministic for a seed.

Each sample describes one object in a viewer's frame and the device drawing
it; ``decisionLOD`` is the level of detail chosen (0 = full detail, 3 = the
coarsest proxy). Detail goes up with how much of the view the object fills
and how visible and close it is, and down when the device is short of frame
rate or CPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .files import atomic_write
from .samples import render_rows

FEATURES = ["frustumCoverage", "occlusionRatio", "meanVisibleDistance", "deviceFPS", "deviceCPULoad"]
TARGET = "decisionLOD"
LEVELS = 4


def generate(n: int, seed: int = 0, noise: float = 0.05) -> pd.DataFrame:
    """Return ``n`` samples; a ``noise`` share of labels is moved one level up or down."""
    rng = np.random.default_rng(seed)
    coverage = rng.beta(2.0, 3.0, n)
    occlusion = rng.beta(1.5, 3.0, n)
    distance = rng.gamma(2.0, 12.0, n) + 0.5
    fps = np.clip(rng.normal(60, 20, n), 10, 144)
    cpu = rng.beta(2.5, 2.5, n)
    visibility = coverage * (1 - occlusion)
    closeness = 1 / (1 + distance / 15)
    headroom = np.clip((fps - 20) / 70, 0, 1) * (1 - 0.6 * cpu)
    score = 0.45 * visibility + 0.3 * closeness + 0.25 * headroom
    lod = LEVELS - 1 - np.digitize(score, [0.24, 0.31, 0.4])
    flip = rng.random(n) < noise
    lod = np.where(flip, np.clip(lod + rng.choice([-1, 1], n), 0, LEVELS - 1), lod)
    return pd.DataFrame({
        "frustumCoverage": coverage.round(4),
        "occlusionRatio": occlusion.round(4),
        "meanVisibleDistance": distance.round(3),
        "deviceFPS": fps.round(1),
        "deviceCPULoad": cpu.round(4),
        TARGET: lod.astype(int),
    })


def rows(n: int, seed: int = 0, noise: float = 0.05) -> list[dict[str, Any]]:
    """Return ``n`` samples as JSON-ready dicts, as a client would post them."""
    return generate(n, seed, noise).to_dict(orient="records")


def write_csv(path: Path, n: int = 600, seed: int = 0) -> Path:
    """Write a demo sample CSV atomically and return its path."""
    columns = FEATURES + [TARGET]
    header = render_rows(columns, [dict(zip(columns, columns))])
    atomic_write(path, header + render_rows(columns, rows(n, seed)))
    return path
