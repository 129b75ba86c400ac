"""Logs: one JSON object per line, a request id on every answer and every line written for
it, and never a signer's email, name or address, whatever a client sends, in the API's
and the worker's logs alike."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from tests.support.counts import assert_converges
from tests.support.factories import SLUG
from tests.support.http import COUNTS, SIGN
from tests.support.processes import SpawnApi, SpawnWorker
from tests.support.values import TEST_SECRET

CLIENT = "127.0.0.3"  # our own source address, so that a leak of it is unmistakable
WELL_FORMED_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def people(n: int) -> list[dict[str, str]]:
    """Signers whose every detail is unique to this run."""
    found = []
    for i in range(n):
        tag = secrets.token_hex(4)
        found.append(
            {
                "name": f"Zofia Quintero-{tag}",
                "email": f"zq.{tag}@example.org",
                "address": f"203.0.113.{i + 1}",
                "v6": f"2001:db8:{i + 1:x}::{tag[:4]}",
            }
        )
    return found


async def send_malformed_request(port: int, secret: str) -> None:
    """A request the HTTP parser itself refuses (a NUL in a header), quoting a signer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(CLIENT, 0))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Who: {secret}\x00\r\n\r\n".encode())
    await writer.drain()
    await reader.read(1000)
    writer.close()


async def test_no_email_name_or_address_in_any_log_line(
    run_api: SpawnApi,
    spawn: SpawnWorker,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    petition_id: int,
) -> None:
    worker = spawn(COUNTERSIGN_LOG_LEVEL="DEBUG")
    api = await run_api(
        "--workers",
        "2",
        COUNTERSIGN_LOG_LEVEL="DEBUG",
        COUNTERSIGN_TRUSTED_PROXIES=f"{CLIENT}/32",
        COUNTERSIGN_RATE_LIMIT_ALLOW="",
        COUNTERSIGN_RATE_LIMIT_IP_BURST="1/60",
    )
    signers = people(20)
    connector = aiohttp.TCPConnector(local_addr=(CLIENT, 0), force_close=True)
    answers: list[aiohttp.ClientResponse] = []
    async with aiohttp.ClientSession(api.url, connector=connector) as session:

        async def send(method: str, path: str, **kwargs: Any) -> None:
            async with session.request(method, path, **kwargs) as response:
                await response.read()
                answers.append(response)

        for person in signers:
            via = {"X-Forwarded-For": person["address"], "User-Agent": person["name"]}
            body = {"name": person["name"], "email": person["email"], "country": "FR"}
            await send("POST", SIGN, json=body, headers=via)  # signed
            await send("POST", SIGN, json=body, headers=via)  # the same again (a suspect now)
            await send(  # as a form, from IPv6, the address in other case: a duplicate
                "POST",
                SIGN,
                data={**body, "email": person["email"].upper()},
                headers={"X-Forwarded-For": person["v6"]},
            )
            invalid = [
                {**body, "name": f"{person['name']} https://{person['email']}"},
                {**body, "email": f"{person['name']} <{person['email']}"},
                {**body, "country": person["name"][:20]},
                {**body, "postal_code": person["email"]},
                {**body, "extra": person["email"]},
            ]
            for wrong in invalid:
                await send("POST", SIGN, json=wrong, headers=via)
            await send(
                "POST",
                SIGN,
                data=f'{{"email": "{person["email"]}", '.encode(),
                headers={**via, "Content-Type": "application/json"},
            )
            await send(
                "GET", f"{COUNTS}?email={person['email']}&name={person['name']}", headers=via
            )
            await send("GET", f"/v1/petitions/{person['email']}", headers=via)
            await send("DELETE", f"/v1/petitions/{SLUG}?who={person['name']}", headers=via)
            await send("GET", "/healthz", headers={"X-Request-ID": person["email"]})
        await send("POST", SIGN, json={**body, "email": "zq@mailinator.com"}, headers=via)
        await send("GET", "/readyz", headers={"X-Request-ID": WELL_FORMED_ID})
    await send_malformed_request(int(api.url.rsplit(":", 1)[1]), signers[0]["email"])

    assert {response.status for response in answers} >= {201, 200, 400, 404, 405, 422}
    # Every answer carries a request id; a well-formed one offered is kept, any other not.
    ids = [response.headers["X-Request-ID"] for response in answers]
    assert ids[-1] == WELL_FORMED_ID
    assert not [i for i in ids if "@" in i]
    await assert_converges(pool, redis, layout, petition_id)
    api.stop()  # everything written and flushed

    api_lines = api.log().splitlines()
    worker_lines = worker.log().splitlines()
    records = [json.loads(line) for line in api_lines + worker_lines]  # all of them JSON
    for record in records:
        assert {"time", "level", "logger", "process", "message", "request_id"} <= set(record)
    access = [r for r in records if r["logger"] == "petition_api.access"]
    assert len(access) >= len(answers) - 1  # the parser's own 400 never reaches the app
    for record in access:
        assert {"method", "route", "status", "duration"} <= set(record)
    assert [r["route"] for r in access if r["request_id"] == WELL_FORMED_ID] == ["/readyz"]
    assert any(r["logger"] == "aiohttp.server" for r in records)  # the malformed request

    secret_values = [TEST_SECRET, CLIENT]
    for person in signers:
        local_part = person["email"].split("@")[0]
        secret_values += [person["name"], local_part, person["address"], person["v6"]]
        secret_values += [person["name"].split("-")[1]]  # the unique part, however quoted
    text = "\n".join(api_lines + worker_lines).lower()
    leaks = [value for value in secret_values if value.lower() in text]
    assert not leaks, leaks
    assert "mailinator" not in text
    assert "example.org" not in text


async def test_a_request_id_is_kept_only_when_well_formed(client: Any) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": WELL_FORMED_ID})
    assert kept.headers["X-Request-ID"] == WELL_FORMED_ID
    for offered in ["amal@example.org", "short", "x" * 65, "Amal Haddad 1234567890"]:
        replaced = await client.get("/healthz", headers={"X-Request-ID": offered})
        assert replaced.headers["X-Request-ID"] != offered
        assert len(replaced.headers["X-Request-ID"]) == 32
    first = (await client.get("/healthz")).headers["X-Request-ID"]
    second = (await client.get("/healthz")).headers["X-Request-ID"]
    assert first != second
    missing = await client.get("/nothing")  # errors carry one too
    assert missing.status == 404
    assert len(missing.headers["X-Request-ID"]) == 32
