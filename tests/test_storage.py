"""Shared small files: atomic writes from many threads, the one lock helper, JSON-lines reading, notifications
shared by processes, and the registry's compact layout."""
import json
import subprocess
import sys
import threading

from backend.files import atomic_write
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
