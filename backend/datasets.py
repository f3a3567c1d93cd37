"""Uploaded datasets: CSV (or Excel, when openpyxl is installed) files kept under ``<dataDir>/datasets/``.

Each upload is parsed before it is kept, so a malformed file is refused with
a message naming the problem and nothing is stored. Files are written
atomically next to a small JSON description.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import Invalid, NotFound
from .files import atomic_write
from .history import utc_now

DATASET_ID = re.compile(r"^[0-9a-f]{12}$")
FOLDER = "datasets"


def dataset_path(data_dir: Path, dataset_id: str) -> str:
    """The CSV of ``dataset_id`` (inside the data folder); 422 for a malformed id in a body, 404 when there is none."""
    if not DATASET_ID.match(str(dataset_id)):
        raise Invalid(f"'{dataset_id}' is not a dataset id", code="invalid_dataset_id", details={"field": "dataset_id"})
    relative = f"{FOLDER}/{dataset_id}.csv"
    if not (data_dir / relative).is_file():
        raise NotFound(f"No dataset '{dataset_id}'", code="dataset_not_found", details={"dataset_id": dataset_id})
    return str(data_dir / relative)


def _parse(filename: str, payload: bytes) -> pd.DataFrame:
    if not payload.strip():
        raise Invalid("The uploaded file is empty", code="invalid_dataset", details={"problem": "empty"})
    if filename.lower().endswith((".xlsx", ".xls")):
        if importlib.util.find_spec("openpyxl") is None:
            raise Invalid("Excel uploads need the 'openpyxl' package: pip install -r requirements-optional.txt",
                          code="package_missing", details={"package": "openpyxl"})
        try:
            return pd.read_excel(io.BytesIO(payload))
        except (ValueError, OSError, KeyError) as exc:
            raise Invalid(f"The Excel file could not be read: {exc}", code="invalid_dataset",
                          details={"problem": "unreadable"}) from None
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("The CSV is not UTF-8 text", code="invalid_dataset", details={"problem": "encoding"}) from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise Invalid("The CSV has no header", code="invalid_dataset", details={"problem": "no_header"})
    for row in reader:  # pandas would quietly turn extra leading fields into an index
        if row and len(row) != len(header):
            raise Invalid(f"Line {reader.line_num} has {len(row)} fields; the header has {len(header)}",
                          code="invalid_dataset", details={"problem": "malformed", "line": reader.line_num})
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise Invalid(f"The CSV is malformed: {exc}", code="invalid_dataset", details={"problem": "malformed"}) from None
    if frame.empty:
        raise Invalid("The CSV has a header but no rows", code="invalid_dataset", details={"problem": "no_rows"})
    if any(str(c).startswith("Unnamed: ") for c in frame.columns):
        raise Invalid("Every column needs a name in the header row", code="invalid_dataset",
                      details={"problem": "unnamed_columns"})
    return frame


def describe(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows, columns, dtypes and missing values of a table."""
    return {
        "rows": int(len(frame)),
        "columns": int(frame.shape[1]),
        "column_names": [str(c) for c in frame.columns],
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        "missing_values": {str(c): int(n) for c, n in frame.isna().sum().items()},
    }


def store(data_dir: Path, filename: str, payload: bytes, name: str | None) -> dict[str, Any]:
    """Parse and keep an upload; return its description with its new ``dataset_id``."""
    frame = _parse(filename, payload)
    dataset_id = uuid.uuid4().hex[:12]
    folder = data_dir / FOLDER
    csv = payload if not filename.lower().endswith((".xlsx", ".xls")) else frame.to_csv(index=False).encode("utf-8")
    atomic_write(folder / f"{dataset_id}.csv", csv)
    info = {"dataset_id": dataset_id, "name": name or filename or dataset_id, "created_at": utc_now(), **describe(frame)}
    atomic_write(folder / f"{dataset_id}.json", json.dumps(info).encode("utf-8"))
    return info


def listing(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored dataset's description, newest first."""
    infos = [json.loads(p.read_text()) for p in (data_dir / FOLDER).glob("*.json")] if (data_dir / FOLDER).is_dir() else []
    return sorted(infos, key=lambda i: i["created_at"], reverse=True)


def details(data_dir: Path, dataset_id: str) -> dict[str, Any]:
    """A dataset's description plus statistics of its numeric columns; 404 for an unknown or malformed id."""
    if not DATASET_ID.match(dataset_id):  # on its own GET route a malformed id names no dataset: 404, as for versions
        raise NotFound(f"No dataset '{dataset_id[:100]}'", code="dataset_not_found", details={"dataset_id": dataset_id[:100]})
    path = Path(dataset_path(data_dir, dataset_id))
    info = json.loads(path.with_suffix(".json").read_text())
    frame = pd.read_csv(path, encoding="utf-8-sig")
    numeric = frame.select_dtypes("number")
    stats = {} if numeric.empty else {
        str(c): {k: (None if pd.isna(v) else float(v)) for k, v in numeric[c].describe().items()} for c in numeric.columns}
    return {**info, "numeric_stats": stats}
