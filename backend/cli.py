"""python -m backend <command>: serve, train, status, history, versions, activate, rollback, promote, reject,
experiments, feedback, simulate, demo-data.

Every command reads the same config.json ($REFIT_CONFIG or ./config.json, or
--config) and works on the same files as the server. Exit code 0 on success;
otherwise one line on stderr and a non-zero code.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from typing import Any, Sequence

from . import cli_remote, lifecycle
from .cli_remote import connect, remote
from .config import Config, load_config
from .errors import CommandError, RefitError
from .files import parse_line
from .status import of as model_status

log = logging.getLogger("backend")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _runtime(args: argparse.Namespace):
    from . import build_state

    state = build_state(_config(args))
    if args.model not in state.runtimes:
        raise CommandError(f"no model named '{args.model}' in the config (have: {', '.join(state.runtimes)})")
    return state.runtimes[args.model]


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API with the production server and run the scheduler until SIGTERM or Ctrl-C."""
    from . import build_state, observability, server

    config = _config(args)
    build_state(config)  # checks the workers would fail on (options, the API key), here once, as one line
    try:
        observability.configure_request_log(args.access_log)  # before gunicorn forks: every worker inherits it
    except OSError as exc:
        raise CommandError(f"--access-log {args.access_log}: {exc.strerror}") from None
    # APScheduler narrates every tick ("Running job", "executed successfully"); our own log tells what a tick did
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    log.info("Refit serving %s on http://%s:%s (models: %s)", config.path, host, port, ", ".join(config.models))
    server.run(config, host, port, workers=args.workers, threads=args.threads, streams=args.streams)
    return 0


def _wait(jobs: dict[str, Any]) -> None:
    """Wait for jobs to end, showing progress on a terminal."""
    show = sys.stderr.isatty()
    while True:
        line = "  ".join(f"{name} {job.progress:3d}% {job.stage:<11}" for name, job in jobs.items())
        if show:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        if all(job.status in ("completed", "skipped", "failed", "cancelled") for job in jobs.values()):
            break
        time.sleep(0.2)
    if show:
        sys.stderr.write("\n")


def _report(job: Any, prefix: str = "") -> bool:
    """Print a finished job's outcome; return whether it succeeded."""
    result = job.result or {}
    if job.status in ("failed", "cancelled"):
        error = job.error or {}
        print(f"{prefix}{job.status} ({error.get('reason')}): {error.get('message')}", file=sys.stderr)
        return False
    if job.status == "skipped":
        print(f"{prefix}skipped: {result.get('reason')}")
        return True
    print(f"{prefix}version: {result['version']}")
    print(f"{prefix}promoted: {'yes' if result['promoted'] else 'no'} ({result['reason']})")
    for name, value in (result.get("metrics") or {}).items():
        print(f"{prefix}{name}: {value:.4f}" if isinstance(value, float) else f"{prefix}{name}: {value}")
    return True


def cmd_train(args: argparse.Namespace) -> int:
    """Train in the foreground with a progress line; print the metrics and whether it was promoted."""
    from . import build_state

    state = build_state(_config(args))
    if args.all == bool(args.model):
        raise CommandError("name one model, or pass --all")
    names = list(state.runtimes) if args.all else [args.model]
    options: dict[str, Any] = {"force": args.force}
    if args.csv:
        options["csv_path"] = args.csv
    if args.model_type:
        options["model_type"] = args.model_type
    jobs = {}
    for name in names:
        rt = state.runtimes.get(name)
        if rt is None:
            raise CommandError(f"no model named '{name}' in the config (have: {', '.join(state.runtimes)})")
        rt.recover()
        rt.slot.start()
        try:
            jobs[name] = rt.submit_training("manual", options)
        except RefitError as exc:
            if not args.all:
                raise
            print(f"{name}: not started: {exc}", file=sys.stderr)
    _wait(jobs)
    if not args.all:
        job = jobs[names[0]]
        if not _report(job):
            error = job.error or {}
            raise CommandError(f"training {job.status} ({error.get('reason')}): {error.get('message')}")
        return 0
    ok = [_report(job, f"{name}: ") for name, job in jobs.items()]
    return 0 if all(ok) and len(jobs) == len(names) else 1


