"""The drifting streams `make bench-drift` replays, from River's synthetic generators (a bench-only dependency).

Each stream is a plain, fully materialised table (numeric features ``x0..`` or
Agrawal's own names, an integer label), so every policy sees exactly the same
rows in the same order. Drift positions scale with the length, so a short run
keeps the same shape as the full one.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import pandas as pd

TARGET = "label"
SEED = 20240610  # our own seed, so the figures are not River's documentation examples


@dataclass(frozen=True)
class Stream:
    """One benchmark stream: its rows in arrival order and what kind of change it holds."""

    name: str
    drift: str  # a short description for the table
    frame: pd.DataFrame  # features then TARGET, in arrival order

    @property
    def features(self) -> list[str]:
        return [c for c in self.frame.columns if c != TARGET]


def _table(generator, n: int, names: list[str] | None = None) -> pd.DataFrame:
    rows = list(itertools.islice(iter(generator), n))
    if len(rows) < n:
        raise RuntimeError(f"the generator stopped after {len(rows)} of {n} rows")
    frame = pd.DataFrame([x for x, _ in rows])
    frame.columns = names or [f"x{c}" if isinstance(c, int) else str(c) for c in frame.columns]
    frame = frame.astype(float)  # Agrawal's small integers (elevel, car, zipcode) stay numeric, as the brief asks
    frame[TARGET] = [int(y) for _, y in rows]
    return frame


def sea_abrupt(n: int, seed: int = SEED) -> Stream:
    """SEA with 10% label noise; the concept switches abruptly at n/4, n/2 and 3n/4 (variants 0 → 1 → 2 → 3)."""
    from river.datasets import synth

    step = n // 4
    # width 1 would overflow River's sigmoid (exp(4 * position / width)); 1/60 of a segment is still a switch
    width = max(1, step // 60)
    chain = synth.SEA(variant=3, noise=0.1, seed=seed + 3)
    for variant in (2, 1, 0):  # built from the last concept backwards; each switch counts from the previous one
        chain = synth.ConceptDriftStream(synth.SEA(variant=variant, noise=0.1, seed=seed + variant), chain,
                                         position=step, width=width, seed=seed + 10 + variant)
    return Stream("sea", f"abrupt at {step}, {2 * step}, {3 * step} (width {width})", _table(chain, n))


def agrawal_gradual(n: int, seed: int = SEED) -> Stream:
    """Agrawal, function 0 drifting gradually to function 2, centred on n/2 over a width of n/6."""
    from river.datasets import synth

    position, width = n // 2, max(1, n // 6)
    stream = synth.ConceptDriftStream(synth.Agrawal(classification_function=0, seed=seed, perturbation=0.05),
                                      synth.Agrawal(classification_function=2, seed=seed + 1, perturbation=0.05),
                                      position=position, width=width, seed=seed + 2)
    return Stream("agrawal", f"gradual at {position} (width {width})", _table(stream, n))


def rbf_stationary(n: int, seed: int = SEED) -> Stream:
    """RandomRBF, 10 features, 2 classes, 50 centroids, no drift: the control."""
    from river.datasets import synth

    stream = synth.RandomRBF(seed_model=seed, seed_sample=seed + 1, n_classes=2, n_features=10, n_centroids=50)
    return Stream("rbf", "none (control)", _table(stream, n))


STREAMS = {"sea": sea_abrupt, "agrawal": agrawal_gradual, "rbf": rbf_stationary}


def make(name: str, n: int, seed: int = SEED) -> Stream:
    """The stream ``name`` with ``n`` rows."""
    return STREAMS[name](n, seed)
