"""The sample store: text that round-trips exactly, torn lines of outside writers, columns and kinds."""
import csv
import json
import os
import threading
import time

import pytest

from backend import create_app
from backend.errors import Invalid
from backend.samples import SampleStore
from backend.training import read_samples

TRICKY = ["a\rb", "a\r\nb", "tab\there", "é✓", "with, comma", 'say "hi"', "two\nlines", "\r", " padded ", "ünï\r"]


def text_config(folder, features=("size", "colour")) -> "os.PathLike":
    """A config with one classification model 'notes' whose 'colour' feature is text."""
    config = {
        "storage": {"dataDir": "./data", "modelsDir": "./ml_models"},
        "models": {"notes": {
            "task": "classification", "target": "label",
            "features": list(features) if features is not None else None,
            "training": {"autoTrain": False, "logFile": "./data/notes.csv",
                         "trainingLogFile": "./data/training_logs/history.log"},
        }},
    }
    (folder / "data").mkdir(exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


def post(client, rows):
    return client.post("/api/notes/samples", json={"samples": rows})


def records(path) -> list[list[str]]:
    """Every record of the file as Python's csv module reads it (quoted CR and LF stay in their field)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# -- defect 1: text round-trips exactly ------------------------------------------------------------

def test_text_values_round_trip_exactly_and_counts_agree(tmp_path):
    client = create_app(text_config(tmp_path)).test_client()
    sent = [{"size": i, "colour": text, "label": "x" if i % 2 else "y"} for i, text in enumerate(TRICKY)]
    answer = post(client, sent)
    assert answer.status_code == 201, answer.json
    frame, skipped = read_samples(tmp_path / "data" / "notes.csv")
    assert skipped == 0
    assert answer.json["total_samples"] == len(frame) == len(TRICKY)
    assert frame["colour"].tolist() == TRICKY
    assert frame["size"].tolist() == list(range(len(TRICKY)))
    assert all(len(record) == 3 for record in records(tmp_path / "data" / "notes.csv"))
    assert client.get("/api/notes/training/status").json["total_samples"] == len(TRICKY)


@pytest.mark.parametrize("value, reason", [
    ("nul\x00byte", "NUL"),
    ("NA", "missing"),
    ("", "missing"),
])
def test_a_text_that_cannot_be_stored_is_422_naming_row_and_field_and_nothing_is_written(tmp_path, value, reason):
    client = create_app(text_config(tmp_path)).test_client()
    assert post(client, [{"size": 1, "colour": "red", "label": "x"}]).status_code == 201
    before = (tmp_path / "data" / "notes.csv").read_bytes()
    answer = post(client, [{"size": 2, "colour": "blue", "label": "y"}, {"size": 3, "colour": value, "label": "y"}])
    assert answer.status_code == 422, answer.json
    error = answer.json["error"]
    assert error["details"]["errors"][0]["row"] == 1 and error["details"]["errors"][0]["field"] == "colour"
    assert reason in error["details"]["errors"][0]["error"]
    assert (tmp_path / "data" / "notes.csv").read_bytes() == before
    assert client.get("/api/notes/training/status").json["total_samples"] == 1


def test_a_lone_surrogate_never_reaches_the_file(tmp_path):
    store = SampleStore(tmp_path / "s.csv", ["size", "colour", "label"])
    with pytest.raises(Invalid) as caught:
        store.append([{"size": 1, "colour": "ok", "label": 0}, {"size": 2, "colour": "lone \ud800", "label": 0}])
    assert caught.value.details["errors"] == [
        {"row": 1, "field": "colour", "error": "text with a lone surrogate is not valid Unicode and cannot be stored"}]
    assert store.count() == 0
    client = create_app(text_config(tmp_path)).test_client()  # over HTTP such text is not even valid JSON
    answer = client.post("/api/notes/samples", data='{"samples": [{"size": 1, "colour": "\\ud800", "label": "x"}]}',
                         content_type="application/json")
    assert answer.status_code in (400, 422) and not (tmp_path / "data" / "notes.csv").exists()


# -- defect 4: an outside writer's torn line --------------------------------------------------------

def _outside_row_and_ours(path):
    rows = records(path)
    assert all(len(r) == 3 for r in rows), rows
    return rows


def test_a_line_an_outside_writer_is_still_writing_is_waited_for(tmp_path):
    client = create_app(text_config(tmp_path)).test_client()
    csv_file = tmp_path / "data" / "notes.csv"
    assert post(client, [{"size": 1, "colour": "red", "label": "x"}]).status_code == 201
    with open(csv_file, "ab") as handle:
        handle.write(b'7,"outside')  # half a row, just written: its writer is alive
    answers = []
    poster = threading.Thread(target=lambda: answers.append(post(client, [{"size": 2, "colour": "ours", "label": "y"}])))
    poster.start()
    time.sleep(0.2)  # the outside writer finishes its line a moment later
    with open(csv_file, "ab") as handle:
        handle.write(b' row",x\n')
    poster.join(10)
    assert answers and answers[0].status_code == 201, answers and answers[0].json
    rows = _outside_row_and_ours(csv_file)
    assert rows[1:] == [["1", "red", "x"], ["7", "outside row", "x"], ["2", "ours", "y"]]
    frame, _ = read_samples(csv_file)
    assert answers[0].json["total_samples"] == len(frame) == 3


def test_a_torn_line_left_by_a_killed_writer_is_mended_not_glued(tmp_path):
    client = create_app(text_config(tmp_path)).test_client()
    csv_file = tmp_path / "data" / "notes.csv"
    assert post(client, [{"size": 1, "colour": "red", "label": "x"}]).status_code == 201
    with open(csv_file, "ab") as handle:
        handle.write(b'7,"killed mid\nquote')  # its writer died: the line stays still from now on
    answer = post(client, [{"size": 2, "colour": "ours", "label": "y"}])
    assert answer.status_code == 201, answer.json
    rows = records(csv_file)
    assert rows[-1] == ["2", "ours", "y"]  # our row is whole, not swallowed by the open quote
    assert rows[-2][:2] == ["7", "killed mid\nquote"]
    frame, _ = read_samples(csv_file)
    assert answer.json["total_samples"] == len(frame) == 3
    assert frame["colour"].tolist()[-1] == "ours"


def test_a_torn_line_that_keeps_changing_is_503_store_busy_and_nothing_is_written(tmp_path):
    client = create_app(text_config(tmp_path)).test_client()
    csv_file = tmp_path / "data" / "notes.csv"
    assert post(client, [{"size": 1, "colour": "red", "label": "x"}]).status_code == 201
    stop = threading.Event()

    def slow_writer():  # an outside writer trickling one very long line
        with open(csv_file, "ab", buffering=0) as handle:
            handle.write(b"8,")
            while not stop.is_set():
                handle.write(b"z")
                stop.wait(0.1)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        time.sleep(0.1)
        answer = post(client, [{"size": 2, "colour": "ours", "label": "y"}])
    finally:
        stop.set()
        writer.join()
    assert answer.status_code == 503, answer.json
    assert answer.json["error"]["code"] == "store_busy"
    assert int(answer.headers["Retry-After"]) >= 1
    assert b"ours" not in csv_file.read_bytes()


# -- columns and kinds belong to the store -----------------------------------------------------------

def test_kinds_are_cached_until_the_file_grows_or_is_replaced(tmp_path):
    store = SampleStore(tmp_path / "s.csv", ["size", "colour", "label"])
    assert store.kinds() == {}
    store.append([{"size": 1, "colour": "red", "label": 0}])
    first = store.kinds()
    assert first == {"size": "numeric", "colour": "categorical"}
    assert store.kinds() is first  # nothing changed: the cached answer, no new read
    store.append([{"size": "big", "colour": "blue", "label": 1}])  # the file grew: looked at again
    assert store.kinds() == {"size": "categorical", "colour": "categorical"}
    replacement = tmp_path / "new.csv"
    replacement.write_bytes(b"size,colour,label\n1,2,0\n3,4,1\n")
    replacement.replace(store.path)
    replaced = store.kinds()
    assert replaced == {"size": "numeric", "colour": "numeric"}
    assert store.kinds() is replaced


def test_kinds_stop_changing_once_the_first_rows_are_known(tmp_path):
    store = SampleStore(tmp_path / "s.csv", ["size", "colour", "label"])
    store.append([{"size": i, "colour": "red", "label": i % 2} for i in range(250)])
    known = store.kinds()
    for i in range(100):
        store.append([{"size": i, "colour": "blue", "label": 0}])
        assert store.kinds() is known  # later rows never change the kinds: no re-read per append


def test_a_store_without_configured_features_takes_its_header_from_the_first_batch(tmp_path):
    store = SampleStore(tmp_path / "s.csv", ["label"])
    assert store.columns() is None and store.features() is None
    barrier = threading.Barrier(4)

    def first_batch():
        barrier.wait()
        store.append([{"b": "x", "a": 1, "label": 0}])

    threads = [threading.Thread(target=first_batch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.columns() == ["b", "a", "label"] and store.features() == ["b", "a"]
    assert store.kinds() == {"b": "categorical", "a": "numeric"}
    assert records(store.path) == [["b", "a", "label"]] + [["x", "1", "0"]] * 4


def test_text_posted_into_a_numeric_column_is_422_before_any_model_serves(tmp_path):
    client = create_app(text_config(tmp_path)).test_client()
    assert post(client, [{"size": i, "colour": "red", "label": "x"} for i in range(5)]).status_code == 201
    answer = post(client, [{"size": "forty", "colour": "red", "label": "x"}])
    assert answer.status_code == 422
    assert answer.json["error"]["details"]["errors"][0]["field"] == "size"
    models = client.get("/api/models").json["models"]
    assert models[0]["features"] == ["size", "colour"] and models[0]["total_samples"] == 5
