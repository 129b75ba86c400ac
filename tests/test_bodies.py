"""JSON bodies that the json module itself chokes on (nesting past the recursion limit,
integers past Python's digit limit) are a 400 invalid_json on every route that reads
JSON, public, partner and staff, like any other malformed body: never a 500, never a
traceback in the log."""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from countersign_domain.errors import InvalidJson
from countersign_domain.partners import create_partner, grant_petition
from petition_api.bodies import parse_json_object
from tests.support.factories import SLUG, StaffTokens, signature_rows, signer
from tests.support.http import ADMIN, SIGN, Client, bearer, error_of

# Under 16 KiB each (the default body limit), so the body reaches the parser.
DEEP = b'{"name": ' + b"[" * 8000 + b"]" * 8000 + b"}"
HUGE_INTEGER = b'{"goal": ' + b"9" * 5000 + b"}"
MALFORMED_SHAPES = {
    "deep": DEEP,
    "deep object": b'{"a": ' * 2000 + b"1" + b"}" * 2001,
    "huge integer": HUGE_INTEGER,
    "huge negative integer": b'{"goal": -' + b"1" * 5000 + b"}",
    "NaN": b'{"goal": NaN}',
    "Infinity": b'{"goal": -Infinity}',
}
JSON = {"Content-Type": "application/json"}


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )


def bodies() -> st.SearchStrategy[bytes]:
    """Bodies as clients send them: JSON of any shape, JSON cut short, arbitrary bytes."""
    encoded = json_values().map(lambda value: json.dumps(value).encode())
    cut = encoded.flatmap(lambda body: st.integers(0, len(body)).map(lambda n: body[:n]))
    return encoded | cut | st.binary(max_size=200)


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(bodies())
@example(DEEP)
@example(HUGE_INTEGER)
@example(MALFORMED_SHAPES["deep object"])
@example(b"[" * 100_000)
@example(b"\xff\xfe{}")
def test_any_body_is_an_object_or_invalid_json(body: bytes) -> None:
    try:
        parsed = parse_json_object(body)
    except InvalidJson:
        return
    assert isinstance(parsed, dict)


@pytest.mark.parametrize("body", MALFORMED_SHAPES.values(), ids=MALFORMED_SHAPES.keys())
def test_each_shape_is_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidJson):
        parse_json_object(body)


async def refused_as_invalid_json(
    client: Client, caplog: pytest.LogCaptureFixture, method: str, path: str, **headers: str
) -> None:
    for name, body in MALFORMED_SHAPES.items():
        with caplog.at_level(logging.DEBUG):
            response = await client.request(method, path, data=body, headers={**JSON, **headers})
            assert (await error_of(response, 400))["code"] == "invalid_json", name
        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not errors, (name, [r.getMessage() for r in errors])
        caplog.clear()


async def test_public_sign(
    client: Client, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await refused_as_invalid_json(client, caplog, "POST", SIGN)
    assert await signature_rows(pool) == []
    assert (await client.post(SIGN, json=signer())).status == 201  # and the API is fine


async def test_partner_sign(
    client: Client, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = await create_partner(
        pool, actor="test", name="Partner", source_code="partner", origins=[]
    )
    await grant_petition(pool, actor="tests", source_code="partner", slug=SLUG)
    await refused_as_invalid_json(client, caplog, "POST", SIGN, **bearer(key))
    assert await signature_rows(pool) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{ADMIN}/petitions"),
        ("PATCH", f"{ADMIN}/petitions/{SLUG}"),
        ("POST", f"{ADMIN}/petitions/{SLUG}/invalidations"),
        ("POST", f"{ADMIN}/erasures"),
    ],
)
async def test_staff_routes(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
) -> None:
    await refused_as_invalid_json(client, caplog, method, path, **bearer(staff.admin))
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0
