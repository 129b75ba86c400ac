"""The OpenAPI 3 document, generated from the marshmallow schemas with apispec.

Each route module documents its own handlers with ``@documented(...)`` next to them;
``openapi_document(app)`` walks the app's router and writes one operation per route, so
a route added anywhere appears in the document, and one added without documentation
fails tests/test_openapi.py. Error answers are written from the problems a handler
names (countersign_domain/errors.py): each status lists its codes and what they mean,
in the envelope schema of petition_api/errors.py.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, TypeVar

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from countersign_domain import patterns
from countersign_domain.errors import (
    InvalidToken,
    Problem,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from petition_api.html import html_route
from petition_api.schemas import ErrorSchema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    description: str
    # A JSON body's schema (a marshmallow schema, or a JSON schema); None for no body, or
    # for a text one in ``text_types``.
    schema: type[Schema] | Mapping[str, Any] | None = None
    text_types: tuple[str, ...] = ()
    # Other media types with a schema of their own: media type -> JSON schema (for
    # text/event-stream, the schema of each event).
    media_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # name -> (description, required): headers this answer carries.
    headers: Mapping[str, tuple[str, bool]] = field(default_factory=dict)
    # For an error answer: the problems it is (their codes are its ``error.code``).
    problems: tuple[type[Problem], ...] = ()

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"description": self.description}
        content: dict[str, Any] = {
            media: {"schema": {"type": "string"}} for media in self.text_types
        }
        content.update({media: {"schema": dict(s)} for media, s in self.media_schemas.items()})
        if self.schema is not None:
            content[JSON] = {"schema": self.schema}
        if content:
            doc["content"] = content
        if self.headers:
            doc["headers"] = {
                name: {"description": text, "required": required, "schema": {"type": "string"}}
                for name, (text, required) in self.headers.items()
            }
        return doc


# Headers that come with some problems' answers.
_PROBLEM_HEADERS: tuple[tuple[tuple[type[Problem], ...], str, str], ...] = (
    ((ServiceUnavailable, RateLimited), "Retry-After", "Seconds to wait before trying again."),
    ((Unauthorized, InvalidToken), "WWW-Authenticate", "The Bearer challenge."),
)

# The path parameter of a petition's slug.
SLUG = {"type": "string", "pattern": patterns.SLUG}
# The path parameter of a partner's source code.
SOURCE = {"type": "string", "pattern": patterns.SOURCE_CODE}


def error_replies(problems: Iterable[type[Problem]], *, html: bool = False) -> dict[int, Reply]:
    """The answers of these problems, one per status, in the error envelope
    ``{"error": {"code", "message", "fields"?}}`` (``html``: an HTML page in the reader's
    language, on routes that answer people): each lists its codes and their meaning."""
    by_status: dict[int, list[type[Problem]]] = {}
    for problem in problems:
        if problem not in by_status.setdefault(problem.status, []):
            by_status[problem.status].append(problem)
    return {status: _error_reply(group, html=html) for status, group in by_status.items()}


def _error_reply(problems: list[type[Problem]], *, html: bool) -> Reply:
    lines = [f"`{problem.code}`: {problem.description}." for problem in problems]
    description = lines[0] if len(lines) == 1 else "\n".join(f"- {line}" for line in lines)
    headers = {
        name: (text, True)
        for kinds, name, text in _PROBLEM_HEADERS
        if any(issubclass(problem, kinds) for problem in problems)
    }
    if html:
        return Reply(
            f"An HTML page saying so, in the reader's language.\n\n{description}",
            text_types=("text/html",),
            headers=headers,
            problems=tuple(problems),
        )
    return Reply(description, ErrorSchema, headers=headers, problems=tuple(problems))


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, Reply]
    description: str = ""
    tags: tuple[str, ...] = ()
    # The request body: media type -> schema (marshmallow, or a JSON schema that may
    # combine marshmallow ones with allOf and add what fields alone cannot say).
    body: Mapping[str, type[Schema] | Mapping[str, Any]] = field(default_factory=dict)
    # name -> JSON schema of each path parameter (a plain string if not listed).
    path_parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Optional header parameters: name -> description.
    header_parameters: Mapping[str, str] = field(default_factory=dict)
    # The query string: the marshmallow schema the handler loads it with (apispec turns
    # its fields into parameters), so its rules are stated once.
    query: type[Schema] | None = None
    # Security requirements (SECURITY_SCHEMES by name); none for a public operation.
    security: tuple[Mapping[str, list[str]], ...] = ()


_OPERATIONS: dict[Handler, Operation] = {}

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "staffToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A staff token (`countersign token create`), for /v1/admin.",
    },
    "partnerKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A partner's API key (`countersign partner create`).",
    },
}
STAFF_TOKEN: tuple[Mapping[str, list[str]], ...] = ({"staffToken": []},)
PARTNER_KEY: tuple[Mapping[str, list[str]], ...] = ({"partnerKey": []},)


def documented(
    summary: str,
    *,
    responses: Mapping[int, Reply],
    problems: Iterable[type[Problem]] = (),
    description: str = "",
    tags: tuple[str, ...] = (),
    body: Mapping[str, type[Schema] | Mapping[str, Any]] | None = None,
    path_parameters: Mapping[str, Mapping[str, Any]] | None = None,
    header_parameters: Mapping[str, str] | None = None,
    query: type[Schema] | None = None,
    security: tuple[Mapping[str, list[str]], ...] = (),
    html: bool = False,
) -> Callable[[H], H]:
    """Document a handler: every answer it can give, the ones of its ``responses`` and
    those of the ``problems`` it can raise (written from the error vocabulary). ``html``:
    a route that answers people, whose errors are HTML pages (petition_api/html.py)."""
    errors = error_replies(problems, html=html)
    if both := set(errors) & set(responses):
        raise ValueError(f"{summary!r}: status {sorted(both)} is both a reply and a problem")

    def register(handler: H) -> H:
        if html:
            html_route(handler)
        _OPERATIONS[handler] = Operation(
            summary,
            {**responses, **errors},
            description,
            tags,
            body or {},
            path_parameters or {},
            header_parameters or {},
            query,
            security,
        )
        return handler

    return register


# Handlers of pages for people (the staff console): routes, but not operations of the API.
_NOT_API: set[Callable[..., object]] = set()


def not_api(handler: H) -> H:
    _NOT_API.add(handler)
    return handler


def operation_of(route: web.AbstractRoute) -> Operation | None:
    return _OPERATIONS.get(route.handler)


def documented_routes(app: web.Application) -> list[tuple[str, str, web.AbstractRoute]]:
    """(method, path pattern, route) of every route but the HEADs aiohttp adds to GETs
    and the CORS preflights (petition_api/cors.py): those are transport, answered for the
    browser on behalf of the operations they precede, not operations of the API."""
    found = []
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS") or route.resource is None:
            continue
        if route.handler in _NOT_API:
            continue
        found.append((route.method, route.resource.canonical, route))
    return found


API_DESCRIPTION = """\
Sign petitions and read their live counts.

