import json
import subprocess
import sys
import threading

import pytest

from backend.history import HistoryLog
from tests.helpers import ROOT


@pytest.mark.server
def test_events_from_threads_and_processes_are_whole_lines(tmp_path):
    path = tmp_path / "logs" / "history.log"
    log = HistoryLog(path)
    big = {"blob": "x" * 20000}  # larger than a pipe buffer: must still land as one line

    def write(n):
        for i in range(50):
            log.append("TRAINING_SKIPPED", f"m{n}", "skip", {"i": i, **big})

    script = (
        "import sys; from pathlib import Path; from backend.history import HistoryLog\n"
        "log = HistoryLog(Path(sys.argv[1]))\n"
        "for i in range(50): log.append('TRAINING_SKIPPED', 'proc', 'skip', {'i': i, 'blob': 'y' * 20000})\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT)
    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other.wait(60) == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 250
    events = [json.loads(line) for line in lines]
    assert {e["model"] for e in events} == {"m0", "m1", "m2", "m3", "proc"}
    assert all(e["timestamp"].endswith("+00:00") for e in events)


def test_tail_filters_by_model_and_type_newest_last(tmp_path):
    log = HistoryLog(tmp_path / "h.log")
    for i in range(3000):
        log.append("TRAINING_SKIPPED" if i % 2 else "TRAINING_STARTED", "a" if i % 3 else "b", "m", {"i": i})
    events = log.tail(model="a", limit=5, event_type="TRAINING_STARTED")
    assert [e["details"]["i"] for e in events] == [2986, 2990, 2992, 2996, 2998]
    assert len(log.tail(model="b")) == 1000
    assert log.tail(model="nobody") == []


def test_a_torn_line_is_skipped_and_the_next_event_starts_fresh(tmp_path):
    path = tmp_path / "h.log"
    log = HistoryLog(path)
    log.append("TRAINING_STARTED", "m", "one")
    with open(path, "ab") as handle:
        handle.write(b'{"timestamp": "2026-')  # a writer killed mid-line
    log.append("TRAINING_FAILED", "m", "two")
    assert [e["message"] for e in log.tail()] == ["one", "two"]
    assert json.loads(path.read_text().splitlines()[-1])["message"] == "two"
