"""Reading request bodies: one JSON object, or a form's text fields; else a clear 4xx."""

from __future__ import annotations

import json
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from countersign_domain.errors import InvalidForm, InvalidJson, UnsupportedMediaType

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


# Made once: json.loads with an option makes a decoder per call.
_decode = json.JSONDecoder(parse_constant=_not_json).decode


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (RFC 8259: UTF-8, no NaN or Infinity); InvalidJson for
    anything else, whatever its shape.

    The json module refuses some valid-looking bodies with errors of its own: nesting
    deeper than the interpreter's recursion limit (RecursionError, a few thousand
    brackets fit in a small body) and integers longer than Python converts (ValueError,
    over 4300 digits). They are a client's malformed input like any other.
    """
    try:
        data = _decode(body.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        raise InvalidJson() from None
    if not isinstance(data, dict):
        raise InvalidJson("the body must be a JSON object")
    return data


async def read_json_object(request: web.Request) -> dict[str, Any]:
    return parse_json_object(await request.read())


async def read_form(request: web.Request) -> dict[str, str] | None:
    """The text fields of a form body; None if it is not a well-formed form (a multipart
    body without its boundary, cut short, or with a broken part header or text that is
    not UTF-8).

    In a URL-encoded form, bytes that are not UTF-8 (``name=%ff%fe``) are kept as lone
    surrogates rather than turned into U+FFFD as aiohttp would: no field's pattern
    accepts them, so the answer is a 422 that names the field.
    """
    if request.content_type == "application/x-www-form-urlencoded":
        charset = request.charset or "utf-8"
        try:
            text = (await request.read()).rstrip().decode(charset, "surrogateescape")
            pairs = parse_qsl(
                text, keep_blank_values=True, encoding=charset, errors="surrogateescape"
            )
        except (ValueError, LookupError):  # LookupError: no such charset
            return None
        return dict(pairs)
    try:
        form = await request.post()
    except (ValueError, BadHttpMessage):
        return None
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def read_json_or_form(request: web.Request) -> dict[str, Any]:
    """A JSON object's fields, or a form's text fields."""
    if request.content_type == "application/json":
        return await read_json_object(request)
    if request.content_type in FORM_TYPES:
        form = await read_form(request)
        if form is None:
            raise InvalidForm()
        return form
    raise UnsupportedMediaType("send application/json or application/x-www-form-urlencoded")
