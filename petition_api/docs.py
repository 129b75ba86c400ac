"""The API's documentation: ``/openapi.json`` and a Swagger UI page at ``/docs``.

Swagger UI comes from the swagger-ui-bundle package (the static files of the official
distribution, kept by the connexion project), served by the app itself: no CDN, no
build step, and its version is pinned and hashed in requirements.lock like any other.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from countersign_domain.errors import NotFound
from petition_api.openapi import Reply, documented, openapi_document

_STATIC = files("petition_api") / "static"
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (Path(swagger_ui_path) / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (Path(swagger_ui_path) / "swagger-ui.css", "text/css"),
    "docs.js": (Path(str(_STATIC / "docs.js")), "text/javascript"),
}
# Swagger UI styles some elements inline; scripts stay our own files only.
DOCS_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


@documented(
    "This document (OpenAPI 3)",
    tags=("documentation",),
    responses={200: Reply("The OpenAPI document.", {"type": "object"})},
)
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app))


@documented(
    "The documentation, readable",
    tags=("documentation",),
    responses={200: Reply("A page showing this document (Swagger UI).", text_types=("text/html",))},
)
async def get_docs(_request: web.Request) -> web.Response:
    return web.Response(
        body=_read(Path(str(_STATIC / "docs.html"))),
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": DOCS_POLICY},
    )


@documented(
    "A file of the documentation page",
    tags=("documentation",),
    path_parameters={"asset": {"type": "string", "enum": sorted(ASSETS)}},
    responses={200: Reply("The file.", text_types=("text/javascript", "text/css"))},
    problems=(NotFound,),
)
async def get_docs_asset(request: web.Request) -> web.Response:
    try:
        path, content_type = ASSETS[request.match_info["asset"]]
    except KeyError:
        raise NotFound("no such file") from None
    return web.Response(
        body=_read(path),
        content_type=content_type,
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )
