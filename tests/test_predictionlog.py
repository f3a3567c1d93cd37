"""The prediction log on its own: ids that name a line, forged and torn ids, labels, retention by age and size."""
from __future__ import annotations

import datetime as dt
import os

from backend.predictionlog import PredictionLog

FEATURES = ("a", "b")


class Clock:
    def __init__(self, start: dt.datetime):
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


def make(tmp_path, keep_hours=2.0, max_megabytes=1, start=dt.datetime(2026, 12, 1, 10, 30, tzinfo=dt.timezone.utc)):
    clock = Clock(start)
    return PredictionLog(tmp_path / "predictions", keep_hours, max_megabytes, clock=clock), clock


def test_an_id_finds_its_row_and_nothing_else(tmp_path):
    log, _ = make(tmp_path)
    first = log.append("v1", FEATURES, [[1.0, "x"]], [0], [{"0": 0.9, "1": 0.1}])
    batch = log.append("v2", FEATURES, [[2.0, None], [3.0, "y"]], [1, 0], None, experiment="e1")
    found = log.lookup(batch[1])
    assert (found.version, found.features, found.output, found.experiment) == ("v2", {"a": 3.0, "b": "y"}, 0, "e1")
    assert log.lookup(first[0]).probabilities == {"0": 0.9, "1": 0.1}
    segment, offset, _ = batch[0].split(".")
    forged = [f"{segment}.{int(offset) + 1}.0", f"{segment}.{offset}.2", f"{segment}.0.5", "x", "", "1.2.3",
              f"{segment[:-1]}9.{offset}.0", f"../{segment}.{offset}.0"]
    assert all(log.lookup(bad) is None for bad in forged)


def test_a_torn_last_line_names_nothing_and_a_new_writer_never_glues_onto_it(tmp_path):
    log, clock = make(tmp_path)
    ids = log.append("v1", FEATURES, [[1.0, "x"]], [0], None)
    log.close()
    path = next((tmp_path / "predictions").glob("*.jsonl"))
    with open(path, "ab") as handle:  # a process with our pid died mid-line
        handle.write(b'{"id":"torn')
    again = PredictionLog(tmp_path / "predictions", 2.0, 1, clock=clock)
    new = again.append("v1", FEATURES, [[2.0, "y"]], [1], None)
    assert again.lookup(new[0]).output == 1 and again.lookup(ids[0]).output == 0
    assert path.read_bytes().count(b"\n") == 3  # the torn line was ended, not continued


def test_labels_are_remembered_across_processes(tmp_path):
    log, clock = make(tmp_path)
    ids = log.append("v1", FEATURES, [[1.0, "x"], [2.0, "y"]], [0, 1], None)
    log.record_labels([(ids[1], 7)])
    other = PredictionLog(tmp_path / "predictions", 2.0, 1, clock=clock)
    assert other.lookup(ids[1]).labelled and other.lookup(ids[1]).label == 7
    assert not other.lookup(ids[0]).labelled


def test_predictions_expire_after_keep_hours_and_prune_deletes_their_files(tmp_path):
    log, clock = make(tmp_path, keep_hours=2.0)
    old = log.append("v1", FEATURES, [[1.0, "x"]], [0], None)
    log.record_labels([(old[0], 1)])
    clock.now += dt.timedelta(hours=1)
    recent = log.append("v1", FEATURES, [[1.0, "x"]], [0], None)
    clock.now += dt.timedelta(hours=1, minutes=31)  # the first is 2.5 h old, the second 1.5 h
    assert log.lookup(old[0]) is None and log.lookup(recent[0]) is not None
    deleted = log.prune()
    assert deleted == [old[0].split(".")[0]]
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "predictions").iterdir()) == [recent[0].split(".")[0]]


def test_prune_keeps_the_folder_under_its_size_bound_oldest_hours_first(tmp_path):
    log, clock = make(tmp_path, keep_hours=1000, max_megabytes=1)
    wide = [[float(i), "x" * 2000] for i in range(100)]  # ~200 kB a request
    kept = []
    for _ in range(8):
        kept.append(log.append("v1", FEATURES, wide, [0] * 100, None)[0])
        clock.now += dt.timedelta(hours=1)
    log.append("v1", FEATURES, [[0.0, "x"]], [0], None)  # our live segment is now the newest hour's
    log.prune()
    total = sum(os.path.getsize(p) for p in (tmp_path / "predictions").iterdir())
    assert total <= 1024 * 1024
    assert log.lookup(kept[0]) is None and log.lookup(kept[-1]) is not None
