"""One sample CSV record: how it is written, how its end is found, and which text it can hold.

Written with minimal quoting (a field is quoted when it holds a comma, a
quote, a CR or LF, or edge whitespace) and ``\\n`` line ends, so pandas, the
``csv`` module and our own counter agree on where every record ends.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, Iterable

from .errors import Invalid

# A cell pandas reads back as missing whatever its quoting (its default na_values): storing one of
# these texts would change the value, so they are refused; ``null`` is how to send a missing value.
_READ_AS_MISSING = frozenset([
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
])
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Quote a field holding a delimiter, a quote, any line-end character (a lone CR included: csv.writer
# with a "\n" terminator leaves it bare, and readers end the record there) or edge whitespace.
_NEEDS_QUOTES = re.compile(r'[",\r\n]|^\s|\s$')


def count_complete_records(data: bytes) -> tuple[int, int]:
    """Return (bytes consumed, non-blank records) for the complete records in ``data``.

    ``data`` starts on a record boundary. A record ends at a newline outside
    double quotes; quoted newlines belong to the field. Blank lines are
    consumed but not counted, as pandas skips them.
    """
    if b'"' not in data:
        end = data.rfind(b"\n") + 1
        if end == 0:
            return 0, 0
        lines = data[:end].split(b"\n")
        lines.pop()
        return end, len(lines) - lines.count(b"") - lines.count(b"\r")
    consumed = records = position = 0
    in_quotes = has_content = False
    for index, part in enumerate(data.split(b'"')):
        if index:
            in_quotes = not in_quotes
            has_content = True
            position += 1
        if in_quotes:
            has_content = has_content or bool(part)
        else:
            start = 0
            while (newline := part.find(b"\n", start)) >= 0:
                if has_content or part[start:newline] not in (b"", b"\r"):
                    records += 1
                has_content = False
                consumed = position + newline + 1
                start = newline + 1
            has_content = has_content or bool(part[start:])
        position += len(part)
    return consumed, records


def render_rows(columns: list[str], rows: Iterable[dict[str, Any]]) -> bytes:
    """Render rows as CSV records in ``columns`` order; None and absent columns are empty cells."""
    return "".join([",".join([_cell(row.get(column)) for column in columns]) + "\n" for row in rows]).encode("utf-8")


def unstorable(value: Any) -> str | None:
    """Say why a text cell would not read back exactly as sent, or None when it would."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "text with a NUL character cannot be stored in a CSV cell"
    if _SURROGATE.search(value):
        return "text with a lone surrogate is not valid Unicode and cannot be stored"
    if value in _READ_AS_MISSING:
        return f"the text {value!r} would be read back as a missing value; send null for a missing value"
    return None


def check_storable(rows: list[dict[str, Any]]) -> None:
    """Raise a 422 naming each row and field whose text cannot be stored exactly; nothing is written then."""
    errors = [{"row": index, "field": name, "error": reason}
              for index, row in enumerate(rows) for name, value in row.items()
              if (reason := unstorable(value)) is not None]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise Invalid(f"row {first['row']}, field '{first['field']}': {first['error']}{more}; nothing was stored",
                      code="invalid_samples", details={"errors": errors[:50]})


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"' if _NEEDS_QUOTES.search(value) else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite numbers are never stored")
        return repr(value)
    return str(value)


def read_header(path: Path) -> list[str] | None:
    """Return the CSV's column names, or None when the file is missing or has no header yet."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 20)
    except FileNotFoundError:
        return None
    text = first.decode("utf-8-sig", errors="replace").strip("\r\n")
    if not text.strip():
        return None
    return next(csv.reader([text]))
