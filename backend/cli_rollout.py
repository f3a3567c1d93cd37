"""The rollout commands of the CLI: promote, reject, experiments, feedback (CONTRACT §9).

Unlike ``activate`` and ``rollback``, which change the files directly, these
act on the running server (``--url``, default the config's address): its
processes hold the experiment counts and the prediction log's open segments.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from .config import load_config
from .errors import CommandError


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One request to the running server; an error envelope becomes a CommandError with its message."""
    import requests

    config = load_config(args.config)
    if args.model not in config.models:
        raise CommandError(f"no model named '{args.model}' in the config (have: {', '.join(config.models)})")
    url = (args.url or f"http://{config.server.host}:{config.server.port}").rstrip("/")
    headers = {}
    key = os.environ.get(config.security.api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        response = requests.request(method, f"{url}/api/{args.model}{path}", json=body, headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise CommandError(f"could not reach the server at {url}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        raise CommandError(f"{url} answered {response.status_code} without JSON") from None
    if response.status_code >= 400:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        raise CommandError(f"{response.status_code} {error.get('code')}: {error.get('message')}")
    return answer


def cmd_promote(args: argparse.Namespace) -> int:
    """Serve a staged version."""
    print(json.dumps(_call(args, "POST", f"/versions/{args.version}/promote")))
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    """Drop a staged version."""
    print(json.dumps(_call(args, "POST", f"/versions/{args.version}/reject")))
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    """List experiments, or start or stop one."""
    if args.start:
        body: dict[str, Any] = {"name": args.start, "versions": args.versions}
        if args.split:
            body["split"] = args.split
        print(json.dumps(_call(args, "POST", "/experiments", body), indent=2))
    elif args.stop:
        print(json.dumps(_call(args, "POST", f"/experiments/{args.stop}/stop", {"promote": args.promote}), indent=2))
    else:
        for experiment in _call(args, "GET", "/experiments")["experiments"]:
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
    answer = _call(args, "POST", "/feedback", {"feedback": read_feedback(Path(args.file))})
    print(json.dumps(answer))
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
