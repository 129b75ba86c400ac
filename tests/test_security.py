"""Security checks: admin routes need a token, headers on every answer, bodies bounded,
SQL only with parameters."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from countersign_core.settings import Settings
from petition_api.app import create_app
from petition_api.docs import DOCS_POLICY
from petition_api.security import HTML_POLICY, OTHER_POLICY
from tests.support.factories import signer
from tests.support.http import SIGN, AiohttpClient, Client, error_of

REPO = Path(__file__).resolve().parent.parent


def concrete(path: str) -> str:
    """A path of a route pattern, with a placeholder for each variable part."""
    return re.sub(r"\{[^}]+\}", "placeholder-1", path)


async def test_every_admin_route_answers_401_without_a_token(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int
) -> None:
    app = create_app(settings)
    client = await aiohttp_client(app)
    routes = [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    ]
    # Enumerated from the router: a route added later is checked without anyone listing it.
    admin = [(m, p) for m, p in routes if p.startswith("/v1/admin")]
    assert len(admin) >= 12, admin  # the staff API is mounted: the check below has teeth
    for method, path in admin:
        response = await client.request(method, concrete(path))
        assert (await error_of(response, 401))["code"] == "unauthorized", (method, path)
        bearer = {"Authorization": "Bearer not-a-real-token"}
        response = await client.request(method, concrete(path), headers=bearer)
        assert response.status == 401, (method, path)
    # Whatever else there is answers an anonymous, empty request without a server error.
    for method, path in routes:
        if (method, path) not in admin:
            response = await client.request(method, concrete(path))
            assert response.status < 500, (method, path, await response.text())


async def test_headers_on_html_json_and_errors(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    app = create_app(settings)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<p>hello</p>", content_type="text/html")

    app.router.add_get("/a-page", page)
    client = await aiohttp_client(app)
    for path, policy in [
        ("/a-page", HTML_POLICY),
        ("/docs", DOCS_POLICY),  # a handler's own policy is kept
        ("/healthz", OTHER_POLICY),
        ("/no-such-thing", OTHER_POLICY),
    ]:
        response = await client.get(path)
        assert response.headers["Content-Security-Policy"] == policy, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
    assert "frame-ancestors 'none'" in HTML_POLICY
    assert "script-src" not in DOCS_POLICY  # scripts: 'self' only, by default-src


async def test_request_bodies_are_bounded_whatever_their_type(client: Client) -> None:
    big = "x" * 40_000
    multipart = aiohttp.FormData({"name": big, "email": "a@example.org", "country": "FR"})
    multipart.add_field("file", big.encode(), filename="big.txt")  # forces multipart
    bodies: list[dict[str, Any]] = [
        {"json": signer(name=big)},
        {"data": {"name": big, "email": "a@example.org", "country": "FR"}},
        {"data": multipart},
    ]
    for kwargs in bodies:
        response = await client.post(SIGN, **kwargs)
        assert (await error_of(response, 413))["code"] == "payload_too_large"


# Statements whose text is built at run time, and why each is safe.
BUILT_SQL_ALLOWED = {
    # A database name can only be an identifier; it is quoted by quote_ident first.
    ("countersign/embedded.py", "ensure_database"),
}
SQL_CALLS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "cursor", "prepare"}


def built_sql_calls(path: Path) -> list[tuple[str, int]]:
    """Database calls whose statement is an f-string, a % format, + or .format()."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS
                and node.args
            ):
                continue
            statement = node.args[0]
            built = isinstance(statement, ast.JoinedStr | ast.BinOp) or (
                isinstance(statement, ast.Call)
                and isinstance(statement.func, ast.Attribute)
                and statement.func.attr == "format"
            )
            if built:
                found.append((function.name, node.lineno))
    return found


def test_sql_takes_values_only_as_parameters() -> None:
    sources = [
        path
        for package in ("countersign", "petition_api", "counter_worker")
        for path in sorted((REPO / package).rglob("*.py"))
    ]
    assert len(sources) > 20
    offending = [
        f"{path.relative_to(REPO)}:{line} in {function}"
        for path in sources
        for function, line in built_sql_calls(path)
        if (str(path.relative_to(REPO)), function) not in BUILT_SQL_ALLOWED
    ]
    assert not offending
    # The check sees what it should: the one allowed case is found.
    assert built_sql_calls(REPO / "countersign" / "embedded.py")