def cmd_activate(args: argparse.Namespace) -> int:
    """Make a version the one served (a running server follows within a second)."""
    rt = _runtime(args)
    answer = lifecycle.activate(rt, args.version, force=args.force)
    print(f"{rt.name}: {answer['previous_version']} -> {answer['active_version']}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Serve the version that was active before the current one (or --to V)."""
    rt = _runtime(args)
    answer = lifecycle.rollback(rt, args.to)
    print(f"{rt.name}: {answer['previous_version']} -> {answer['active_version']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print each model's training status as JSON (with --url: as the running server reports it)."""
    if args.url:
        client = connect(args, _config(args))
        names = [args.model] if args.model else [m["name"] for m in remote(client.models)["models"]]
        out = {name: remote(lambda name=name: client.status(name)) for name in names}
        print(json.dumps(out if len(out) > 1 else out[names[0]], indent=2))
        return 0
    from . import build_state

    state = build_state(_config(args))
    names = [args.model] if args.model else list(state.runtimes)
    out = {}
    for name in names:
        if name not in state.runtimes:
            raise CommandError(f"no model named '{name}' in the config")
        rt = state.runtimes[name]
        found = model_status(rt)
        out[name] = {**found.training(rt.history.tail(model=name, limit=3)), "active_version": found.registry_active}
    print(json.dumps(out if len(out) > 1 else out[names[0]], indent=2))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Print the model's newest events as JSON lines; with --follow keep printing new ones."""
    if args.url:
        return _remote_history(args)
    rt = _runtime(args)
    for event in rt.history.tail(model=args.model, limit=args.limit):
        print(json.dumps(event), flush=True)
    if not args.follow:
        return 0
    path = rt.history.path
    offset = path.stat().st_size if path.exists() else 0
    pending = b""
    try:
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size < offset:  # replaced or truncated: start over
                offset, pending = 0, b""
            if size > offset:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(size - offset)
                offset += len(chunk)
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for raw in lines:
                    event = parse_line(raw)
                    if event is not None and event.get("model") == args.model:
                        print(json.dumps(event), flush=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def _remote_history(args: argparse.Namespace) -> int:
    """``history --url``: the running server's events; with --follow, from its event stream."""
    client = connect(args, _config(args))
    if not args.follow:
        for event in remote(lambda: client.history(args.model, limit=args.limit))["events"]:
            print(json.dumps(event), flush=True)
        return 0
    from .client import ClientError

    try:
        for event in client.history(args.model, follow=True, limit=args.limit):
            print(json.dumps(event), flush=True)
    except ClientError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """Print the model's versions, newest first."""
    rt = _runtime(args)
    versions = rt.registry.versions()
    if args.json:
        print(json.dumps(versions, indent=2))
        return 0
    if not versions:
        print(f"model '{args.model}' has no versions yet")
        return 0
    # the gate's comparison: the candidate, the active version and the baseline scored on the same held-out rows
    print(f"{'version':<8} {'status':<9} {'created_at':<26} {'algorithm':<14} {'window':>6} {'metric':<9} "
          f"{'score':>7} {'active':>7} {'baseline':>8} {'holdout rows':<17} comparison")
    for record in versions:
        promotion = record.get("promotion") or {}
        holdout = promotion.get("holdout")
        rows = f"{holdout['start']}-{holdout['end']} ({holdout['n']})" if holdout else f"({record.get('n_test_samples', '')})"
        print(f"{record['version']:<8} {record['status']:<9} {record['created_at'][:26]:<26} "
              f"{record.get('algorithm', ''):<14} {record.get('training_window', ''):>6} {record.get('metric') or '':<9} "
              f"{_score(promotion.get('candidate_score')):>7} {_score(promotion.get('active_score')):>7} "
              f"{_score(promotion.get('baseline_score')):>8} {rows:<17} {promotion.get('comparison', '')}")
    return 0


def _score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def cmd_simulate(args: argparse.Namespace) -> int:
    """Post realistic new samples to a running server at a steady rate (through backend.client)."""
    from . import demo

    config = _config(args)
    if args.model not in config.models:
        raise CommandError(f"no model named '{args.model}' in the config")
    model = config.models[args.model]
    if list(model.features or []) != demo.FEATURES or model.target != demo.TARGET:
        raise CommandError("simulate generates PARIMA samples; this model's features or target differ")
    client = connect(args, config)
    total = max(1, int(round(args.rate * args.duration)))
    pool = demo.rows(total, seed=args.seed)
    sent = 0
    started = time.monotonic()
    random.seed(args.seed)
    while sent < total:
        due = min(total, int((time.monotonic() - started) * args.rate) + 1)
        if due > sent:
            body = remote(lambda: client.add_samples(args.model, pool[sent:due]))  # noqa: B023 (called at once)
            sent = due
            print(f"sent {sent}/{total}  total_samples={body['total_samples']}  "
                  f"since_last_training={body['samples_since_last_training']}", flush=True)
        time.sleep(min(0.5, max(0.01, 1 / args.rate)))
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Write the PARIMA demo CSV to the model's logFile (kept if it exists, unless --force)."""
    from . import demo

    config = _config(args)
    name = args.model or next(iter(config.models))
    if name not in config.models:
        raise CommandError(f"no model named '{name}' in the config")
    path = config.models[name].training.log_file
    if path.exists() and not args.force:
        print(f"{path} exists; kept it (use --force to overwrite)")
        return 0
    demo.write_csv(path, n=args.rows, seed=args.seed)
    print(f"wrote {args.rows} demo samples to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Refit: a self-retraining model server")
    parser.add_argument("--config", help="config file (default: $REFIT_CONFIG or ./config.json)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API (production WSGI server) with the scheduler on")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (gunicorn)")
    serve.add_argument("--threads", type=int, default=8, help="request threads per worker")
    serve.add_argument("--streams", type=int, default=32,
                       help="open event streams (/api/events) per worker, each on a thread beside --threads")
    serve.add_argument("--access-log", metavar="PATH",
                       help="append one JSON line per request to PATH ('-': the console); default: no request log")
    serve.set_defaults(func=cmd_serve)

    train = commands.add_parser("train", help="train a model (or --all) in the foreground")
    train.add_argument("model", nargs="?")
    train.add_argument("--all", action="store_true", help="train every configured model; one failure stops none")
    train.add_argument("--force", action="store_true", help="train even with few new samples")
    train.add_argument("--csv", help="train on this CSV (inside the data folder) instead of the sample store")
    train.add_argument("--model-type", help="algorithm for this run only")
    train.set_defaults(func=cmd_train)

    status = commands.add_parser("status", help="training status as JSON")
    status.add_argument("model", nargs="?")
    status.add_argument("--url", help="ask this running server (e.g. http://127.0.0.1:5001) instead of the files")
    status.set_defaults(func=cmd_status)

    history = commands.add_parser("history", help="the model's training history (JSON lines)")
    history.add_argument("model")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    history.add_argument("--url", help="ask this running server (its event stream with --follow) instead of the files")
    history.set_defaults(func=cmd_history)

    versions = commands.add_parser("versions", help="the model's versions, newest first")
    versions.add_argument("model")
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(func=cmd_versions)

    activate = commands.add_parser("activate", help="serve a given version")
    activate.add_argument("model")
    activate.add_argument("version")
    activate.add_argument("--force", action="store_true", help="allow a rejected or failed version")
    activate.set_defaults(func=cmd_activate)

    rollback = commands.add_parser("rollback", help="serve the previously active version")
    rollback.add_argument("model")
    rollback.add_argument("--to", help="a specific earlier version")
    rollback.set_defaults(func=cmd_rollback)

    simulate = commands.add_parser("simulate", help="post realistic samples to a running server")
    simulate.add_argument("model")
    simulate.add_argument("--rate", type=float, required=True, help="samples per second")
    simulate.add_argument("--duration", type=float, required=True, help="seconds")
    simulate.add_argument("--url", help="server address (default: the config's host and port)")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.set_defaults(func=cmd_simulate)

    cli_remote.add_parsers(commands)

    demo_data = commands.add_parser("demo-data", help="write the PARIMA demo CSV")
    demo_data.add_argument("model", nargs="?")
    demo_data.add_argument("--rows", type=int, default=600)
    demo_data.add_argument("--seed", type=int, default=0)
    demo_data.add_argument("--force", action="store_true")
    demo_data.set_defaults(func=cmd_demo_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    # only the server narrates; the other commands print their answer and nothing else
    level = logging.INFO if args.command == "serve" else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "rate", None) is not None and (args.rate <= 0 or args.duration <= 0):
        print("error: --rate and --duration must be positive", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except RefitError as exc:  # ConfigError and CommandError included
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
