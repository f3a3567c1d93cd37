"""`make bench-drift`: how well Refit's retraining keeps up with drifting streams, against fixed policies and River.

Three streams from River's generators (bench/streams.py): SEA with abrupt
drifts, Agrawal with a gradual drift, and a stationary RandomRBF control. Each
is replayed against a real `python -m backend serve` (bench/replay.py: predict
each row, then post it with its label; the scheduler retrains by itself), and
the same rows go through in-process baselines (bench/baselines.py) under the
same prequential protocol: every row is predicted before any model learns it,
and accuracy is counted on rows --start (1,000) to the end. Output: one table,
bench/out/drift.md and drift.json. River is a bench-only dependency
(requirements-bench.txt).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench import baselines, streams
from bench.replay import MIN_SAMPLES, RefitRun, job_seconds, replay
from bench.run import machine

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WORK = OUT / "drift-work"
WINDOWS = (1000, 2000, 5000)
REFIT = "Refit (defaults, real server)"
ARF = "River ARF (online)"
ALL_ROWS = f"retrain every {baselines.RETRAIN_EVERY}, all rows"
CONTROL = "rbf"


def window_policy(rows: int) -> str:
    return f"retrain every {baselines.RETRAIN_EVERY}, newest {rows}"


def run_baselines(name: str, length: int, seed: int, start: int, n_jobs: int) -> dict[str, Any]:
    """Every in-process policy on one stream (runs in a worker process, so it can overlap the replays)."""
    stream = streams.make(name, length, seed)
    outcomes = [baselines.trained_once(stream, start, n_jobs),
                baselines.retrained(stream, None, start, n_jobs),
                *(baselines.retrained(stream, rows, start, n_jobs) for rows in WINDOWS),
                baselines.river_arf(stream, start, seed)]
    return {o.policy: {"accuracy": o.accuracy, "trainings": o.trainings, "cpu_seconds": round(o.cpu_seconds, 2),
                       "segments": segments(o.hits, start)} for o in outcomes}


def segments(hits: np.ndarray, start: int, size: int = 1000) -> list[dict[str, Any]]:
    """Accuracy per ``size`` scored rows, to see where a policy loses ground (after which drift)."""
    return [{"from": start + i, "to": start + min(i + size, len(hits)), "accuracy": round(float(hits[i:i + size].mean()), 4)}
            for i in range(0, len(hits), size)]


def refit_figures(run: RefitRun, single_fit_s: float) -> dict[str, Any]:
    """The replay's accuracy and what it cost: trainings, gate outcomes, training seconds, failures."""
    fit_s = sum(t.get("training_seconds") or 0.0 for t in run.trainings)
    job_s = sum(job_seconds(j) for j in run.jobs)
    promoted = sum(1 for t in run.trainings if t.get("promoted"))
    return {
        "accuracy": run.accuracy, "segments": segments(run.hits, run.start),
        "rows_replayed": run.rows_replayed, "stopped": run.stopped, "replay_seconds": round(run.replay_seconds, 1),
        "requests": run.requests, "failed_requests": len(run.failures), "failures": run.failures[:20],
        "trainings": len(run.trainings), "promoted": promoted, "rejected": len(run.trainings) - promoted,
        "triggers": [j["trigger"] for j in run.jobs], "job_statuses": [j["status"] for j in run.jobs],
        "answered_by": run.answered_by,
        "fit_seconds_total": round(fit_s, 2), "job_seconds_total": round(job_s, 2),
        "single_fit_seconds": round(single_fit_s, 2),
        "versions": [{k: t.get(k) for k in ("version", "promoted", "accuracy", "n_samples", "n_test_samples",
                                              "training_seconds")} for t in run.trainings],
    }


