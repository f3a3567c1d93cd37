"""What the scheduler's sample-count check costs as the CSV grows: it must stay flat.

Writes demo CSVs of 10k, 1M and 5M rows, builds a real model runtime on each
(the config the scheduler would use), runs the check once (the first, full
scan), then five times: append 1,000 rows, time ``sample_counts()`` (what a
tick calls). Part of ``make bench``; alone: .venv/bin/python -m bench.counting
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from backend import build_state, demo
from backend.config import load_config
from backend.samples import render_rows

SIZES = (10_000, 1_000_000, 5_000_000)
COLUMNS = demo.FEATURES + [demo.TARGET]
TICKS = 5


def write_rows(path: Path, n: int) -> None:
    block_rows = 50_000
    block = render_rows(COLUMNS, demo.rows(block_rows, seed=1))  # repeated: the count cares about bytes, not values
    with open(path, "wb") as handle:
        handle.write(render_rows(COLUMNS, [dict(zip(COLUMNS, COLUMNS))]))
        for _ in range(n // block_rows):
            handle.write(block)
        if n % block_rows:
            handle.write(render_rows(COLUMNS, demo.rows(n % block_rows, seed=2)))


def measure(folder: Path, sizes: tuple[int, ...] = SIZES) -> list[dict]:
    """One entry per size: file MB, first (full) check in s, and the per-tick check times in ms."""
    extra = render_rows(COLUMNS, demo.rows(1_000, seed=3))
    results = []
    for n in sizes:
        csv = folder / f"samples-{n}.csv"
        write_rows(csv, n)
        config = folder / "config.json"
        config.write_text(json.dumps({"storage": {"dataDir": str(folder), "modelsDir": str(folder / "models")},
                                      "models": {"demo": {"task": "classification", "target": demo.TARGET,
                                                          "features": demo.FEATURES,
                                                          "training": {"logFile": str(csv), "autoTrain": False}}}}))
        rt = build_state(load_config(config)).runtimes["demo"]
        started = time.perf_counter()
        assert rt.sample_counts()[0] == n
        first = time.perf_counter() - started
        ticks = []
        for i in range(TICKS):
            with open(csv, "ab") as handle:
                handle.write(extra)
            started = time.perf_counter()
            assert rt.sample_counts()[0] == n + 1_000 * (i + 1)
            ticks.append((time.perf_counter() - started) * 1000)
        results.append({"rows": n, "file_mb": csv.stat().st_size / 1e6, "first_s": first, "tick_ms": ticks})
        csv.unlink()
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        results = measure(Path(folder))
    print(f"{'rows':>10} {'file MB':>8} {'first check s':>14} {'check after +1k rows, ms: median (min-max) of 5':>50}")
    for r in results:
        ticks = r["tick_ms"]
        print(f"{r['rows']:>10} {r['file_mb']:>8.1f} {r['first_s']:>14.3f} "
              f"{statistics.median(ticks):>32.3f} ({min(ticks):.3f}-{max(ticks):.3f})")


if __name__ == "__main__":
    main()
