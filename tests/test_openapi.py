"""The OpenAPI document: complete, valid, served with its docs page, exactly what the
server enforces, and fuzzed by schemathesis against a live API."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from countersign_core.settings import Settings
from countersign_domain import patterns
from countersign_domain.errors import (
    PetitionClosed,
    PetitionNotFound,
    Problem,
    ValidationFailed,
)
from petition_api.app import create_app
from petition_api.docs import ASSETS
from petition_api.openapi import (
    Operation,
    documented_routes,
    error_replies,
    openapi_document,
    operation_of,
)
from petition_api.petitions import public_petition
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


# -- every problem a handler can raise is documented ---------------------------------------

FIRST_PARTY = ("petition_api", "countersign_domain", "countersign_core", "counter_worker", "tests")
_UNKNOWN = object()


def raisable_problems(handler: Callable[..., object]) -> set[type[Problem]]:
    """The problems a handler can raise as far as its code says: the ones it names, and the
    ones named by the first-party functions and classes it reaches by name (an AppKey leads
    to the class it holds). A marshmallow ``load`` can raise ValidationFailed, unless a
    ``try`` around it catches ValidationError. Decorators (the documentation) are not read."""
    found: set[type[Problem]] = set()
    seen: set[object] = set()
    todo: list[object] = [handler]
    while todo:
        code = todo.pop()
        if code in seen:
            continue
        seen.add(code)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(code)))  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue  # no source: a builtin, or generated code
        for definition in tree.body:
            if isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                definition.decorator_list = []
        namespace = vars(sys.modules[code.__module__])
        for node, validation_caught in _walk(tree):
            if _is_load(node, namespace) and not validation_caught:
                found.add(ValidationFailed)
            value = _resolve(node, namespace)
            if isinstance(value, web.AppKey):
                value = value._t  # the type the key was declared with
            if isinstance(value, type) and issubclass(value, Problem):
                if value is not Problem:
                    found.add(value)
            elif (inspect.isfunction(value) or inspect.isclass(value)) and str(
                value.__module__
            ).startswith(FIRST_PARTY):
                todo.append(value)
    return found


def _walk(node: ast.AST, caught: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, and whether a ``try`` around it catches ValidationError."""
    yield node, caught
    catches = isinstance(node, ast.Try) and any(
        handler.type is not None and "ValidationError" in ast.unparse(handler.type)
        for handler in node.handlers
    )
    for child in ast.iter_child_nodes(node):
        inside_try = catches and child in getattr(node, "body", ())
        yield from _walk(child, caught or inside_try)


def _resolve(node: ast.AST, namespace: dict[str, object]) -> object:
    if isinstance(node, ast.Name):
        return namespace.get(node.id, _UNKNOWN)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, namespace)
        return _UNKNOWN if base is _UNKNOWN else getattr(base, node.attr, _UNKNOWN)
    return _UNKNOWN


def _is_load(node: ast.AST, namespace: dict[str, object]) -> bool:
    """A call of ``<schema>.load(...)``; a receiver that cannot be resolved (a parameter)
    is taken for a schema."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr != "load":
        return False
    receiver = node.func.value
    if isinstance(receiver, ast.Call):
        made = _resolve(receiver.func, namespace)
        return isinstance(made, type) and issubclass(made, Schema)
    value = _resolve(receiver, namespace)
    return value is _UNKNOWN or isinstance(value, Schema)


def undocumented_problems(handler: Callable[..., object], operation: Operation) -> set[str]:
    documented = {p.code for reply in operation.responses.values() for p in reply.problems}
    return {problem.code for problem in raisable_problems(handler)} - documented


def test_every_problem_a_handler_can_raise_is_documented(settings: Settings) -> None:
    undocumented = {
        f"{method} {path}": missing
        for method, path, route in documented_routes(create_app(settings))
        if (operation := operation_of(route)) is not None
        and (missing := undocumented_problems(route.handler, operation))
    }
    assert not undocumented


async def _closed_unless_found(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    _refuse_closed(petition.effective_status)
    fields = SignatureSchema().load(await request.json())
    try:
        SignatureSchema().load(fields)
    except ValidationError:  # a refusal of its own: not a problem
        return web.json_response({}, status=422)
    return web.json_response({})


def _refuse_closed(status: str) -> None:
    if status != "open":
        raise PetitionClosed()


def test_the_check_finds_a_problem_raised_through_helpers_and_left_undocumented() -> None:
    only_not_found = Operation("A handler", error_replies([PetitionNotFound]))
    assert raisable_problems(_closed_unless_found) == {
        PetitionNotFound,
        PetitionClosed,
        ValidationFailed,
    }
    assert undocumented_problems(_closed_unless_found, only_not_found) == {
        "petition_closed",
        "validation_failed",
    }


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


def test_the_database_checks_the_slug_and_source_code_patterns_of_the_domain() -> None:
    sql = "".join(path.read_text() for path in (Path(__file__).parents[1] / "sql").glob("*.sql"))
    assert f"CHECK (slug ~ '{patterns.SLUG}')" in sql
    assert f"CHECK (source_code ~ '{patterns.SOURCE_CODE}')" in sql


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
