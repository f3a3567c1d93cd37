"""Shared small files: atomic writes from many threads, the one lock helper, JSON-lines reading, notifications
shared by processes, and the registry's compact layout."""
import json
import subprocess
import sys
import threading
from pathlib import Path

from backend.files import atomic_write, parse_line, read_json_lines
from backend.history import HistoryLog
from backend.notifications import Notifier
from backend.registry import INDEX_FIELDS, Registry
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


def _stage(registry: Registry, name: str) -> Path:
    staging = registry.folder / ".staging" / name
    staging.mkdir(parents=True)
    (staging / "model.joblib").write_bytes(b"not a real pipeline: the registry never opens it")
    return staging


def _record(n: int, tuning_bytes: int = 0, **extra) -> dict:
    trials = [{"params": {"max_depth": i}, "score": 0.5, "pad": "x" * 200} for i in range(tuning_bytes // 240)]
    return {"status": "ok", "task": "classification", "algorithm": "random_forest", "metric": "f1_macro",
            "metrics": {"f1_macro": 0.8 + n / 10_000}, "tuning": {"method": "random", "trials": trials},
            "trigger": "manual", "sha256": f"{n:064x}", "check_rows": [{"a": 1}], "check_predictions": [1],
            "promotion": {"promoted": True, "candidate_score": 0.8 + n / 10_000}, **extra}


def test_registry_json_keeps_a_compact_index_however_big_the_records(tmp_path):
    registry = Registry(tmp_path / "m", "m")
    for n in range(1, 201):
        registry.add_version(_stage(registry, f"s{n}"), _record(n, tuning_bytes=50_000), activate=n % 2 == 0,
                             trained_rows=n)
    # about 300 bytes a version whatever the record holds; the full records were 200 x 50 kB
    assert registry.path.stat().st_size < 200 * 400
    state = registry.state()
    assert state["active"] == "v200" and state["next_version"] == 201 and state["trained_rows"] == 200
    assert state["versions"]["v7"] == {"version": "v7", "status": "ok", "created_at": state["versions"]["v7"]["created_at"],
                                       "metric": "f1_macro", "score": 0.8 + 7 / 10_000, "algorithm": "random_forest",
                                       "trigger": "manual", "sha256": f"{7:064x}"}
    full = registry.version("v7")
    assert len(full["tuning"]["trials"]) == 50_000 // 240 and full["metrics"] == {"f1_macro": 0.8 + 7 / 10_000}
    assert full["status"] == "inactive" and full["model_path"] == str(registry.artifact_path("v7"))
    assert "check_rows" not in full and "score" not in full
    assert registry.metadata("v7")["check_rows"] == [{"a": 1}]
    listing = registry.versions()
    assert [r["version"] for r in listing[:3]] == ["v200", "v199", "v198"]
    assert listing[0]["status"] == "active" and listing[0]["tuning"] == registry.version("v200")["tuning"]


def test_registry_status_changes_annotations_and_pruning_show_in_records(tmp_path):
    registry = Registry(tmp_path / "m", "m")
    registry.add_version(_stage(registry, "a"), _record(1), activate=True, trained_rows=10)
    registry.add_version(_stage(registry, "b"), _record(2, status="failed", status_reason="load check"),
                         activate=False, trained_rows=20)
    registry.add_version(_stage(registry, "c"), _record(3, status="rejected"), activate=False, trained_rows=30)
    assert registry.version("v2")["status"] == "failed" and registry.version("v2")["status_reason"] == "load check"
    assert registry.activate("v2") == "v1"
    assert registry.version("v2")["status"] == "active" and "status_reason" not in registry.version("v2")
    assert registry.rollback_target() == "v1"
    registry.set_status("v2", "failed", "would not load")
    assert registry.state()["active"] == "v1"
    assert registry.version("v2")["status"] == "failed" and registry.version("v2")["status_reason"] == "would not load"
    assert registry.metadata("v2")["status_reason"] == "load check"  # metadata.json keeps the status at creation
    registry.annotate("v1", {"load_warning": "trained with scikit-learn 0.1"})
    assert registry.version("v1")["load_warning"] == "trained with scikit-learn 0.1"
    assert registry.metadata("v1")["load_warning"] == "trained with scikit-learn 0.1"
    assert "load_warning" not in registry.state()["versions"]["v1"]
    assert registry.prune(keep=1) == ["v2"]
    pruned = registry.version("v2")
    assert (pruned["status"], pruned["status_before_pruning"], pruned["model_path"]) == ("pruned", "failed", None)
    assert not registry.artifact_path("v2").exists()
    assert [r["status"] for r in registry.versions()] == ["rejected", "pruned", "active"]


def test_registry_reads_the_old_layout_and_rewrites_it_compact_at_the_next_write(tmp_path):
    folder = tmp_path / "m"
    records = {}
    for n, status in ((1, "ok"), (2, "failed"), (3, "ok")):
        version = f"v{n}"
        (folder / version).mkdir(parents=True)
        (folder / version / "model.joblib").write_bytes(b"artifact")
        full = {**_record(n, tuning_bytes=5_000), "version": version, "created_at": f"2026-11-0{n}T00:00:00+00:00"}
        (folder / version / "metadata.json").write_text(json.dumps(full, indent=2))
        records[version] = {k: v for k, v in full.items() if k not in ("check_rows", "check_predictions")}
        records[version]["status"] = status
    records["v2"]["status_reason"] = "would not load"
    records["v3"]["load_warning"] = "trained with scikit-learn 0.1"  # an annotation the old code kept only here
    old = {"model": "m", "next_version": 4, "active": "v3", "activation_stack": ["v1"], "trained_rows": 300,
           "last_training_time": "2026-11-03T00:00:00+00:00", "versions": records}
    (folder / "registry.json").write_text(json.dumps(old, indent=2))
    registry = Registry(folder, "m")
    before = registry.versions()
    assert registry.version("v3")["load_warning"] == "trained with scikit-learn 0.1"
    assert registry.version("v2")["status"] == "failed" and registry.rollback_target() == "v1"
    assert registry.state()["active"] == "v3"

    assert registry.activate("v3") == "v3"  # a write: the file is rewritten compact
    state = json.loads(registry.path.read_text())
    assert all(entry.keys() <= INDEX_FIELDS for entry in state["versions"].values())
    assert registry.path.stat().st_size < 2_000
    assert {k: state[k] for k in old if k != "versions"} == {k: old[k] for k in old if k != "versions"}
    assert registry.versions() == before
    assert registry.metadata("v3")["load_warning"] == "trained with scikit-learn 0.1"
    assert registry.metadata("v3")["check_rows"] == [{"a": 1}]


def test_registry_state_is_parsed_once_per_file_and_follows_every_replace(tmp_path):
    writer, reader = Registry(tmp_path / "m", "m"), Registry(tmp_path / "m", "m")  # as two processes would
    assert reader.state()["active"] is None
    for n in range(1, 4):
        writer.add_version(_stage(writer, f"s{n}"), _record(n), activate=True, trained_rows=n)
    assert reader.state() is reader.state()  # unchanged file: no second parse
    for n in range(60):  # quick same-size rewrites, where a freed inode number could come back
        version = f"v{n % 3 + 1}"
        writer.activate(version)
        assert reader.state()["active"] == version
    state = json.loads(reader.path.read_text())
    state["trained_rows"] = 123_456
    reader.path.write_text(json.dumps(state))  # written in place, against the rules: still noticed
    assert reader.state()["trained_rows"] == 123_456