Every answer carries an `X-Request-ID` header: the client's own, if it sent a
well-formed one (16-64 hexadecimal digits and dashes, such as a UUID), else a new one.
Errors share one envelope, `{"error": {"code", "message", "fields"?}}`, and never echo
a signer's email or name.
"""


def openapi_document(app: web.Application) -> dict[str, Any]:
    spec = APISpec(
        title="countersign",
        version=version("countersign"),
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": API_DESCRIPTION},
    )
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for method, path, route in sorted(documented_routes(app), key=lambda item: item[1]):
        operation = operation_of(route)
        if operation is None:
            raise LookupError(f"{method} {path} is not documented (use @documented)")
        spec.path(path=path, operations={method.lower(): _operation(operation, path)})
    return spec.to_dict()


def _operation(operation: Operation, path: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "summary": operation.summary,
        "responses": {
            str(status): reply.document() for status, reply in sorted(operation.responses.items())
        },
    }
    if operation.description:
        doc["description"] = operation.description
    if operation.tags:
        doc["tags"] = list(operation.tags)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(operation.path_parameters.get(name, {"type": "string"})),
        }
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    parameters += [
        {"name": name, "in": "header", "description": text, "schema": {"type": "string"}}
        for name, text in operation.header_parameters.items()
    ]
    if operation.query is not None:
        parameters.append({"in": "query", "schema": operation.query})
    if parameters:
        doc["parameters"] = parameters
    if operation.body:
        doc["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in operation.body.items()},
        }
    if operation.security:
        doc["security"] = [dict(requirement) for requirement in operation.security]
    return doc
