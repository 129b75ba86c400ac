"""The doors agree: the ``countersign`` command and the staff API reach the same rules
(``countersign_domain.petitions``), refuse the same moves with the same code and message,
and write the same audit entries, which ``countersign audit`` shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from countersign_domain.audit import cli_actor
from tests.support.factories import StaffTokens
from tests.support.http import ADMIN, Client, bearer
from tests.support.processes import countersign

VIA_API, VIA_CLI = "via-api", "via-cli"
VERBS = {"open": "open", "closed": "close"}  # status -> the command that moves to it


async def add_petition(pool: asyncpg.Pool, slug: str, status: str, closes_at: Any) -> int:
    petition_id: int = await pool.fetchval(
        "INSERT INTO petitions (slug, title, status, closes_at) VALUES ($1, 'T', $2, $3) "
        "RETURNING id",
        slug,
        status,
        closes_at,
    )
    return petition_id


async def entries_of(pool: asyncpg.Pool, slug: str) -> list[tuple[str, dict[str, Any]]]:
    """The petition's audit entries as (action, details), oldest first."""
    rows = await pool.fetch(
        """SELECT a.action, a.details::text FROM audit_log a JOIN petitions p
           ON p.id = a.petition_id WHERE p.slug = $1 ORDER BY a.id""",
        slug,
    )
    return [(row["action"], json.loads(row["details"])) for row in rows]


async def status_of(pool: asyncpg.Pool, slug: str) -> str:
    status: str = await pool.fetchval("SELECT status FROM petitions WHERE slug = $1", slug)
    return status


@pytest.mark.parametrize(
    ("status", "closes_at_passed", "target"),
    [
        (status, passed, target)
        for status in ("draft", "open", "closed")
        for target in ("open", "closed")
        for passed in (False, True)
    ],
)
async def test_the_command_and_the_api_move_a_petition_alike(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    worker_env: dict[str, str],
    status: str,
    closes_at_passed: bool,
    target: str,
) -> None:
    closes_at = datetime.now(UTC) + timedelta(days=-1 if closes_at_passed else 30)
    for slug in (VIA_API, VIA_CLI):
        await add_petition(pool, slug, status, closes_at)

    answer = await client.patch(
        f"{ADMIN}/petitions/{VIA_API}", json={"status": target}, headers=bearer(staff.admin)
    )
    command = countersign("petition", VERBS[target], VIA_CLI, env=worker_env)

    if answer.status == 200:
        assert command.returncode == 0, command.stderr
        assert command.stdout == f"petition {VIA_CLI} is {target}\n"
    else:
        error = (await answer.json())["error"]
        assert command.returncode == 1
        assert command.stderr == f"countersign: error: {error['message']} ({error['code']})\n"
        assert command.stdout == ""
    assert await status_of(pool, VIA_CLI) == await status_of(pool, VIA_API)
    assert await entries_of(pool, VIA_CLI) == await entries_of(pool, VIA_API)

    # What the issue names: a draft cannot be closed, by either door; and a petition whose
    # close date has passed cannot be (re)opened without a later one.
    if (status, target) == ("draft", "closed"):
        assert (answer.status, command.returncode) == (409, 1)
        assert command.stderr.endswith("(invalid_status_transition)\n")
    if closes_at_passed and target == "open":
        assert (answer.status, command.returncode) == (409, 1)
        assert command.stderr.endswith("(closes_at_passed)\n")
    if answer.status != 200:
        assert await status_of(pool, VIA_CLI) == status
        assert await entries_of(pool, VIA_CLI) == []


async def test_an_unknown_petition_is_refused_alike(
    client: Client, staff: StaffTokens, worker_env: dict[str, str]
) -> None:
    answer = await client.patch(
        f"{ADMIN}/petitions/nope", json={"status": "closed"}, headers=bearer(staff.admin)
    )
    assert answer.status == 404
    error = (await answer.json())["error"]
    for args in (["close", "nope"], ["open", "nope"], ["origins", "nope", "*"]):
        command = countersign("petition", *args, env=worker_env)
        assert command.returncode == 1
        assert command.stderr == f"countersign: error: {error['message']} ({error['code']})\n"


async def test_the_same_changes_write_the_same_audit_entries(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, worker_env: dict[str, str]
) -> None:
    def run(*args: str) -> None:
        result = countersign(*args, env=worker_env)
        assert result.returncode == 0, result.stderr

    async def api(method: str, path: str, body: dict[str, Any]) -> None:
        response = await client.request(
            method, f"{ADMIN}/petitions{path}", json=body, headers=bearer(staff.admin)
        )
        assert response.status in (200, 201), await response.text()

    run("petition", "create", "--slug", VIA_CLI, "--title", "T", "--goal", "500")
    await api("POST", "", {"slug": VIA_API, "title": "T", "goal": 500})
    run("petition", "origins", VIA_CLI, "https://partner.example")
    await api("PATCH", f"/{VIA_API}", {"allowed_origins": ["https://partner.example"]})
    for verb, status in (("open", "open"), ("close", "closed"), ("open", "open")):
        run("petition", verb, VIA_CLI)
        await api("PATCH", f"/{VIA_API}", {"status": status})

    expected = [
        ("petition.create", {"status": "draft"}),
        ("petition.update", {"fields": ["allowed_origins"]}),
        ("petition.update", {"fields": ["status"], "status": {"from": "draft", "to": "open"}}),
        ("petition.update", {"fields": ["status"], "status": {"from": "open", "to": "closed"}}),
        ("petition.update", {"fields": ["status"], "status": {"from": "closed", "to": "open"}}),
    ]
    assert await entries_of(pool, VIA_CLI) == expected
    assert await entries_of(pool, VIA_API) == expected
    actors = {row["actor"] for row in await pool.fetch("SELECT actor FROM audit_log")}
    assert actors == {"admin-test", cli_actor()}  # the token's name; the user at the command

    # `countersign audit` shows every one of them, newest first: the time, who, the
    # action, the petition, the rows and the details.
    shown = countersign("audit", env=worker_env)
    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines()[1:]]
    for slug in (VIA_CLI, VIA_API):
        listed = [(line[3], json.loads(line[-1])) for line in reversed(lines) if line[4] == slug]
        assert listed == expected
