"""Shared small files: atomic writes from many threads, the one lock helper, JSON-lines reading, notifications
shared by processes, and the registry's compact layout."""
import json
import subprocess
import sys
import threading

from backend.files import atomic_write, parse_line, read_json_lines
from backend.history import HistoryLog
from backend.notifications import Notifier
from tests.helpers import ROOT


def test_atomic_writes_from_many_threads_to_one_path_leave_one_whole_payload(tmp_path):
    path = tmp_path / "shared" / "record.json"
    payloads = [(f"{n:02d}" * 40_000).encode() for n in range(16)]  # big enough to overlap in time
    errors: list[BaseException] = []
    start = threading.Barrier(len(payloads))

    def write(data: bytes) -> None:
        start.wait()
        try:
            for _ in range(20):
                atomic_write(path, data)
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_bytes() in payloads
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temp file left behind


_NOTIFY = (
    "import sys; from pathlib import Path; from backend.notifications import Notifier\n"
    "notifier = Notifier(Path(sys.argv[1]), keep=10)\n"
    "for i in range(int(sys.argv[2])): notifier.notify('success', 'm', None, 'MODEL_PROMOTED', f'p{sys.argv[3]} {i}', {})\n"
)


def test_notifications_from_processes_are_never_lost_across_compactions(tmp_path):
    path = tmp_path / "notes" / "notifications.jsonl"
    processes, per_process = 4, 60  # 240 notifications with keep=10: a compaction every ~10 of them
    children = [subprocess.Popen([sys.executable, "-c", _NOTIFY, str(path), str(per_process), str(n)], cwd=ROOT)
                for n in range(processes)]
    assert all(child.wait(120) == 0 for child in children)
    ids = [n["id"] for n in Notifier(path, keep=10).list(limit=1000)]
    # every notify handed out one id: a line written to a replaced file would leave a gap or reuse an id
    assert ids[-1] == processes * per_process
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert len(ids) >= 10


def test_json_lines_reader_skips_torn_and_garbled_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    assert read_json_lines(path) == []
    path.write_bytes(b'{"a": 1}\n\nnot json\n[1, 2]\n{"a": 2}\n{"a": 3, "b": "tor')
    assert read_json_lines(path) == [{"a": 1}, {"a": 2}]
    assert parse_line(b'{"a": 3, "b": "tor') is None
    assert parse_line(b'{"a": 3}\r') == {"a": 3}


def test_notifier_and_history_append_after_a_torn_line_on_a_fresh_line(tmp_path):
    notes = tmp_path / "notifications.jsonl"
    notes.write_bytes(b'{"id": 1, "level": "success"}\n{"id": 2, "lev')
    note = Notifier(notes, keep=10).notify("error", "m", None, "TRAINING_FAILED", "failed", {})
    assert note["id"] == 2
    assert [n["id"] for n in read_json_lines(notes)] == [1, 2]
    log_path = tmp_path / "history.log"
    log_path.write_bytes(b'{"event_type": "TRAINING_STARTED", "model": "m"}\n{"event_ty')
    HistoryLog(log_path).append("TRAINING_SKIPPED", "m", "skip")
    assert [e["event_type"] for e in HistoryLog(log_path).tail()] == ["TRAINING_STARTED", "TRAINING_SKIPPED"]
