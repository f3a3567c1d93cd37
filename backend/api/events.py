"""``GET /api/events``: Server-Sent Events of every history event, job change and notification (CONTRACT §10).

The stream tells what the shared journal (``events.EventJournal``) holds, so
ids are the same for every listener on every worker; ``Last-Event-ID`` (the
header a browser's EventSource sends when it reconnects, or
``?last_event_id=``) replays what came after it; ``?model=`` keeps one model's
events. Between events the thread sleeps on the gate (``events.StreamGate``,
which tails the journal once for every stream of the process), so an open
stream costs no CPU and ends within a poll of SIGTERM.
"""
from __future__ import annotations

import time
from typing import Iterator

from flask import Blueprint, Response, request

from ..errors import Unavailable
from ..events import StreamGate, sse
from ..state import refit, runtime

bp = Blueprint("events", __name__)

HEARTBEAT_SECONDS = 10.0  # a comment line this often keeps proxies and browsers from closing an idle stream


@bp.get("/api/events")
def events():
    model = request.args.get("model") or None
    if model is not None:
        runtime(model)  # 404 for a model that is not configured
    after = _last_event_id()
    state = refit()
    gate = state.streams
    if gate is None or not gate.enter():
        raise Unavailable("Too many open event streams on this worker; close a tab or retry shortly",
                          code="too_many_streams", details={"limit": gate.limit if gate else 0})
    start = state.journal.last_id() if after is None else after
    response = Response(stream(gate, start, model), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(gate.leave)
    return response


def stream(gate: StreamGate, after: int, model: str | None, *, heartbeat: float = HEARTBEAT_SECONDS) -> Iterator[str]:
    """Yield the journal's entries after id ``after`` as SSE, a comment line every ``heartbeat`` s, until the gate stops."""
    yield "retry: 2000\n: connected\n\n"  # sent at once, so the client sees the stream is open
    last = after
    beat = time.monotonic()
    while not gate.stopping.is_set():
        for entry in gate.after(last):
            last = entry["id"]
            if model is None or entry.get("model") == model:
                yield entry.get("sse") or sse(entry)
        left = heartbeat - (time.monotonic() - beat)
        if left <= 0:
            beat = time.monotonic()
            yield ": keep-alive\n\n"
        else:
            gate.wait(last, left)


def _last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None  # not one of our ids: start from now, as a new listener does
    return max(0, value)
