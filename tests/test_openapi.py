"""The OpenAPI document: complete, valid, served with its docs page, exactly what the
server enforces, and fuzzed by schemathesis against a live API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from countersign_core.settings import Settings
from countersign_domain import patterns
from petition_api.app import create_app
from petition_api.docs import ASSETS
from petition_api.openapi import documented_routes, openapi_document, operation_of
from petition_api.schemas import SignatureSchema
from tests.support.http import AiohttpClient, error_of
from tests.support.processes import SpawnApi, SpawnWorker
from tests.support.schemathesis_data import create_data
from tests.support.values import TEST_SECRET

SCHEMATHESIS_CONFIG = Path(__file__).parent / "schemathesis.toml"


def test_every_route_is_documented_with_every_status_it_answers(settings: Settings) -> None:
    app = create_app(settings)
    routes = documented_routes(app)
    assert {path for _, path, _ in routes} >= {
        "/v1/petitions/{slug}",
        "/v1/petitions/{slug}/signatures",
        "/v1/petitions/{slug}/counts",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
    }
    for method, path, route in routes:
        operation = operation_of(route)
        assert operation is not None, f"{method} {path} is not documented"
        assert operation.responses, f"{method} {path} documents no answers"
    document = openapi_document(app)
    operations = [(m.upper(), p) for p, ops in document["paths"].items() for m in ops]
    assert sorted(operations) == sorted((m, p) for m, p, _ in routes)
    # Valid OpenAPI 3 (schemathesis refuses an invalid document).
    schemathesis.openapi.from_dict(document)


async def test_the_document_and_the_docs_page_are_served_by_the_app(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert "/v1/petitions/{slug}/signatures" in document["paths"]
    error_schema = document["components"]["schemas"]["Error"]
    assert error_schema["required"] == ["error"]

    page = await client.get("/docs")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    # Nothing from a CDN: every script and style is the app's own.
    assert "http" not in html
    for asset in re.findall(r'(?:src|href)="docs/([^"]+)"', html):
        response = await client.get(f"/docs/{asset}")
        assert response.status == 200, asset
        assert response.content_type == ASSETS[asset][1]
        assert len(await response.read()) > 100
    assert set(re.findall(r'(?:src|href)="docs/([^"]+)"', html)) == set(ASSETS)
    missing = await client.get("/docs/../../etc/passwd")
    assert missing.status == 404
    assert (await error_of(await client.get("/docs/nothing.js"), 404))["code"] == "not_found"


# -- the published patterns are the validators ------------------------------------------------

VALID = {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"}
FIELDS = {
    "name": patterns.NAME,
    "email": patterns.EMAIL,
    "country": patterns.COUNTRY,
    "postal_code": patterns.POSTAL_CODE,
    "source": patterns.SOURCE,
    "website": patterns.WEBSITE,
}
_schema = SignatureSchema()


def accepted(field: str, raw: str) -> bool:
    return field not in _schema.validate({**VALID, field: raw})


def documented(field: str, raw: str) -> bool:
    python = re.search(FIELDS[field], raw) is not None
    # What schemathesis and other JSON Schema tools read gives the same answer (for text it
    # can hold: a lone surrogate is not a Rust string).
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        schema = {"type": "string", "pattern": FIELDS[field]}
        assert jsonschema_rs.validator_for(schema).is_valid(raw) == python, (field, raw)
    return python


def edgy_text() -> st.SearchStrategy[str]:
    """Arbitrary text, with whitespace and control characters at the edges and inside."""
    edges = st.text(alphabet=sorted(patterns.WHITESPACE | patterns.CONTROL), max_size=3)
    core = st.one_of(
        st.text(),
        st.text(alphabet="wW.:/-=+@ aZ09comru_", max_size=20),
        *(st.from_regex(pattern) for pattern in FIELDS.values()),
    )
    return st.tuples(edges, core, edges).map("".join)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_documented_pattern_accepts_exactly_what_the_server_accepts(field: str) -> None:
    @settings(
        max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(edgy_text())
    def check(raw: str) -> None:
        assert documented(field, raw) == accepted(field, raw), repr(raw)

    check()


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("name", "Amal \ud800"),  # a lone surrogate: JSON can carry it, Postgres cannot store it
        ("name", "Amal 🙂"),  # beyond U+FFFF: no portable pattern can name it
        ("name", "x" * 120 + "  "),
        ("name", "  " + "x" * 121),
        ("email", "a@" + "b" * 300 + ".org"),
        ("country", "ß"),  # "ß".upper() == "SS", a country code, but not what was sent
        ("country", " fr\n"),
        ("postal_code", "   "),
        ("website", "x" * 500 + "\n"),
    ],
)
def test_edge_cases_agree(field: str, raw: str) -> None:
    assert documented(field, raw) == accepted(field, raw)


def test_the_whitespace_table_is_pythons() -> None:
    everything = (chr(code) for code in range(sys.maxunicode + 1))
    assert frozenset(c for c in everything if c.isspace()) == patterns.WHITESPACE


# -- schemathesis against the live API --------------------------------------------------------


async def test_schemathesis_finds_nothing_against_the_live_api(
    run_api: SpawnApi, spawn: SpawnWorker, pool: asyncpg.Pool, petition_id: int, tmp_path: Path
) -> None:
    await pool.execute(
        "INSERT INTO petitions (slug, title, status) VALUES ('closed-one', 'Closed', 'closed')"
    )
    # Credentials and identifiers, which tests/schemathesis.toml reads from the environment.
    data = await create_data(pool, TEST_SECRET)
    spawn()  # builds the counters, as in production
    api = await run_api()
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(SCHEMATHESIS_CONFIG),
        "run",
        f"{api.url}/openapi.json",
        "--max-examples",
        "25",
    ]
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=tmp_path,  # where it keeps its example database
        env={**os.environ, **data},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    lines = [json.loads(line) for line in api.log().splitlines()]
    assert not [line for line in lines if line.get("status", 0) >= 500]
    ours = [line for line in lines if line["logger"].startswith("petition_api")]
    assert not [line for line in ours if line["level"] == "ERROR"]
