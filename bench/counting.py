"""How long the scheduler's sample count takes as the CSV grows: it must stay flat.

Writes demo CSVs of 10k, 1M and 5M rows to a temporary folder, counts them once
(the first, full scan), appends 1,000 rows and times the next count (what a
tick costs). Prints one table; asserts nothing. Run: .venv/bin/python bench/counting.py
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend import demo  # noqa: E402
from backend.samples import SampleStore, render_rows  # noqa: E402

SIZES = (10_000, 1_000_000, 5_000_000)
COLUMNS = demo.FEATURES + [demo.TARGET]


def write_rows(path: Path, n: int) -> None:
    block = render_rows(COLUMNS, demo.rows(50_000, seed=1))  # repeated: the count cares about bytes, not values
    lines_per_block = 50_000
    with open(path, "wb") as handle:
        handle.write(render_rows(COLUMNS, [dict(zip(COLUMNS, COLUMNS))]))
        for _ in range(n // lines_per_block):
            handle.write(block)
        rest = n % lines_per_block
        if rest:
            handle.write(render_rows(COLUMNS, demo.rows(rest, seed=2)))


def main() -> None:
    extra = render_rows(COLUMNS, demo.rows(1_000, seed=3))
    print(f"{'rows':>10} {'file MB':>8} {'first count s':>14} {'tick after +1k rows ms (median of 5, min-max)':>48}")
    with tempfile.TemporaryDirectory() as folder:
        for n in SIZES:
            path = Path(folder) / f"s{n}.csv"
            write_rows(path, n)
            store = SampleStore(path, COLUMNS)
            started = time.perf_counter()
            assert store.count() == n
            first = time.perf_counter() - started
            ticks = []
            for i in range(5):
                with open(path, "ab") as handle:
                    handle.write(extra)
                started = time.perf_counter()
                assert store.count() == n + 1_000 * (i + 1)
                ticks.append((time.perf_counter() - started) * 1000)
            print(f"{n:>10} {path.stat().st_size / 1e6:>8.1f} {first:>14.3f} "
                  f"{statistics.median(ticks):>30.3f} ({min(ticks):.3f}-{max(ticks):.3f})")
            path.unlink()


if __name__ == "__main__":
    main()
