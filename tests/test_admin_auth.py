"""Staff tokens: the CLI that makes them, and the check in front of every admin route.

The routes are read from the application's router, so a route added later is covered
by these tests without anyone remembering to list it.
"""

from __future__ import annotations

import hashlib
import re

import asyncpg
import pytest
from aiohttp import ClientResponse, web

from countersign_core.settings import Settings
from countersign_domain.staff import Role, create_token, revoke_token
from petition_api.app import create_app
from tests.support.factories import SLUG, StaffTokens
from tests.support.http import ADMIN, Client, bearer, error_of
from tests.support.processes import countersign

# Routes an exporter may use; every other admin route must answer an exporter 403.
EXPORTER_ROUTES = {
    ("GET", f"{ADMIN}/petitions"),
    ("GET", f"{ADMIN}/petitions/{{slug}}"),
    ("GET", f"{ADMIN}/petitions/{{slug}}/summary"),
    ("GET", f"{ADMIN}/petitions/{{slug}}/signatures.csv"),
    ("GET", f"{ADMIN}/petitions/{{slug}}/delivery"),
    ("GET", f"{ADMIN}/petitions/{{slug}}/partners"),
}


def admin_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, full path template) of every route of the admin sub-application."""
    [admin] = [
        resource.get_info()["app"]
        for resource in app.router.resources()
        if isinstance(resource, web.PrefixedSubAppResource) and resource.canonical == ADMIN
    ]
    return sorted(
        {
            (route.method, route.resource.canonical)
            for route in admin.router.routes()
            if route.resource is not None
        }
    )


def concrete(path: str) -> str:
    return (
        path.replace("{slug}", SLUG)
        .replace("{id}", "1")
        .replace("{source}", "daily")
        .replace("{lang}", "fr")
    )


@pytest.fixture
def routes(settings: Settings) -> list[tuple[str, str]]:
    found = admin_routes(create_app(settings))
    # The enumeration itself must see the admin API, or every check below is vacuous.
    assert len(found) >= 12
    assert ("POST", f"{ADMIN}/erasures") in found
    return found


async def expect_unauthorized(response: ClientResponse, method: str) -> None:
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if method != "HEAD":
        assert (await error_of(response, 401))["code"] in {"unauthorized", "invalid_token"}


async def test_every_admin_route_refuses_missing_malformed_and_wrong_tokens(
    client: Client, routes: list[tuple[str, str]], staff: StaffTokens
) -> None:
    wrong = "cs_staff_" + "x" * 43
    for method, path in routes:
        url = concrete(path)
        for headers in (
            {},
            bearer(wrong),
            {"Authorization": f"Basic {staff.admin}"},
            {"Authorization": "Bearer"},
            {"Authorization": staff.admin},
        ):
            response = await client.request(method, url, headers=headers)
            await expect_unauthorized(response, method)
        # Only the header counts: a token in the URL would end up in logs.
        for parameter in ("token", "access_token"):
            response = await client.request(method, url, params={parameter: staff.admin})
            await expect_unauthorized(response, method)


async def test_a_revoked_token_is_refused_at_once(
    client: Client, routes: list[tuple[str, str]], pool: asyncpg.Pool
) -> None:
    token = await create_token(pool, actor="tests", name="leaver", role=Role.ADMIN)
    assert (await client.get(f"{ADMIN}/petitions", headers=bearer(token))).status == 200
    await revoke_token(pool, actor="tests", name="leaver")
    for method, path in routes:
        response = await client.request(method, concrete(path), headers=bearer(token))
        await expect_unauthorized(response, method)


async def test_exporters_get_403_on_every_route_but_reads(
    client: Client, routes: list[tuple[str, str]], staff: StaffTokens
) -> None:
    checked_reads = 0
    for method, path in routes:
        response = await client.request(method, concrete(path), headers=bearer(staff.exporter))
        if (method if method != "HEAD" else "GET", path) in EXPORTER_ROUTES:
            assert response.status == 200, (method, path, await response.text())
            checked_reads += 1
        else:
            assert response.status == 403, (method, path)
            if method != "HEAD":
                assert (await error_of(response, 403))["code"] == "insufficient_role"
    assert checked_reads >= len(EXPORTER_ROUTES)


async def test_admins_pass_the_check_on_every_route(
    client: Client, routes: list[tuple[str, str]], staff: StaffTokens
) -> None:
    for method, path in routes:
        response = await client.request(method, concrete(path), headers=bearer(staff.admin))
        # Past the check, each route answers for itself (a 4xx for an empty request body
        # or an unknown id), never 401/403 and never a crash.
        assert response.status not in (401, 403), (method, path)
        assert response.status < 500, (method, path, await response.text())


async def test_unknown_admin_paths_need_a_token_before_they_are_404(
    client: Client, staff: StaffTokens
) -> None:
    await expect_unauthorized(await client.get(f"{ADMIN}/nothing-here"), "GET")
    response = await client.get(f"{ADMIN}/nothing-here", headers=bearer(staff.exporter))
    assert (await error_of(response, 404))["code"] == "not_found"


async def test_a_request_records_when_the_token_was_last_used(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    query = "SELECT last_used_at FROM staff_tokens WHERE name = 'exporter-test'"
    assert await pool.fetchval(query) is None
    await client.get(f"{ADMIN}/petitions", headers=bearer(staff.exporter))
    assert await pool.fetchval(query) is not None


# -- the token commands ---------------------------------------------------------------------


async def test_token_commands(worker_env: dict[str, str], pool: asyncpg.Pool) -> None:
    created = countersign("token", "create", "press-office", env=worker_env)
    assert created.returncode == 0, created.stderr
    # Alone on stdout, so `TOKEN=$(countersign token create ...)` works.
    assert re.fullmatch(r"cs_staff_[A-Za-z0-9_-]{43}\n", created.stdout)
    token = created.stdout.strip()
    row = await pool.fetchrow("SELECT * FROM staff_tokens WHERE name = 'press-office'")
    assert row["role"] == "exporter"  # the least power unless asked
    assert bytes(row["token_hash"]) == hashlib.sha256(token.encode()).digest()
    assert token not in " ".join(str(value) for value in dict(row).values())

    admin = countersign("token", "create", "amal", "--role", "admin", env=worker_env)
    assert admin.returncode == 0, admin.stderr
    assert await pool.fetchval("SELECT role FROM staff_tokens WHERE name = 'amal'") == "admin"

    again = countersign("token", "create", "amal", env=worker_env)
    assert again.returncode == 1
    assert "exists already (names are never reused) (staff_name_taken)" in again.stderr
    bad = countersign("token", "create", "no spaces", env=worker_env)
    assert bad.returncode == 1
    assert "(validation_failed): name: Use 1-64 of letters" in bad.stderr
    assert bad.stdout == ""

    listed = countersign("token", "list", env=worker_env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["name", "role", "created", "last", "used", "revoked"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["amal", "admin"],
        ["press-office", "exporter"],
    ]
    assert token not in listed.stdout
    assert admin.stdout.strip() not in listed.stdout

    revoked = countersign("token", "revoke", "press-office", env=worker_env)
    assert revoked.returncode == 0, revoked.stderr
    assert await pool.fetchval(
        "SELECT revoked_at IS NOT NULL FROM staff_tokens WHERE name = 'press-office'"
    )
    for name in ("press-office", "nobody"):  # revoked already, or never created
        refused = countersign("token", "revoke", name, env=worker_env)
        assert refused.returncode == 1
        assert refused.stderr.endswith("(staff_token_not_found)\n")

    actions = [
        (row["action"], row["details"])
        for row in await pool.fetch("SELECT action, details::text FROM audit_log ORDER BY id")
    ]
    assert [action for action, _ in actions] == ["token.create", "token.create", "token.revoke"]
    assert all(token not in details for _, details in actions)
