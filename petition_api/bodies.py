"""Reading request bodies: one JSON object, or a clear 400."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from aiohttp import web

from countersign_domain.errors import InvalidJson


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (RFC 8259: UTF-8, no NaN or Infinity); InvalidJson for
    anything else, whatever its shape.

    The json module refuses some valid-looking bodies with errors of its own: nesting
    deeper than the interpreter's recursion limit (RecursionError, a few thousand
    brackets fit in a small body) and integers longer than Python converts (ValueError,
    over 4300 digits). They are a client's malformed input like any other.
    """
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        raise InvalidJson() from None
    if not isinstance(data, dict):
        raise InvalidJson("the body must be a JSON object")
    return data


async def read_json_object(request: web.Request) -> dict[str, Any]:
    return parse_json_object(await request.read())
