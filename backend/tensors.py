"""Open Inference Protocol tensors (KServe v2, as Triton and MLServer speak it): infer requests in, answers out.

A request's inputs are either one tensor per feature (named as the feature,
shape ``[n]`` or ``[n, 1]``) or one numeric ``[n, n_features]`` matrix of any
name whose columns are the config's feature order. Data comes as JSON
(flat in row-major order, or nested) or, with Triton's binary-data extension,
as raw little-endian bytes after the JSON header (``Inference-Header-Content-
Length``). Validation is as strict as ``/predict``: a wrong shape, datatype or
value, or a NaN, is a 400 naming the tensor; ``null`` in JSON data is a
missing value, imputed as on ``/predict``.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import jsoncodec
from .columnar import check_rows, flat
from .errors import BadRequest
from .serving import Answers, text_column

INTEGERS = {"INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
            "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64}
FLOATS = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
NUMERIC = {**INTEGERS, **FLOATS}
DATATYPES = frozenset(NUMERIC) | {"BOOL", "BYTES"}
OUTPUTS = ("predict", "predict_proba")


@dataclass(frozen=True)
class Tensor:
    """One decoded input tensor: its cells in row-major order (floats, or text for BYTES)."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    values: np.ndarray


@dataclass(frozen=True)
class InferRequest:
    """A decoded infer request: its id, tensors and the outputs asked for (None: all of them)."""

    id: str | None
    inputs: list[Tensor]
    outputs: list[str] | None


