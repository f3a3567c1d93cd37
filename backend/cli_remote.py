"""The CLI's link to a running server (``--url``, default the config's address), through ``backend.client``.

The rollout commands (promote, reject, experiments, feedback; CONTRACT §9)
always act on the running server, unlike ``activate`` and ``rollback``, which
change the files directly: its processes hold the experiment counts and the
prediction log's open segments.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

from .config import Config, load_config
from .errors import CommandError


def connect(args: argparse.Namespace, config: Config) -> Any:
    """A client of the running server: ``--url``, else the config's address; the API key from the config's variable."""
    from .client import Client

    url = args.url or f"http://{config.server.host}:{config.server.port}"
    return Client(url, api_key=os.environ.get(config.security.api_key_env) or None)


def remote(call: Callable[[], Any]) -> Any:
    """Run a client call; its errors become the one-line error of a command."""
    from .client import ClientError

    try:
        return call()
    except ClientError as exc:
        raise CommandError(str(exc)) from None


def _model_client(args: argparse.Namespace) -> Any:
    config = load_config(args.config)
    if args.model not in config.models:
        raise CommandError(f"no model named '{args.model}' in the config (have: {', '.join(config.models)})")
    return connect(args, config)


def cmd_promote(args: argparse.Namespace) -> int:
    """Serve a staged version."""
    client = _model_client(args)
    print(json.dumps(remote(lambda: client.promote(args.model, args.version))))
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    """Drop a staged version."""
    client = _model_client(args)
    print(json.dumps(remote(lambda: client.reject(args.model, args.version))))
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    """List experiments, or start or stop one."""
    client = _model_client(args)
    if args.start:
        started = remote(lambda: client.start_experiment(args.model, args.start, args.versions, args.split))
        print(json.dumps(started, indent=2))
    elif args.stop:
        print(json.dumps(remote(lambda: client.stop_experiment(args.model, args.stop, args.promote)), indent=2))
    else:
        for experiment in remote(lambda: client.experiments(args.model))["experiments"]:
            arms = "  ".join(f"{v}: {a['requests']} req, {a['labels']} labels, score {a['score']}"
                             for v, a in experiment["arms"].items())
            print(f"{experiment['id']}  {experiment['status']:<9} {experiment['name']}  winner={experiment['winner']}  "
                  f"p={experiment['p_value']}  {arms}")
    return 0


def read_feedback(path: Path) -> list[dict[str, Any]]:
    """Feedback items from a JSON file (a list, or {"feedback": [...]}) or a CSV with prediction_id and label columns."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"{path} is not valid JSON: {exc}") from None
        items = data.get("feedback") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise CommandError(f"{path}: expected a list of {{prediction_id, label}} or {{\"feedback\": [...]}}")
        return items
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"prediction_id", "label"} <= set(reader.fieldnames):
        raise CommandError(f"{path}: a CSV needs the columns prediction_id and label")
    return [{"prediction_id": row["prediction_id"], "label": row["label"]} for row in reader]


def cmd_feedback(args: argparse.Namespace) -> int:
    """Send labels for logged predictions (one request: all or nothing)."""
    items = read_feedback(Path(args.file))
    client = _model_client(args)
    print(json.dumps(remote(lambda: client.feedback(args.model, items))))
    return 0


def add_parsers(commands: Any) -> None:
    """Add the rollout commands to the CLI's subcommands."""
    def remote(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("model")
        parser.add_argument("--url", help="server address (default: the config's host and port)")
        return parser

    for name, func, help_text in (("promote", cmd_promote, "serve a staged version (running server)"),
                                  ("reject", cmd_reject, "drop a staged version (running server)")):
        parser = remote(name, help_text)
        parser.add_argument("version")
        parser.set_defaults(func=func)
    experiments = remote("experiments", "list, start or stop experiments (running server)")
    experiments.add_argument("--start", metavar="NAME", help="start an experiment with this name")
    experiments.add_argument("--versions", nargs="+", help="its versions (with --start)")
    experiments.add_argument("--split", nargs="+", type=float, help="their traffic shares (default equal)")
    experiments.add_argument("--stop", metavar="ID", help="stop this running experiment")
    experiments.add_argument("--promote", help="with --stop: the version to serve afterwards")
    experiments.set_defaults(func=cmd_experiments)
    feedback = remote("feedback", "send labels for logged predictions (running server)")
    feedback.add_argument("--file", required=True, help="JSON or CSV of prediction_id and label")
    feedback.set_defaults(func=cmd_feedback)
