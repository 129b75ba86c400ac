"""Public counts never single out one signature: breakdowns fold their small groups.

The attack: on a petition that counts at once, sign someone's address with a rare
country (BV) and watch /counts: a BV entry appearing says the address had not signed.
The total still moves by one (that cannot be hidden, and the README says so), but no
public breakdown shows a group smaller than COUNTERSIGN_PUBLIC_BREAKDOWN_MIN.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import asyncpg
import pytest
from bs4 import BeautifulSoup

from counter_worker.counts import fold_small_groups
from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from countersign_domain.petitions import PetitionChanges, update_petition
from petition_api.app import create_app
from tests.support.factories import SLUG, signer
from tests.support.http import COUNTS, SIGN, AiohttpClient, Client
from tests.support.processes import countersign


async def first_live_event(client: Client) -> dict[str, Any]:
    async with client.get(f"/v1/petitions/{SLUG}/live") as stream:
        while line := await stream.content.readline():
            if line.startswith(b"data: "):
                data: dict[str, Any] = json.loads(line[len(b"data: ") :])
                return data
    raise AssertionError("the stream ended without an event")


async def sign_many(client: Client, country: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        body = signer(email=f"{country.lower()}{i}@example.org", country=country)
        assert (await client.post(SIGN, json=body)).status == 201


async def test_a_rare_country_does_not_single_out_the_probe(
    client: Client, worker: CounterWorker
) -> None:
    await sign_many(client, "SY", 6)
    await worker.drain()
    before = await (await client.get(COUNTS)).json()
    assert before["countries"] == [{"code": "SY", "count": 6}]

    await sign_many(client, "BV", 1)  # the probe: someone else's address, a rare country
    await worker.drain()
    after = await (await client.get(COUNTS)).json()
    assert after["total"] == 7
    assert after["countries"] == [{"code": "SY", "count": 6}, {"code": "other", "count": 1}]
    live = await first_live_event(client)
    assert live["countries"] == after["countries"]
    # The petition's own JSON carries no breakdown at all.
    petition = await (await client.get(f"/v1/petitions/{SLUG}")).json()
    assert "countries" not in petition


@pytest.mark.parametrize(
    ("minimum", "expected"),
    [
        (0, [("SY", 6), ("BV", 1), ("FR", 1)]),
        (2, [("SY", 6), ("other", 2)]),
        (7, [("other", 8)]),
    ],
)
async def test_the_threshold_is_a_setting(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    worker: CounterWorker,
    petition_id: int,
    minimum: int,
    expected: list[tuple[str, int]],
) -> None:
    privacy = dataclasses.replace(settings.privacy, breakdown_min=minimum)
    client = await aiohttp_client(create_app(dataclasses.replace(settings, privacy=privacy)))
    await sign_many(client, "SY", 6)
    await sign_many(client, "BV", 1)
    await sign_many(client, "FR", 1)
    await worker.drain()
    body = await (await client.get(COUNTS)).json()
    assert [(c["code"], c["count"]) for c in body["countries"]] == expected


async def test_once_the_goal_is_reached_the_next_goal_is_shown(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    worker: CounterWorker,
    pool: asyncpg.Pool,
    petition_id: int,
) -> None:
    # Set before the app reads the petition (it caches it for a few seconds).
    changes: PetitionChanges = {"goal": 3, "next_goal": 10}
    await update_petition(pool, actor="test", slug=SLUG, changes=changes)
    client = await aiohttp_client(create_app(settings))
    await sign_many(client, "SY", 2)
    await worker.drain()
    before = await (await client.get(COUNTS)).json()
    assert (before["total"], before["goal"]) == (2, 3)
    await sign_many(client, "SY", 1, start=2)
    await worker.drain()
    reached = await (await client.get(COUNTS)).json()
    assert (reached["total"], reached["goal"]) == (3, 10)
    live = await first_live_event(client)
    assert (live["total"], live["goal"]) == (3, 10)
    # The petition's own page counts toward the same goal.
    page = await client.get(f"/petitions/{SLUG}", headers={"Accept-Language": "en"})
    words = " ".join(BeautifulSoup(await page.text(), "html.parser").get_text().split())
    assert "3 of 10 signatures" in words


def test_fold_small_groups() -> None:
    groups = {"FR": 5, "SY": 9, "BV": 1, "RU": 4, "DE": 5}
    assert fold_small_groups(groups, 5) == [("SY", 9), ("DE", 5), ("FR", 5), ("other", 5)]
    assert fold_small_groups(groups, 0)[-1] == ("BV", 1)
    assert fold_small_groups({}, 5) == []
    assert fold_small_groups({"SY": 3}, 1) == [("SY", 3)]


def test_creating_a_petition_without_confirmation_warns(
    worker_env: dict[str, str],
) -> None:
    plain = countersign("petition", "create", "--slug", "safe", "--title", "Safe", env=worker_env)
    assert plain.returncode == 0, plain.stderr
    assert "warning" not in plain.stderr
    bare = countersign(
        "petition",
        "create",
        "--slug",
        "bare",
        "--title",
        "Bare",
        "--no-confirmation",
        env=worker_env,
    )
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.strip() == "created petition bare (draft)"
    assert "warning: without confirmation a signature counts at once" in bare.stderr
    assert "only petitions that require confirmation are safe" in bare.stderr
