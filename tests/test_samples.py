import csv
import io
import random

import pandas as pd
import pytest

from backend.samples import SampleStore, count_complete_records, render_rows

COLUMNS = ["a", "b", "label"]


def store(tmp_path) -> SampleStore:
    return SampleStore(tmp_path / "data" / "s.csv", COLUMNS)


def test_append_creates_the_file_with_a_header_and_counts(tmp_path):
    s = store(tmp_path)
    assert s.count() == 0
    assert s.append([{"a": 1, "b": "x", "label": 0}, {"a": 2.5, "b": None, "label": 1}]) == 2
    frame = pd.read_csv(s.path)
    assert list(frame.columns) == COLUMNS
    assert frame["a"].tolist() == [1.0, 2.5]
    assert pd.isna(frame["b"][1])  # None is stored as an empty cell


def test_text_with_commas_quotes_and_newlines_round_trips(tmp_path):
    s = store(tmp_path)
    tricky = ['plain', 'with, comma', 'say "hi"', 'two\nlines', 'cr\r\nlf', '', 'ünïcode']
    s.append([{"a": i, "b": text or None, "label": text or "x"} for i, text in enumerate(tricky)])
    assert s.count() == len(tricky)
    frame = pd.read_csv(s.path, keep_default_na=False)
    assert frame["label"].tolist() == [t or "x" for t in tricky]


def test_counts_stay_exact_while_an_outside_writer_appends(tmp_path):
    s = store(tmp_path)
    s.append([{"a": 1, "b": "x", "label": 0}])
    with open(s.path, "a", newline="") as handle:  # another process, not using our lock
        writer = csv.writer(handle, lineterminator="\r\n")
        for i in range(25):
            writer.writerow([i, f"multi\nline {i}" if i % 3 == 0 else "v", i % 2])
    assert s.count() == 26
    with open(s.path, "ab") as handle:  # a writer caught half-way through a row
        handle.write(b'7,"unfinished\n')
    assert s.count() == 26
    with open(s.path, "ab") as handle:
        handle.write(b'quoted part",1\n8,y,0\n')
    assert s.count() == 28
    assert s.count() == len(pd.read_csv(s.path))


def test_a_replaced_or_truncated_file_is_rescanned(tmp_path):
    s = store(tmp_path)
    s.append([{"a": i, "b": "x", "label": 0} for i in range(10)])
    assert s.count() == 10
    s.path.write_bytes(render_rows(COLUMNS, [dict(zip(COLUMNS, COLUMNS))]) + b"1,x,0\n")  # truncated in place
    assert s.count() == 1
    replacement = tmp_path / "new.csv"
    replacement.write_bytes(b"a,b,label\n" + b"1,z,1\n" * 30)
    replacement.replace(s.path)
    assert s.count() == 30
    # rewritten in place to a larger, different content of the same inode
    with open(s.path, "r+b") as handle:
        handle.write(b"a,b,label\n" + b'2,"q\nq",0\n' * 40)
    assert s.count() == 40


def test_a_torn_last_line_is_not_glued_to_the_next_append(tmp_path):
    s = store(tmp_path)
    s.append([{"a": 1, "b": "x", "label": 0}])
    with open(s.path, "ab") as handle:
        handle.write(b"2,half")  # a writer killed mid-line
    s.append([{"a": 3, "b": "z", "label": 1}])
    lines = s.path.read_bytes().decode().splitlines()
    assert lines[-2:] == ["2,half", "3,z,1"]


def test_count_matches_pandas_on_random_tricky_files():
    rng = random.Random(7)
    pieces = ["x", "", '"a,b"', '"he said ""no"""', '"line\nbreak"', "1.5", '"\r\n"']
    for _ in range(200):
        lines = ["h1,h2"]
        for _ in range(rng.randint(0, 30)):
            lines.append(f"{rng.choice(pieces)},{rng.choice(pieces[:-1])}")
            if rng.random() < 0.1:
                lines.append("")  # a blank line pandas skips
        data = ("\n".join(lines) + "\n").encode()
        consumed, records = count_complete_records(data)
        assert consumed == len(data)
        expected = len(pd.read_csv(io.BytesIO(data), keep_default_na=False)) if len(lines) > 1 else 0
        assert records - 1 == expected, data


def test_counting_reads_only_what_was_appended(tmp_path):
    s = store(tmp_path)
    s.append([{"a": i, "b": "x", "label": 0} for i in range(1000)])
    assert s.count() == 1000
    offset_before = s.snapshot()[1]
    s.append([{"a": 1, "b": "y", "label": 1}])
    rows, offset = s.snapshot()
    assert rows == 1001 and offset == s.path.stat().st_size > offset_before


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_never_written(tmp_path, value):
    s = store(tmp_path)
    with pytest.raises(ValueError):
        s.append([{"a": value, "b": "x", "label": 0}])
    assert s.count() == 0
