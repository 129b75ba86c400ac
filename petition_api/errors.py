"""One JSON error envelope for every failure: ``{"error": {"code", "message", "fields"?}}``.

Messages never echo what the client sent: a signer's email or name must not come back
in an error (or be logged because of one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import ValidationError

from countersign_core.connections import TRANSIENT_ERRORS
from countersign_core.logs import frames_of
from countersign_domain.errors import Problem, ValidationFailed

log = logging.getLogger("petition_api")

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields
        self.headers = headers

    def response(self) -> web.Response:
        return error_response(
            self.status, self.code, self.message, fields=self.fields, headers=self.headers
        )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    fields: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return web.json_response({"error": error}, status=status, headers=headers)


def unavailable(message: str = "a back-end service is unavailable; try again shortly") -> ApiError:
    return ApiError(503, "service_unavailable", message, headers={"Retry-After": "1"})


def petition_not_found() -> ApiError:
    return ApiError(404, "petition_not_found", "no such petition")


def validation_failed(fields: Mapping[str, Any]) -> ApiError:
    return ApiError(422, "validation_failed", "some fields are invalid", fields=fields)


def counts_unavailable() -> ApiError:
    return ApiError(
        503,
        "counts_unavailable",
        "the live counts are being rebuilt; try again in a moment",
        headers={"Retry-After": "1"},
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except Problem as exc:
        return error_response(
            exc.status, exc.code, exc.message, fields=exc.fields, headers=exc.headers
        )
    except ValidationError as exc:
        problem = ValidationFailed(fields=cast(dict[str, Any], exc.messages))
        return error_response(problem.status, problem.code, problem.message, fields=problem.fields)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODES_BY_STATUS.get(exc.status, "http_error")
        message = exc.reason.lower() if exc.status != 413 else "request body is too large"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, message, headers=headers)
    except TRANSIENT_ERRORS as exc:
        log.warning(
            "%s %s: back end unavailable (%s)", request.method, _route(request), type(exc).__name__
        )
        return unavailable().response()
    except Exception as exc:
        # The exception's message may quote a row (asyncpg's DETAIL does): log the type
        # and the frames, never the message.
        log.error(
            "%s %s failed with %s\n%s",
            request.method,
            _route(request),
            type(exc).__name__,
            frames_of(exc.__traceback__),
        )
        return error_response(500, "internal_error", "internal error")


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "?"
