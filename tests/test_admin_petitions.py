"""Petition admin: create, edit, the status life cycle, and closing by date."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from marshmallow import Schema

from petition_api.admin.schemas import PetitionCreateSchema, PetitionUpdateSchema
from tests.support.factories import SLUG, StaffTokens
from tests.support.http import ADMIN, Client, bearer, error_of
from tests.support.processes import SpawnWorker, countersign
from tests.support.waiting import eventually

PETITIONS = f"{ADMIN}/petitions"
ONE = f"{PETITIONS}/{SLUG}"

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def soon(days: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def audit_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT actor, action, petition_id, details::text, row_count FROM audit_log ORDER BY id"
    )
    return [{**dict(row), "details": json.loads(row["details"])} for row in rows]


async def test_create_a_petition(client: Client, staff: StaffTokens, pool: asyncpg.Pool) -> None:
    body: dict[str, Any] = {
        "slug": "free-the-journalists",
        "title": "Free the journalists",
        "text": "They did their job.\n\nRelease them.",
        "target": "The Minister of Justice",
        "goal": 5000,
        "allowed_origins": ["https://partner.example.org", "http://localhost:3000"],
        "closes_at": soon(),
    }
    response = await client.post(PETITIONS, json=body, headers=bearer(staff.admin))
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["status"] == "draft"
    assert created["closed_at"] is None
    assert {key: created[key] for key in body if key != "closes_at"} == {
        key: value for key, value in body.items() if key != "closes_at"
    }
    assert datetime.fromisoformat(created["closes_at"]) == datetime.fromisoformat(body["closes_at"])
    row = await pool.fetchrow("SELECT * FROM petitions WHERE slug = 'free-the-journalists'")
    assert row["body"] == body["text"]
    assert row["allowed_origins"] == body["allowed_origins"]
    [entry] = await audit_rows(pool)
    assert entry["actor"] == "admin-test"
    assert entry["action"] == "petition.create"
    assert entry["petition_id"] == row["id"]

    listed = await client.get(PETITIONS, headers=bearer(staff.exporter))
    slugs = [p["slug"] for p in (await listed.json())["petitions"]]
    assert slugs == ["free-the-journalists", SLUG]  # drafts included, newest first
    one = await client.get(f"{PETITIONS}/free-the-journalists", headers=bearer(staff.admin))
    assert await one.json() == created

    again = await client.post(PETITIONS, json=body, headers=bearer(staff.admin))
    assert (await error_of(again, 409))["code"] == "petition_exists"
    missing = await client.get(f"{PETITIONS}/nope", headers=bearer(staff.admin))
    assert (await error_of(missing, 404))["code"] == "petition_not_found"


async def test_create_open_at_once(client: Client, staff: StaffTokens) -> None:
    response = await client.post(
        PETITIONS,
        json={"slug": "now", "title": "Now", "status": "open"},
        headers=bearer(staff.admin),
    )
    assert (await response.json())["status"] == "open"
    public = await client.get("/v1/petitions/now")
    assert public.status == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "No slug"}, "slug"),
        ({"slug": "no-title"}, "title"),
        ({"slug": "Bad Slug", "title": "x"}, "slug"),
        ({"slug": "x", "title": ""}, "title"),
        ({"slug": "x", "title": "x", "goal": 0}, "goal"),
        ({"slug": "x", "title": "x", "goal": "100"}, "goal"),
        ({"slug": "x", "title": "x", "goal": 2**31}, "goal"),
        ({"slug": "x", "title": "x", "next_goal": 0}, "next_goal"),
        ({"slug": "x", "title": "x", "next_goal": "2000"}, "next_goal"),
        ({"slug": "x", "title": "x", "next_goal": 1000}, "next_goal"),  # the default goal
        ({"slug": "x", "title": "x", "goal": 500, "next_goal": 499}, "next_goal"),
        ({"slug": "x", "title": "x", "closes_at": "next week"}, "closes_at"),
        ({"slug": "x", "title": "x", "allowed_origins": ["https://x.org/path"]}, "allowed_origins"),
        ({"slug": "x", "title": "x", "allowed_origins": "https://x.org"}, "allowed_origins"),
        ({"slug": "x", "title": "x", "status": "closed"}, "status"),
        ({"slug": "x", "title": "x", "owner": "me"}, "owner"),
    ],
)
async def test_create_rejects_bad_fields_one_by_one(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    response = await client.post(PETITIONS, json=body, headers=bearer(staff.admin))
    error = await error_of(response, 422)
    assert error["code"] == "validation_failed"
    assert set(error["fields"]) == {field}
    assert await pool.fetchval("SELECT count(*) FROM petitions") == 1


async def test_the_next_goal_is_above_the_goal_and_can_be_cleared(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    headers = bearer(staff.admin)
    created = await client.post(
        PETITIONS, json={"slug": "x", "title": "x", "goal": 100, "next_goal": 250}, headers=headers
    )
    assert created.status == 201, await created.text()
    assert ((await created.json())["goal"], (await created.json())["next_goal"]) == (100, 250)
    x = f"{PETITIONS}/x"
    # Whichever of the two changes, the next goal stays above the goal; the 422 names it.
    for change in ({"next_goal": 100}, {"goal": 250}, {"goal": 300, "next_goal": 299}):
        refused = await error_of(await client.patch(x, json=change, headers=headers), 422)
        assert (refused["code"], list(refused["fields"])) == ("validation_failed", ["next_goal"])
    row = await pool.fetchrow("SELECT goal, next_goal FROM petitions WHERE slug = 'x'")
    assert (row["goal"], row["next_goal"]) == (100, 250)
    raised = await client.patch(x, json={"goal": 300, "next_goal": 600}, headers=headers)
    assert ((await raised.json())["goal"], (await raised.json())["next_goal"]) == (300, 600)
    cleared = await client.patch(x, json={"next_goal": None}, headers=headers)
    assert (await cleared.json())["next_goal"] is None
    shown = await client.get(x, headers=bearer(staff.exporter))
    assert (await shown.json())["next_goal"] is None
    updates = [e for e in await audit_rows(pool) if e["action"] == "petition.update"]
    assert [e["details"]["fields"] for e in updates] == [["goal", "next_goal"], ["next_goal"]]
    # The database holds the same rule, whoever writes.
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE petitions SET next_goal = goal WHERE slug = 'x'")


async def test_a_close_date_already_passed_is_a_conflict(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    # 409 like opening a petition whose date has passed: valid in form, refused because
    # of the time of the request.
    past = {"closes_at": "2001-01-01T00:00:00Z"}
    headers = bearer(staff.admin)
    created = await client.post(
        PETITIONS, json={"slug": "x", "title": "x", **past}, headers=headers
    )
    assert (await error_of(created, 409))["code"] == "closes_at_passed"
    changed = await client.patch(ONE, json=past, headers=headers)
    assert (await error_of(changed, 409))["code"] == "closes_at_passed"
    assert await pool.fetchval("SELECT count(*) FROM petitions") == 1
    assert await pool.fetchval("SELECT closes_at FROM petitions") is None


async def test_bodies_must_be_json_objects(client: Client, staff: StaffTokens) -> None:
    headers = bearer(staff.admin)
    form = await client.post(PETITIONS, data={"slug": "x"}, headers=headers)
    assert (await error_of(form, 415))["code"] == "unsupported_media_type"
    broken = await client.post(
        PETITIONS, data=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    assert (await error_of(broken, 400))["code"] == "invalid_json"
    listed = await client.patch(ONE, json=["title"], headers=headers)
    assert (await error_of(listed, 400))["code"] == "invalid_json"


async def test_edit_each_field(client: Client, staff: StaffTokens, pool: asyncpg.Pool) -> None:
    changes = {
        "title": "Refer Syria to the International Criminal Court",
        "text": "New text",
        "target": "The UN Security Council",
        "goal": 250000,
        "allowed_origins": ["*"],
        "closes_at": soon(10),
    }
    response = await client.patch(ONE, json=changes, headers=bearer(staff.admin))
    assert response.status == 200, await response.text()
    edited = await response.json()
    for key in ("title", "text", "target", "goal", "allowed_origins"):
        assert edited[key] == changes[key]
    assert edited["status"] == "open"

    cleared = await client.patch(ONE, json={"closes_at": None}, headers=bearer(staff.admin))
    assert (await cleared.json())["closes_at"] is None
    row = await pool.fetchrow("SELECT title, body, closes_at FROM petitions WHERE slug = $1", SLUG)
    assert (row["title"], row["body"], row["closes_at"]) == (changes["title"], "New text", None)

    entries = [e for e in await audit_rows(pool) if e["action"] == "petition.update"]
    assert entries[0]["details"] == {"fields": sorted(changes)}
    assert entries[1]["details"] == {"fields": ["closes_at"]}

    slug_change = await client.patch(ONE, json={"slug": "other"}, headers=bearer(staff.admin))
    assert set((await error_of(slug_change, 422))["fields"]) == {"slug"}
    unknown = await client.patch(
        f"{PETITIONS}/nope", json={"title": "x"}, headers=bearer(staff.admin)
    )
    assert (await error_of(unknown, 404))["code"] == "petition_not_found"


async def test_confirmation_is_on_for_new_petitions_and_staff_can_switch_it(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    headers = bearer(staff.admin)
    body = {"slug": "opt-in", "title": "Opt in", "status": "open"}
    created = await (await client.post(PETITIONS, json=body, headers=headers)).json()
    assert created["require_confirmation"] is True
    signer = {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"}
    pending = await client.post("/v1/petitions/opt-in/signatures", json=signer)
    assert pending.status == 202

    edited = await client.patch(
        f"{PETITIONS}/opt-in", json={"require_confirmation": False}, headers=headers
    )
    assert (await edited.json())["require_confirmation"] is False
    assert (
        await pool.fetchval("SELECT require_confirmation FROM petitions WHERE slug = 'opt-in'")
        is False
    )
    not_a_bool = await client.patch(
        f"{PETITIONS}/opt-in", json={"require_confirmation": "no"}, headers=headers
    )
    assert set((await error_of(not_a_bool, 422))["fields"]) == {"require_confirmation"}


async def test_the_status_life_cycle(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    headers = bearer(staff.admin)
    draft = await client.post(PETITIONS, json={"slug": "life", "title": "L"}, headers=headers)
    assert (await draft.json())["status"] == "draft"
    url = f"{PETITIONS}/life"

    async def move(status: str) -> Any:
        return await client.patch(url, json={"status": status}, headers=headers)

    async def closed_at() -> datetime | None:
        value: datetime | None = await pool.fetchval(
            "SELECT closed_at FROM petitions WHERE slug = 'life'"
        )
        return value

    refused = await move("closed")  # a draft never took signatures: open it first
    assert (await error_of(refused, 409))["code"] == "invalid_status_transition"
    assert (await (await move("open")).json())["status"] == "open"
    assert await closed_at() is None
    assert (await error_of(await move("draft"), 409))["code"] == "invalid_status_transition"
    closed = await (await move("closed")).json()
    assert closed["status"] == "closed"
    assert closed["closed_at"] is not None
    assert await closed_at() is not None
    assert (await error_of(await move("draft"), 409))["code"] == "invalid_status_transition"
    assert (await move("closed")).status == 200  # staying put is fine
    reopened = await (await move("open")).json()
    assert reopened["status"] == "open"
    assert reopened["closed_at"] is None

    statuses = [
        e["details"].get("status")
        for e in await audit_rows(pool)
        if e["action"] == "petition.update"
    ]
    assert statuses == [
        {"from": "draft", "to": "open"},
        {"from": "open", "to": "closed"},
        None,
        {"from": "closed", "to": "open"},
    ]


async def test_reopening_needs_a_close_date_in_the_future(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await pool.execute(
        "UPDATE petitions SET status = 'closed', closes_at = now() - interval '1 day'"
    )
    headers = bearer(staff.admin)
    refused = await client.patch(ONE, json={"status": "open"}, headers=headers)
    assert (await error_of(refused, 409))["code"] == "closes_at_passed"
    reopened = await client.patch(
        ONE, json={"status": "open", "closes_at": soon()}, headers=headers
    )
    assert (await reopened.json())["status"] == "open"


async def test_a_petition_closes_by_itself_when_its_date_passes(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, spawn: SpawnWorker
) -> None:
    closes_at = datetime.now(UTC) - timedelta(seconds=30)
    await pool.execute("UPDATE petitions SET closes_at = $1", closes_at)
    # Reads treat it as closed at once...
    one = await client.get(ONE, headers=bearer(staff.admin))
    assert (await one.json())["status"] == "closed"
    assert await pool.fetchval("SELECT status FROM petitions") == "open"

    spawn()  # ...and a running worker makes the row say so, dated when it really closed.

    async def closed() -> bool:
        return bool(await pool.fetchval("SELECT status = 'closed' FROM petitions"))

    await eventually(closed)
    assert await pool.fetchval("SELECT closed_at FROM petitions") == closes_at


async def test_cli_close_and_open_keep_closed_at(
    worker_env: dict[str, str], pool: asyncpg.Pool, petition_id: int
) -> None:
    assert countersign("petition", "close", SLUG, env=worker_env).returncode == 0
    assert await pool.fetchval("SELECT closed_at FROM petitions") is not None
    assert countersign("petition", "open", SLUG, env=worker_env).returncode == 0
    assert await pool.fetchval("SELECT closed_at FROM petitions") is None


@pytest.mark.parametrize(
    ("route", "schema"),
    [
        (f"POST {PETITIONS}", PetitionCreateSchema()),
        (f"PATCH {PETITIONS}/{{slug}}", PetitionUpdateSchema()),
    ],
)
def test_the_readme_names_every_field_a_petition_takes(route: str, schema: Schema) -> None:
    [row] = [line for line in README.splitlines() if line.startswith(f"| `{route}` |")]
    fields = {field.data_key or name for name, field in schema.fields.items()}
    assert "require_confirmation" in fields
    assert {name for name in fields if f"`{name}`" not in row} == set()


async def test_the_command_lists_shows_and_edits_as_the_api_does(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, worker_env: dict[str, str]
) -> None:
    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(countersign, "petition", *args, env=worker_env)

    async def api_view() -> dict[str, Any]:
        return dict(await (await client.get(ONE, headers=bearer(staff.exporter))).json())

    await client.post(
        PETITIONS, json={"slug": "draft-one", "title": "D"}, headers=bearer(staff.admin)
    )
    listed = (await run("list")).stdout.splitlines()
    assert listed[0].split() == ["slug", "status", "goal", "confirmation", "created", "title"]
    answer = await (await client.get(PETITIONS, headers=bearer(staff.exporter))).json()
    assert [line.split()[:2] for line in listed[1:]] == [
        [p["slug"], p["status"]] for p in answer["petitions"]
    ]

    edited = await run(
        "edit",
        SLUG,
        "--title",
        "Refer Syria to the International Criminal Court",
        "--target",
        "The UN Security Council",
        "--goal",
        "250000",
        "--next-goal",
        "500000",
        "--closes-at",
        "2099-01-01",
        "--no-confirmation",
        "--origin",
        "https://Example.org",
    )
    assert edited.stdout == (
        f"petition {SLUG} changed: allowed_origins, closes_at, goal, next_goal, "
        "require_confirmation, target, title\n"
    ), edited.stderr
    petition = await api_view()
    assert {key: petition[key] for key in ("title", "target", "goal", "next_goal")} == {
        "title": "Refer Syria to the International Criminal Court",
        "target": "The UN Security Council",
        "goal": 250000,
        "next_goal": 500000,
    }
    assert petition["require_confirmation"] is False
    assert petition["allowed_origins"] == ["https://example.org"]
    assert datetime.fromisoformat(petition["closes_at"]) == datetime(2099, 1, 1, tzinfo=UTC)
    [entry] = [e for e in await audit_rows(pool) if e["action"] == "petition.update"]
    assert entry["actor"].startswith("cli:")
    assert entry["details"] == {
        "fields": [
            "allowed_origins",
            "closes_at",
            "goal",
            "next_goal",
            "require_confirmation",
            "target",
            "title",
        ]
    }

    shown = (await run("show", SLUG)).stdout.splitlines()
    assert shown[:7] == [
        f"slug          {SLUG}",
        "title         Refer Syria to the International Criminal Court",
        "status        open",
        "target        The UN Security Council",
        "goal          250,000",
        "next goal     500,000",
        "confirmation  off",
    ]
    assert shown[7] == "closes at     2099-01-01 00:00:00+0000"
    assert "origins       https://example.org" in shown

    cleared = await run("edit", SLUG, "--no-closes-at", "--no-origins")
    assert cleared.stdout == f"petition {SLUG} changed: allowed_origins, closes_at\n"
    petition = await api_view()
    assert (petition["closes_at"], petition["allowed_origins"]) == (None, [])

    # What the API refuses, the command refuses in the same words.
    refused = await error_of(
        await client.patch(ONE, json={"goal": 0}, headers=bearer(staff.admin)), 422
    )
    too_small = await run("edit", SLUG, "--goal", "0")
    assert (too_small.returncode, too_small.stderr) == (
        1,
        f"countersign: error: {refused['message']} ({refused['code']}): "
        f"goal: {' '.join(refused['fields']['goal'])}\n",
    )
    missing = await run("edit", "nope", "--title", "x")
    assert missing.stderr == "countersign: error: no such petition (petition_not_found)\n"
    nothing = await run("edit", SLUG)
    assert nothing.returncode == 2
    assert "nothing to change" in nothing.stderr
    assert (await api_view())["goal"] == 250000
