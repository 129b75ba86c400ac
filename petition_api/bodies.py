"""Reading request bodies: one JSON object, or a form's text fields; else a clear 4xx."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from countersign_domain.errors import InvalidForm, InvalidJson, UnsupportedMediaType

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidJson() from None
    if not isinstance(data, dict):
        raise InvalidJson("the body must be a JSON object")
    return data


async def read_form(request: web.Request) -> dict[str, str] | None:
    """The text fields of a form body; None if it is not a well-formed form (a multipart
    body without its boundary, cut short, or with a broken part header; text that is
    not UTF-8)."""
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