def budgets(name: str, policies: dict[str, dict[str, Any]]) -> list[tuple[str, float, float, bool]]:
    """(budget, Refit's accuracy, the bar, met) for one stream, in accuracy points."""
    refit = 100 * policies[REFIT]["accuracy"]
    arf = 100 * policies[ARF]["accuracy"]
    best_window = max(100 * policies[window_policy(rows)]["accuracy"] for rows in WINDOWS)
    rows = [(">= River ARF", refit, arf, refit >= arf),
            ("within 1 point of the best fixed window", refit, best_window - 1, refit >= best_window - 1)]
    if name == CONTROL:
        all_rows = 100 * policies[ALL_ROWS]["accuracy"]
        rows.append(("within 0.5 points of retraining on all rows", refit, all_rows - 0.5, refit >= all_rows - 0.5))
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The report: the accuracy table, Refit's costs, the budgets."""
    names = list(result["streams"])
    policies = list(result["streams"][names[0]]["policies"])
    lines = [f"Refit drift benchmark, {result['when']}", "",
             f"- machine: {result['machine']}", f"- versions: {result['versions']}",
             f"- {result['length']:,} rows per stream, accuracy on rows {result['start']:,}-{result['length']:,} "
             f"(prequential: each row predicted before any model learns it); seed {result['seed']}",
             f"- Refit: `python -m backend serve`, default training options but minSamplesForTraining {MIN_SAMPLES} "
             f"and plots off; scheduler every 0.72 s; store seeded with the first {MIN_SAMPLES} rows; "
             f"{result['batch']} rows per request; " + ("paced: rows wait while the server trains"
                                                        if result["paced"] else "unpaced: rows as fast as answered"),
             f"- whole run: {result['seconds']:.0f} s", "",
             "| policy | " + " | ".join(f"{n}: {result['streams'][n]['drift']}" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for policy in policies:
        cells = [f"{100 * result['streams'][n]['policies'][policy]['accuracy']:.1f}" for n in names]
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    lines += ["", "| Refit | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    refit = {n: result["streams"][n]["refit"] for n in names}
    rows = [
        ("trainings (promoted / rejected)", lambda r: f"{r['trainings']} ({r['promoted']} / {r['rejected']})"),
        ("versions that answered the scored rows", lambda r: ", ".join(f"{v}: {k}" for v, k in r["answered_by"].items())),
        ("fit seconds, all trainings (sum of training_seconds)", lambda r: f"{r['fit_seconds_total']:.1f}"),
        ("job seconds, all trainings (jobs API, started to finished)", lambda r: f"{r['job_seconds_total']:.1f}"),
        ("one fit of the same forest on all rows, s", lambda r: f"{r['single_fit_seconds']:.1f}"),
        ("fit seconds / one fit", lambda r: f"{r['fit_seconds_total'] / max(r['single_fit_seconds'], 1e-9):.1f}x"),
        ("failed requests (of all)", lambda r: f"{r['failed_requests']} of {r['requests']}"),
        ("replay", lambda r: f"{r['rows_replayed']:,} rows in {r['replay_seconds']:.0f} s, {r['stopped']}"),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(refit[n]) for n in names) + " |")
    lines += ["", "| stream | budget | Refit | bar | met |", "|---|---|---|---|---|"]
    for name in names:
        for budget, value, bar, met in result["streams"][name]["budgets"]:
            lines.append(f"| {name} | {budget} | {value:.1f} | {bar:.1f} | {'yes' if met else '**MISSED**'} |")
    failures = sum(refit[n]["failed_requests"] for n in names)
    lines.append(f"| all | zero failed requests | {failures} | 0 | {'yes' if failures == 0 else '**MISSED**'} |")
    return "\n".join(lines) + "\n"


def versions() -> str:
    import river
    import sklearn

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, river {river.__version__}, "
            f"refit commit {commit.stdout.strip() or 'unknown'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=12_000, help="rows per stream (the issue's protocol: 12000)")
    parser.add_argument("--start", type=int, default=1000, help="first scored row")
    parser.add_argument("--seed", type=int, default=streams.SEED)
    parser.add_argument("--streams", nargs="*", choices=list(streams.STREAMS), default=list(streams.STREAMS))
    parser.add_argument("--batch", type=int, default=10, help="rows per predict / samples request")
    parser.add_argument("--unpaced", action="store_true",
                        help="post rows as fast as the server answers, even while it trains (figures then depend on "
                             "the machine's speed)")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="time bound of one stream's replay")
    args = parser.parse_args()
    if args.length < args.start + MIN_SAMPLES:
        parser.error(f"--length must be at least --start + {MIN_SAMPLES}")
    OUT.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    result: dict[str, Any] = {"when": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "machine": machine(),
                              "versions": versions(), "length": args.length, "start": args.start, "seed": args.seed,
                              "batch": args.batch, "paced": not args.unpaced, "streams": {}}
    # The baselines run in one other process meanwhile: paced, Refit's figures do not depend on timing.
    with ProcessPoolExecutor(1) as pool:
        pending = {name: pool.submit(run_baselines, name, args.length, args.seed, args.start, 1)
                   for name in args.streams}
        for name in args.streams:
            stream = streams.make(name, args.length, args.seed)
            print(f"[{time.monotonic() - began:6.0f} s] {name}: replaying {args.length:,} rows against Refit", flush=True)
            run = replay(stream, WORK / name, args.start, max_seconds=args.max_minutes * 60, batch=args.batch,
                         paced=not args.unpaced)
            refit = refit_figures(run, baselines.single_fit_seconds(stream))
            print(f"[{time.monotonic() - began:6.0f} s] {name}: Refit {100 * refit['accuracy']:.1f}%, "
                  f"{refit['trainings']} trainings, {refit['failed_requests']} failed requests", flush=True)
            result["streams"][name] = {"drift": stream.drift, "refit": refit, "policies": {}}
        for name in args.streams:
            policies = {REFIT: {"accuracy": result["streams"][name]["refit"]["accuracy"]}, **pending[name].result()}
            result["streams"][name]["policies"] = policies
            result["streams"][name]["budgets"] = budgets(name, policies)
    result["seconds"] = time.monotonic() - began
    report = markdown(result)
    (OUT / "drift.json").write_text(json.dumps(result, indent=2, default=str))
    (OUT / "drift.md").write_text(report)
    print()
    print(report)
    missed = [b for s in result["streams"].values() for b in s["budgets"] if not b[3]]
    print(f"{len(missed)} budget(s) missed" if missed else "every budget met")


if __name__ == "__main__":
    main()
