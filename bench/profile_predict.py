"""Where a prediction's time goes: cProfile over Refit's predict route, in process.

    .venv/bin/python -m bench.profile_predict [--model logistic] [--rows 1] [--requests 2000]

Uses the models and bodies `make bench` left in bench/out/work, drives the
real Flask app through its test client (the same view, hooks and JSON codec
as under gunicorn, without the HTTP server) and prints the functions with the
most cumulative time, then the share spent inside scikit-learn's predict.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from backend import create_app
from bench.run import WORK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="logistic")
    parser.add_argument("--rows", type=int, default=1, choices=(1, 1000))
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    client = create_app(WORK / "config.json").test_client()
    body = (WORK / "bodies" / f"refit-{args.rows}.json").read_bytes()
    url = f"/api/{args.model}/predict"

    def send() -> None:
        answer = client.post(url, data=body, content_type="application/json")
        assert answer.status_code == 200, answer.get_data(as_text=True)

    for _ in range(50):
        send()
    started = time.perf_counter()
    for _ in range(args.requests):
        send()
    plain = (time.perf_counter() - started) / args.requests * 1000
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.requests):
        send()
    profile.disable()
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(30)
    total = max(v[3] for v in stats.stats.values())  # the outermost call's cumulative time
    inside = sum(v[3] for (path, _, name), v in stats.stats.items()
                 if name in ("predict", "predict_proba") and path.endswith("sklearn/pipeline.py"))
    print(f"{plain:.3f} ms per request without the profiler; under it, scikit-learn's Pipeline predict is "
          f"{inside / total:.0%} of the request")


if __name__ == "__main__":
    main()
