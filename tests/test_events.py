"""The console's event stream: the shared journal (ids, compaction, many writers) and GET /api/events end to end."""
import json
import signal
import subprocess
import sys
import threading

import pytest
import requests

from backend import create_app
from backend.api.events import stream
from backend.client import Client
from backend.events import EventJournal, StreamGate
from tests.helpers import ROOT, wait_job, wait_until

KEY = "console-key"


def read_events(response, n):
    """Read ``n`` events (id, kind, data) from an open SSE response."""
    found, current = [], {}
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if "data" in current:
                found.append((int(current["id"]), current["event"], json.loads(current["data"])))
                if len(found) == n:
                    return found
            current = {}
        elif not raw.startswith(":"):
            name, _, value = raw.partition(": ")
            current[name] = value
    raise AssertionError(f"the stream ended after {len(found)} of {n} events")


# -- the journal -----------------------------------------------------------------------------------------

@pytest.mark.server
def test_every_entry_gets_its_own_increasing_id_across_threads_and_processes(tmp_path):
    journal = EventJournal(tmp_path / "events.jsonl")
    script = ("import sys; from pathlib import Path; from backend.events import EventJournal\n"
              "journal = EventJournal(Path(sys.argv[1]))\n"
              "for i in range(60): journal.append('history', 'proc', {'i': i})\n")
    other = subprocess.Popen([sys.executable, "-c", script, str(journal.path)], cwd=ROOT)
    threads = [threading.Thread(target=lambda n=n: [journal.append("job", f"t{n}", {"i": i}) for i in range(60)])
               for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert other.wait(60) == 0
    entries = journal.entries()
    assert [e["id"] for e in entries] == list(range(1, 241))
    for writer in ("proc", "t0", "t1", "t2"):  # each writer's entries keep its own order
        assert [e["data"]["i"] for e in entries if e["model"] == writer] == list(range(60))


def test_compaction_keeps_the_newest_entries_and_a_follower_misses_nothing(tmp_path):
    journal = EventJournal(tmp_path / "events.jsonl", keep=10)
    follower = journal.follow(0)
    seen = []
    for i in range(1, 56):
        journal.append("history", "m", {"i": i})
        if i % 3 == 0:
            seen += [e["id"] for e in follower.poll()]
    seen += [e["id"] for e in follower.poll()]
    assert seen == list(range(1, 56))  # across several compactions (each replaces the file)
    kept = journal.entries()
    assert 10 <= len(kept) < 20 and kept[-1]["id"] == 55 and journal.last_id() == 55
    assert [e["id"] for e in journal.entries(after=50)] == [51, 52, 53, 54, 55]
    late = journal.follow()  # from now on only
    journal.append("job", "m", {"i": 56})
    assert [e["id"] for e in late.poll()] == [56]


def test_a_torn_last_line_is_skipped_and_the_next_entry_starts_on_its_own_line(tmp_path):
    journal = EventJournal(tmp_path / "events.jsonl")
    journal.append("history", "m", {"i": 1})
    with open(journal.path, "ab") as handle:
        handle.write(b'{"id": 2, "event": "hist')  # a writer killed mid-line
    assert journal.append("history", "m", {"i": 2}) == 2
    assert [e["data"]["i"] for e in journal.entries()] == [1, 2]


def test_a_value_json_cannot_hold_is_dropped_never_raised(tmp_path):
    journal = EventJournal(tmp_path / "events.jsonl")
    assert journal.append("job", "m", {"score": float("nan")}) is None
    assert journal.entries() == []


# -- the stream as a function ----------------------------------------------------------------------------

def test_the_stream_sends_comment_lines_and_ends_when_its_gate_stops(tmp_path):
    journal = EventJournal(tmp_path / "events.jsonl")
    journal.append("history", "m", {"old": True})
    gate = StreamGate(4, journal, poll=0.01)
    assert gate.enter()
    lines = stream(gate, journal.last_id(), None, heartbeat=0.02)  # from now: the old entry is not sent
    assert next(lines).startswith("retry: 2000\n: connected")
    assert next(lines) == ": keep-alive\n\n"
    journal.append("notification", "m", {"id": 1, "level": "success"})
    sent = next(line for line in lines if line.startswith("id:"))
    assert sent == 'id: 2\nevent: notification\ndata: {"id": 1, "level": "success"}\n\n'
    gate.stop()
    assert set(lines) <= {": keep-alive\n\n"}  # at most a beat already due, then the end
    assert not gate.enter()  # a stopping process opens no new stream


def test_a_replay_reaches_back_past_what_the_gate_has_seen(tmp_path):
    journal = EventJournal(tmp_path / "events.jsonl")
    for i in range(5):
        journal.append("job", "m", {"i": i})
    gate = StreamGate(4, journal, poll=0.01)
    gate.enter()  # the tail starts from entry 5
    journal.append("job", "m", {"i": 5})
    gate.wait(5, timeout=30)
    assert [e["id"] for e in gate.after(2)] == [3, 4, 5, 6]  # from the file, then from the tail
    assert [e["id"] for e in gate.after(5)] == [6]
    assert gate.after(6) == []
    gate.stop()


def test_history_events_job_changes_and_notifications_are_streamed_with_ids(trained_client):
    app = trained_client.application
    job_id = trained_client.post("/api/parima/train", json={"force": True}).json["job_id"]
    wait_job(lambda: trained_client.get(f"/api/parima/jobs/{job_id}").json)
    response = trained_client.get("/api/events", headers={"Last-Event-ID": "0"}, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    next(chunks)  # the opening comment
    journal = app.extensions["refit"].journal
    events = [next(chunks) for _ in journal.entries()]
    response.close()
    kinds = [line.split(b"\n")[1] for line in events]
    assert {b"event: job", b"event: history", b"event: notification"} <= set(kinds)
    ids = [int(line.split(b"\n")[0][4:]) for line in events]
    assert ids == sorted(ids) == [e["id"] for e in journal.entries()]
    job_records = [json.loads(line.split(b"\n")[2][6:]) for line in events if line.split(b"\n")[1] == b"event: job"]
    final = trained_client.get(f"/api/parima/jobs/{job_id}").json
    assert job_records[-1] == final  # the data is the job record as GET /jobs/<id> gives it


def test_too_many_streams_is_a_503_envelope_and_an_unknown_model_a_404(config_path):
    app = create_app(config_path, streams=1)
    client = app.test_client()
    first = client.get("/api/events", buffered=False)
    refused = client.get("/api/events")
    assert refused.status_code == 503 and refused.json["error"]["code"] == "too_many_streams"
    first.close()  # gives its slot back
    second = client.get("/api/events", buffered=False)
    assert second.status_code == 200
    second.close()
    missing = client.get("/api/events?model=nope")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "model_not_found"


# -- a real server -------------------------------------------------------------------------------------

def two_models(config):
    """Add a second model, 'other', with no samples (its trainings fail fast: no data)."""
    doc = json.loads(config.read_text())
    other = json.loads(json.dumps(doc["models"]["parima"]))
    other["training"].update(logFile="./data/other.csv", autoTrain=False)
    doc["models"]["other"] = other
    config.write_text(json.dumps(doc))
    return config


@pytest.mark.server
def test_every_listener_gets_the_same_ids_in_order_and_resumes_without_loss_or_duplicates(trained_config, servers):
    server = servers(two_models(trained_config), workers=2, env={"REFIT_API_KEY": KEY})
    journal = EventJournal(trained_config.parent / "ml_models" / "events.jsonl")  # the truth every stream tells
    start = journal.last_id()
    url = f"{server.url}/api/events"
    listeners = [requests.get(url, stream=True, timeout=30) for _ in range(4)]  # on either worker
    parima = requests.get(url, params={"model": "parima"}, stream=True, timeout=30)
    other = requests.get(url, params={"model": "other"}, stream=True, timeout=30)
    client = Client(server.url, api_key=KEY)
    for _ in range(3):
        client.activate("parima", "v1")  # MODEL_ACTIVATED and its notification
    assert client.train("other", force=True, progress=False)["status"] == "failed"  # job changes, events, a notification
    expected = [(e["id"], e["event"], e["data"]) for e in journal.entries(after=start)]
    assert [i for i, _, _ in expected] == list(range(start + 1, start + 1 + len(expected)))
    assert {kind for _, kind, _ in expected} == {"history", "job", "notification"}
    for listener in listeners:
        assert read_events(listener, len(expected)) == expected
    # ?model= applies to all three kinds
    for response, name in ((parima, "parima"), (other, "other")):
        mine = [e for e in expected if e[2]["model"] == name]
        assert read_events(response, len(mine)) == mine and mine
    # resume: a listener that saw three events comes back with Last-Event-ID after more were written
    client.activate("parima", "v1")
    again = requests.get(url, headers={"Last-Event-ID": str(expected[2][0])}, stream=True, timeout=30)
    later = [(e["id"], e["event"], e["data"]) for e in journal.entries(after=expected[-1][0])]
    assert [kind for _, kind, _ in later] == ["history", "notification"]
    assert read_events(again, len(expected) - 3 + 2) == expected[3:] + later  # no loss, no duplicate
    for response in [*listeners, parima, other, again]:
        response.close()


@pytest.mark.server
def test_open_streams_end_at_sigterm_and_do_not_hold_up_the_shutdown(trained_config, servers):
    server = servers(trained_config, workers=2)
    pids = set()
    wait_until(lambda: pids.add(requests.get(f"{server.url}/health", timeout=10).json()["pid"]) or len(pids) == 2,
               timeout=60, interval=0.01, what="both workers to answer")
    streams = [requests.get(f"{server.url}/api/events", stream=True, timeout=30) for _ in range(6)]
    for response in streams:
        assert next(response.iter_lines()) == b"retry: 2000"
    server.process.send_signal(signal.SIGTERM)
    # gunicorn would wait up to its graceful timeout (30 s) for requests in flight; the streams end themselves
    assert server.process.wait(10) == 0
    for response in streams:
        assert [line for line in response.iter_lines() if line and not line.startswith(b":")] == []
    wait_until(lambda: server.process.poll() is not None, what="the server to exit")
