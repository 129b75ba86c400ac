"""Reading request bodies: one JSON object, or a clear 400."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from petition_api.errors import ApiError


async def read_json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return data