def read_request(raw: bytes, header_length: str | None, max_rows: int) -> InferRequest:
    """Decode an infer request body (JSON, or a JSON header followed by binary tensor data)."""
    head, tail = raw, b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise BadRequest("Inference-Header-Content-Length must be a number of bytes") from None
        if not 0 < size <= len(raw):
            raise BadRequest(f"Inference-Header-Content-Length {size} does not fit the {len(raw)}-byte body")
        head, tail = raw[:size], raw[size:]
    try:
        body = jsoncodec.loads(head)
    except jsoncodec.DecodeError as exc:
        raise BadRequest(f"The request is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request must be a JSON object with 'inputs'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    offset = 0
    tensors = []
    for index, given in enumerate(inputs):
        tensor, used = _tensor(given, index, tail, offset, max_rows)
        offset += used
        tensors.append(tensor)
    if offset != len(tail):
        raise BadRequest(f"{len(tail) - offset} bytes of binary data belong to no input")
    return InferRequest(request_id, tensors, _outputs(body.get("outputs")))


def _outputs(given: Any) -> list[str] | None:
    if given is None:
        return None
    if not isinstance(given, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in given):
        raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
    names = [o["name"] for o in given]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise BadRequest(f"unknown output(s) {', '.join(unknown)}: this model has {', '.join(OUTPUTS)}")
    return names


def _tensor(given: Any, index: int, tail: bytes, offset: int, max_rows: int) -> tuple[Tensor, int]:
    if not isinstance(given, dict) or not isinstance(given.get("name"), str):
        raise BadRequest(f"input {index} must be an object with a 'name'")
    name = given["name"]
    shape = given.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise BadRequest(f"input '{name}': 'shape' must be [n] or [n, k] of non-negative integers")
    datatype = given.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequest(f"input '{name}': datatype {datatype!r} is not one of {', '.join(sorted(DATATYPES))}")
    if shape[0] == 0:
        raise BadRequest(f"input '{name}' holds no rows")
    check_rows(shape[0], max_rows)
    count = math.prod(shape)
    parameters = given.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(tail):
            raise BadRequest(f"input '{name}': binary_data_size {size!r} does not fit the binary data sent")
        values = _binary(name, datatype, tail[offset:offset + size], count)
        used = size
    else:
        if "data" not in given:
            raise BadRequest(f"input '{name}' has no 'data'")
        values = _json_data(name, datatype, given["data"], count)
        used = 0
    return Tensor(name, tuple(shape), datatype, values), used


def _json_data(name: str, datatype: str, data: Any, count: int) -> np.ndarray:
    cells = flat(data) if isinstance(data, list) else None
    if cells is None or len(cells) != count:
        got = len(cells) if cells is not None else type(data).__name__
        raise BadRequest(f"input '{name}': its shape holds {count} values, 'data' has {got}")
    if datatype == "BYTES":
        bad = next((i for i, v in enumerate(cells) if v is not None and not isinstance(v, str)), None)
        if bad is not None:
            raise BadRequest(f"input '{name}': BYTES data must be text (value {bad} is {_kind(cells[bad])})")
        return text_column(cells)
    allowed = (int,) if datatype in INTEGERS or datatype == "BOOL" else (int, float)
    plain = {bool, type(None)} if datatype == "BOOL" else {*allowed, type(None)}
    # bool is an int in Python: refused unless the datatype is BOOL; plain cells skip the per-cell look
    for i, value in enumerate(cells if not set(map(type, cells)) <= plain else ()):
        if value is None:
            continue
        if datatype == "BOOL":
            if not isinstance(value, bool):
                raise BadRequest(f"input '{name}': BOOL data must be true or false (value {i} is {_kind(value)})")
        elif isinstance(value, bool) or not isinstance(value, allowed):
            kind = "integers" if datatype in INTEGERS else "numbers"
            raise BadRequest(f"input '{name}': {datatype} data must be {kind} (value {i} is {_kind(value)})")
    try:
        values = np.array(cells, dtype=float)
    except OverflowError:
        raise BadRequest(f"input '{name}': a number is out of range") from None
    if np.isinf(values).any():
        raise BadRequest(f"input '{name}': numbers must be finite")
    return values


def _binary(name: str, datatype: str, chunk: bytes, count: int) -> np.ndarray:
    if datatype == "BYTES":
        values, at = [], 0
        while at < len(chunk):
            if at + 4 > len(chunk):
                raise BadRequest(f"input '{name}': truncated BYTES element")
            (length,) = struct.unpack_from("<I", chunk, at)
            at += 4
            if at + length > len(chunk):
                raise BadRequest(f"input '{name}': truncated BYTES element")
            try:
                values.append(chunk[at:at + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest(f"input '{name}': BYTES element {len(values)} is not UTF-8 text") from None
            at += length
        if len(values) != count:
            raise BadRequest(f"input '{name}': its shape holds {count} values, the binary data has {len(values)}")
        return text_column(values)
    dtype = np.dtype(np.bool_ if datatype == "BOOL" else NUMERIC[datatype]).newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(f"input '{name}': {count} {datatype} values take {count * dtype.itemsize} bytes, "
                         f"{len(chunk)} were sent")
    values = np.frombuffer(chunk, dtype=dtype).astype(float)
    if not np.isfinite(values).all():
        raise BadRequest(f"input '{name}': numbers must be finite (NaN and infinity are refused)")
    return values


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", str: "text", type(None): "null"}.get(
        type(value), type(value).__name__)


def feature_columns(request: InferRequest, order: tuple[str, ...], numeric: tuple[str, ...],
                    categorical: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The feature columns of a request's tensors, and the input names that are not features (ignored)."""
    features = set(numeric) | set(categorical)
    first = request.inputs[0]
    if len(request.inputs) == 1 and len(first.shape) == 2 and not (first.name in features and first.shape[1] == 1):
        return _matrix(first, order, numeric, categorical), []
    by_name: dict[str, Tensor] = {}
    for tensor in request.inputs:
        if tensor.name in by_name:
            raise BadRequest(f"input '{tensor.name}' is given twice")
        by_name[tensor.name] = tensor
    missing = [name for name in order if name not in by_name]
    if missing:
        raise BadRequest(f"missing input(s) {', '.join(missing)}: send one tensor per feature ({', '.join(order)}) "
                         f"or one [n, {len(order)}] matrix")
    rows = {t.shape[0] for name, t in by_name.items() if name in features}
    columns: dict[str, np.ndarray] = {}
    for name in order:
        tensor = by_name[name]
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            raise BadRequest(f"input '{name}' must have shape [n] or [n, 1], not {list(tensor.shape)}")
        if len(rows) != 1:
            raise BadRequest(f"every feature tensor must hold the same number of rows (got {sorted(rows)})")
        columns[name] = _column(tensor, name in categorical)
    return columns, sorted(name for name in by_name if name not in features)


def _column(tensor: Tensor, text: bool) -> np.ndarray:
    if text:
        if tensor.datatype == "BYTES":
            return tensor.values
        if tensor.datatype == "BOOL":
            raise BadRequest(f"input '{tensor.name}' is a text feature: send BYTES (or numbers), not BOOL")
        return text_column([None if v != v else _number_text(v) for v in tensor.values.tolist()])
    if tensor.datatype not in NUMERIC:
        raise BadRequest(f"input '{tensor.name}' is a numeric feature: its datatype must be INT*, UINT* or FP*, "
                         f"not {tensor.datatype}")
    return np.asarray(tensor.values, dtype=np.float64)


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _matrix(tensor: Tensor, order: tuple[str, ...], numeric: tuple[str, ...],
            categorical: tuple[str, ...]) -> dict[str, np.ndarray]:
    if categorical:
        raise BadRequest(f"this model has text features ({', '.join(categorical)}): send one tensor per feature, "
                         "not a matrix")
    if tensor.datatype not in NUMERIC:
        raise BadRequest(f"input '{tensor.name}': a feature matrix must be numeric (INT*, UINT* or FP*), "
                         f"not {tensor.datatype}")
    n, width = tensor.shape
    if width != len(order):
        raise BadRequest(f"input '{tensor.name}' has shape {list(tensor.shape)}: a matrix needs one column per "
                         f"feature, [n, {len(order)}] ({', '.join(order)})")
    block = np.asarray(tensor.values, dtype=np.float64).reshape(n, width)
    return {name: block[:, i] for i, name in enumerate(order)}


def outputs(answers: Answers, classes: tuple[Any, ...] | None, wanted: list[str] | None) -> list[dict[str, Any]]:
    """The response tensors: ``predict`` (labels or values) and, for classifiers, ``predict_proba`` [n, n_classes]."""
    n = len(answers.labels)
    names = wanted if wanted is not None else [o for o in OUTPUTS if o != "predict_proba" or
                                               answers.probabilities is not None]
    out = []
    for name in names:
        if name == "predict":
            out.append({"name": "predict", "datatype": label_datatype(answers.labels), "shape": [n],
                        "data": _native(answers.labels)})
        elif answers.probabilities is None:
            raise BadRequest("predict_proba is only given by classifiers")
        else:
            out.append({"name": "predict_proba", "datatype": "FP64", "shape": [n, answers.probabilities.shape[1]],
                        "data": answers.probabilities.reshape(-1).tolist(),
                        "parameters": {"classes": list(classes or ())}})
    return out


def label_datatype(labels: np.ndarray) -> str:
    """The protocol datatype of a label array: INT64, FP64, BOOL or BYTES (text)."""
    kind = np.asarray(labels).dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    values = list(labels)
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return "BOOL"
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return "INT64"
    if values and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def _native(labels: np.ndarray) -> list[Any]:
    values = np.asarray(labels).tolist()
    return [str(v) if not isinstance(v, (int, float, bool, str)) else v for v in values]
