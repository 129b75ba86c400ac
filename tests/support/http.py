"""Talking to the API in tests: client types, the routes' paths, the error envelope,
the CSV export; and web sites of their own origin (partner pages) for the browser tests."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from countersign_domain.export import UTF8_BOM
from tests.support.factories import SLUG

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]

SIGN = f"/v1/petitions/{SLUG}/signatures"
COUNTS = f"/v1/petitions/{SLUG}/counts"
ADMIN = "/v1/admin"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    return error


def read_csv(body: bytes) -> list[dict[str, str]]:
    """The export as rows keyed by the header; it must be UTF-8 with a byte-order mark."""
    assert body.startswith(UTF8_BOM)
    return list(csv.DictReader(io.StringIO(body[len(UTF8_BOM) :].decode("utf-8"), newline="")))


def csv_header(body: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(body[len(UTF8_BOM) :].decode("utf-8"), newline="")))


@dataclass
class Site:
    """A web site on its own origin, serving whatever pages a test gives it."""

    pages: dict[str, str] = field(default_factory=dict)
    origin: str = ""

    def page(self, name: str, html: str) -> str:
        self.pages[name] = html
        return f"{self.origin}/{name}"


async def serve_site(aiohttp_server: AiohttpServer) -> Site:
    site = Site()

    async def page(request: web.Request) -> web.Response:
        html = site.pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", page)
    server = await aiohttp_server(app)
    site.origin = str(server.make_url("")).rstrip("/")
    return site


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
