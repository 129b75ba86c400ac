"""The signatures export: exact content per filter, safe cells, any script, the email
rule, a cut-off download, memory at 200,000 rows, and the command-line export."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import pycountry
import pytest

from countersign_core.settings import Settings
from petition_api.app import create_app
from petition_api.appkeys import DB
from tests.support.factories import SLUG, StaffTokens, hasher, insert_signature
from tests.support.http import ADMIN, AiohttpClient, Client, bearer, csv_header, error_of, read_csv
from tests.support.processes import SpawnApi, countersign, countersign_on_a_terminal
from tests.support.waiting import eventually

EXPORT = f"{ADMIN}/petitions/{SLUG}/signatures.csv"
COLUMNS = [
    "signed_at",
    "name",
    "country_code",
    "country_name",
    "postal_code",
    "source",
    "consent_updates",
]
START = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    assert country is not None
    return str(country.name)


async def seed(pool: asyncpg.Pool, petition_id: int) -> None:
    """48 counted signatures over four countries, three sources and four days, and one
    of each kind that does not count."""
    countries, sources = ("SY", "FR", "RU", "CN"), (None, "partner-a", "newsroom")
    for i in range(48):
        await insert_signature(
            pool,
            hasher,
            petition_id,
            name=f"Signer {i}",
            email=f"signer{i}@example.org",
            country=countries[i % 4],
            source=sources[i % 3],
            postal_code=f"{10000 + i}" if i % 2 else None,
            created_at=START + timedelta(hours=2 * i),
            consent_updates=i % 5 == 0,
        )
    for i, flag in enumerate(
        [
            "confirmed_at = NULL",
            "suspect_reason = 'burst'",
            "invalidated_at = now(), invalid_reason = 'bot'",
            "erased_at = now(), name = NULL, email = NULL",
        ]
    ):
        signature = await insert_signature(
            pool, hasher, petition_id, email=f"uncounted{i}@example.org", created_at=START
        )
        # The flag is a constant of this test, never input.
        await pool.execute(f"UPDATE signatures SET {flag} WHERE id = $1", signature)  # noqa: S608


async def expected_rows(
    pool: asyncpg.Pool, *, include_email: bool = False, **filters: Any
) -> list[dict[str, str]]:
    """The counted signatures matching ``filters``, filtered and formatted here in
    Python rather than by the export's SQL."""
    rows = await pool.fetch(
        """SELECT created_at, name, country, postal_code, source, email, consent_updates
           FROM signatures WHERE counted ORDER BY created_at, id"""
    )
    expected = []
    for row in rows:
        if "country" in filters and row["country"] != filters["country"]:
            continue
        if "source" in filters and row["source"] != filters["source"]:
            continue
        if "signed_after" in filters and row["created_at"] < filters["signed_after"]:
            continue
        if "signed_before" in filters and row["created_at"] >= filters["signed_before"]:
            continue
        if "consent" in filters and row["consent_updates"] != (filters["consent"] == "yes"):
            continue
        line = {
            "signed_at": row["created_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "name": row["name"],
            "country_code": row["country"],
            "country_name": country_name(row["country"]),
            "postal_code": row["postal_code"] or "",
            "source": row["source"] or "",
            "consent_updates": "yes" if row["consent_updates"] else "no",
        }
        if include_email:
            line["email"] = row["email"]
        expected.append(line)
    return expected


def as_query(filters: dict[str, Any]) -> dict[str, str]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in filters.items()
    }


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"country": "FR"},
        {"source": "newsroom"},
        {"signed_after": START + timedelta(days=2)},
        {"signed_before": START + timedelta(days=1)},
        {"signed_after": START + timedelta(hours=10), "signed_before": START + timedelta(hours=30)},
        {"country": "SY", "source": "partner-a", "signed_after": START + timedelta(days=1)},
        {"country": "DE"},
        # Exactly the people who agreed to hear from the campaign, and the others.
        {"consent": "yes"},
        {"consent": "no", "country": "FR"},
    ],
)
async def test_export_is_exactly_the_counted_signatures_for_each_filter(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    petition_id: int,
    filters: dict[str, Any],
) -> None:
    await seed(pool, petition_id)
    response = await client.get(EXPORT, params=as_query(filters), headers=bearer(staff.exporter))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="{SLUG}-signatures.csv"' in response.headers["Content-Disposition"]
    body = await response.read()
    assert csv_header(body) == COLUMNS
    assert read_csv(body) == await expected_rows(pool, **filters)


async def test_country_filter_is_case_insensitive(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await seed(pool, petition_id)
    response = await client.get(EXPORT, params={"country": "fr"}, headers=bearer(staff.admin))
    assert read_csv(await response.read()) == await expected_rows(pool, country="FR")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("country=XX", "country"),
        ("country=France", "country"),
        ("source=Partner%20A", "source"),
        ("signed_after=yesterday", "signed_after"),
        ("signed_before=2025-13-01", "signed_before"),
        ("include=phone", "include"),
        ("countries=FR", "countries"),
        ("country=FR&country=SY", "country"),
    ],
)
async def test_bad_filters_are_422_and_export_nothing(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, query: str, field: str
) -> None:
    response = await client.get(f"{EXPORT}?{query}", headers=bearer(staff.admin))
    error = await error_of(response, 422)
    assert set(error["fields"]) == {field}
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_a_window_ending_before_it_starts_exports_nothing(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    # Not a 422: no JSON Schema in the OpenAPI document can compare two parameters, so
    # what it allows must be accepted; such a window simply holds no signature.
    await seed(pool, petition_id)
    query = "signed_after=2025-03-02&signed_before=2025-03-01"
    response = await client.get(f"{EXPORT}?{query}", headers=bearer(staff.admin))
    assert response.status == 200
    assert read_csv(await response.read()) == []


async def test_emails_only_for_admins_and_only_when_asked(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await seed(pool, petition_id)
    refused = await client.get(EXPORT, params={"include": "email"}, headers=bearer(staff.exporter))
    assert (await error_of(refused, 403))["code"] == "insufficient_role"
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0

    plain = await (await client.get(EXPORT, headers=bearer(staff.admin))).read()
    assert "email" not in csv_header(plain)
    assert b"@example.org" not in plain

    with_email = await client.get(
        EXPORT, params={"include": "email", "country": "RU"}, headers=bearer(staff.admin)
    )
    body = await with_email.read()
    assert csv_header(body) == [*COLUMNS, "email"]
    assert read_csv(body) == await expected_rows(pool, include_email=True, country="RU")


async def test_exports_are_audited_without_personal_data(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await seed(pool, petition_id)
    for params, token in (({"country": "SY"}, staff.exporter), ({"include": "email"}, staff.admin)):
        await (await client.get(EXPORT, params=params, headers=bearer(token))).read()
    rows = await pool.fetch("SELECT * FROM audit_log ORDER BY id")
    assert [(r["actor"], r["action"], r["petition_id"], r["row_count"]) for r in rows] == [
        ("exporter-test", "export", petition_id, 12),
        ("admin-test", "export", petition_id, 48),
    ]
    assert [json.loads(r["details"]) for r in rows] == [
        {
            "via": "http",
            "format": "csv",
            "filters": {"country": "SY"},
            "include_email": False,
            "outcome": "completed",
        },
        {
            "via": "http",
            "format": "csv",
            "filters": {},
            "include_email": True,
            "outcome": "completed",
        },
    ]


async def test_an_unknown_petition_is_404(client: Client, staff: StaffTokens) -> None:
    response = await client.get(
        f"{ADMIN}/petitions/nope/signatures.csv", headers=bearer(staff.admin)
    )
    assert (await error_of(response, 404))["code"] == "petition_not_found"


# -- what a spreadsheet sees --------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://x")', "+1 555", "-2+3", "@SUM(A1)", "\tindented", "\rreturn"]


async def test_cells_a_spreadsheet_would_run_are_neutralised(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    # Hand-loaded or imported rows can hold anything: the sign endpoint's checks are not
    # the export's defence.
    for i, value in enumerate(FORMULAS):
        await insert_signature(
            pool,
            hasher,
            petition_id,
            name=value,
            email=f"=f{i}@example.org",
            postal_code=value,
            source=f"-src{i}",
            created_at=START + timedelta(minutes=i),
        )
    await insert_signature(
        pool, hasher, petition_id, name="Ali = Bob - @home", email="ok@example.org"
    )
    response = await client.get(EXPORT, params={"include": "email"}, headers=bearer(staff.admin))
    rows = read_csv(await response.read())
    assert [row["name"] for row in rows] == [
        *("'" + value for value in FORMULAS),
        "Ali = Bob - @home",
    ]
    assert [row["postal_code"] for row in rows[:-1]] == ["'" + value for value in FORMULAS]
    assert [row["source"] for row in rows[:-1]] == [f"'-src{i}" for i in range(len(FORMULAS))]
    assert [row["email"] for row in rows[:-1]] == [
        f"'=f{i}@example.org" for i in range(len(FORMULAS))
    ]


async def test_names_in_any_script_survive_the_round_trip(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    names = [
        "أمل حداد",  # Arabic
        "Анна Петрова",  # Russian
        "王小明",  # Chinese
        "Nguyễn Thị Minh Khai",
        'Zoë O\'Brien, "Zo"',
        "עדי לוי",
    ]
    for i, name in enumerate(names):
        signed = await client.post(
            f"/v1/petitions/{SLUG}/signatures",
            json={"name": name, "email": f"script{i}@example.org", "country": "SY"},
        )
        assert signed.status == 201
    response = await client.get(EXPORT, headers=bearer(staff.exporter))
    body = await response.read()
    assert [row["name"] for row in read_csv(body)] == names


async def test_countries_table_equals_pycountry(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch("SELECT code, name FROM countries ORDER BY code")
    current = sorted((c.alpha_2, c.name) for c in pycountry.countries)
    assert [(row["code"], row["name"]) for row in rows] == current


# -- big exports ---------------------------------------------------------------------------------


async def add_bulk(pool: asyncpg.Pool, petition_id: int, n: int) -> None:
    """n counted signatures with long names in several scripts (~200 bytes a row)."""
    await pool.execute(
        """INSERT INTO signatures (petition_id, name, email, email_hash, country, source,
                                   postal_code, created_at)
           SELECT $1,
                  (ARRAY['أمل حداد', 'Анна Петрова', '王小明', 'Marie Dupont'])[1 + g % 4]
                      || ' ' || repeat('ß', 20 + g % 30) || ' ' || g,
                  'bulk' || g || '@example.org', sha256(g::text::bytea),
                  (ARRAY['SY', 'FR', 'RU', 'CN', 'DE'])[1 + g % 5], 'partner-' || g % 7,
                  lpad((g % 99999)::text, 5, '0'),
                  timestamptz '2025-01-01' + g * interval '1 second'
           FROM generate_series(1, $2) AS g""",
        petition_id,
        n,
    )


async def copy_running(pool: asyncpg.Pool) -> bool:
    """Whether an export's COPY is running in this test's database."""
    running: bool = await pool.fetchval(
        """SELECT count(*) > 0 FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND state = 'active' AND query LIKE 'COPY (%'"""
    )
    return running


async def cut_off_half_way(
    session: aiohttp.ClientSession | Client, url: str, token: str, pool: asyncpg.Pool
) -> None:
    """Download half of the export, check its COPY is running, hang up, and wait for the
    COPY to be gone from Postgres."""
    async with session.get(url, headers=bearer(token)) as response:
        size = len(await response.read())
    response = await session.get(url, headers=bearer(token))
    received = 0
    while received < size // 2:
        received += len(await response.content.read(1 << 16))
    # The reader pauses: the COPY waits for it, still running in Postgres.
    await eventually(lambda: copy_running(pool))
    response.close()

    async def stopped() -> bool:
        return not await copy_running(pool)

    await eventually(stopped)


async def last_export_outcome(pool: asyncpg.Pool) -> str:
    outcome: str = await pool.fetchval(
        "SELECT details->>'outcome' FROM audit_log WHERE action = 'export' ORDER BY id DESC"
    )
    return outcome


async def export_rows(session: aiohttp.ClientSession | Client, url: str, token: str) -> int:
    async with session.get(url, params={"country": "SY"}, headers=bearer(token)) as response:
        return len(read_csv(await response.read()))


async def test_a_download_cut_off_half_way_leaves_nothing_running(
    run_api: SpawnApi, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await add_bulk(pool, petition_id, 150_000)
    api = await run_api(COUNTERSIGN_DB_POOL_SIZE="2")
    async with aiohttp.ClientSession() as session:
        url = api.url + EXPORT
        for _ in range(2):  # as many as the API has connections
            await cut_off_half_way(session, url, staff.admin, pool)
            assert await last_export_outcome(pool) == "interrupted"
        # Then more exports in a row than the pool has connections: none was lost.
        for _ in range(3):
            assert await asyncio.wait_for(export_rows(session, url, staff.admin), 60) == 30_000


async def test_a_cancelled_export_handler_also_frees_its_connection(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    petition_id: int,
) -> None:
    # The test server cancels a handler whose client leaves (aiohttp's option, off in
    # production): the COPY is then stopped by the cancellation rather than by a write.
    app = create_app(
        dataclasses.replace(settings, api=dataclasses.replace(settings.api, db_pool_size=2))
    )
    client = await aiohttp_client(app)
    await add_bulk(pool, petition_id, 150_000)
    await cut_off_half_way(client, EXPORT, staff.admin, pool)
    db = app[DB]

    async def all_idle() -> bool:
        return bool(db.get_idle_size() == db.get_size())

    await eventually(all_idle)
    assert await last_export_outcome(pool) == "interrupted"
    for _ in range(3):
        assert await export_rows(client, EXPORT, staff.admin) == 30_000


# A bound for the API process's growth while it streams (about 1 MB is typical); the
# file is more than twice as big, so an export that held it in memory would exceed it.
MEMORY_BOUND = 12 * 2**20


async def test_a_200k_row_export_streams_in_flat_memory(
    run_api: SpawnApi, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await add_bulk(pool, petition_id, 200_000)
    api = await run_api(COUNTERSIGN_LOG_LEVEL="WARNING")
    async with aiohttp.ClientSession() as session:
        process = psutil.Process(api.pid)
        url = api.url + EXPORT
        # Warm up: the first export loads code and fills caches of its own.
        async with session.get(
            url, params={"source": "partner-0"}, headers=bearer(staff.admin)
        ) as warm:
            await warm.read()
        baseline = peak = process.memory_info().rss
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        size = lines = 0
        async with session.get(url, headers=bearer(staff.admin)) as response:
            assert response.status == 200
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                lines += chunk.count(b"\n")
        done.set()
        await sampler
    assert lines == 200_001  # the header and every row
    assert size > 2 * MEMORY_BOUND
    growth = peak - baseline
    assert growth < MEMORY_BOUND, f"grew {growth / 2**20:.1f} MB for {size / 2**20:.0f} MB"


# -- the command line -----------------------------------------------------------------------


async def test_cli_export_writes_the_file_and_audits_it(
    worker_env: dict[str, str], pool: asyncpg.Pool, petition_id: int, tmp_path: Path
) -> None:
    await seed(pool, petition_id)
    out = tmp_path / "delivery.csv"
    result = countersign("export", SLUG, "--out", str(out), "--country", "RU", env=worker_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "exporting refer-syria-to-icc" in result.stderr  # the progress bar's label
    assert "exported 12 signatures" in result.stderr
    assert read_csv(out.read_bytes()) == await expected_rows(pool, country="RU")
    assert os.listdir(tmp_path) == ["delivery.csv"]  # and no partial file left

    with_email = tmp_path / "with-email.csv"
    result = countersign(
        "export",
        SLUG,
        "--out",
        str(with_email),
        "--include-email",
        env=worker_env,
    )
    assert result.returncode == 0, result.stderr
    assert read_csv(with_email.read_bytes()) == await expected_rows(pool, include_email=True)

    agreed = tmp_path / "agreed.csv"
    result = countersign("export", SLUG, "--out", str(agreed), "--consent", "yes", env=worker_env)
    assert result.returncode == 0, result.stderr
    assert read_csv(agreed.read_bytes()) == await expected_rows(pool, consent="yes")

    rows = await pool.fetch("SELECT * FROM audit_log ORDER BY id")
    assert [(r["action"], r["row_count"]) for r in rows] == [
        ("export", 12),
        ("export", 48),
        ("export", 10),
    ]
    assert all(r["actor"].startswith("cli") for r in rows)
    assert json.loads(rows[0]["details"]) == {
        "via": "cli",
        "format": "csv",
        "filters": {"country": "RU"},
        "include_email": False,
        "outcome": "completed",
    }

    missing = countersign("export", "nope", "--out", str(tmp_path / "x.csv"), env=worker_env)
    assert missing.returncode == 1
    assert missing.stderr == "countersign: error: no such petition (petition_not_found)\n"
    bad = countersign(
        "export", SLUG, "--out", str(tmp_path / "y.csv"), "--country", "XX", env=worker_env
    )
    assert bad.returncode == 1
    assert "(validation_failed): country: Not an ISO 3166-1 alpha-2 country code" in bad.stderr
    removed = countersign(
        "export", SLUG, "--out", str(tmp_path / "z.csv"), "--format", "csv", env=worker_env
    )
    assert removed.returncode == 2  # --format is gone: there is one format
    assert "No such option '--format'" in removed.stderr
    assert sorted(os.listdir(tmp_path)) == ["agreed.csv", "delivery.csv", "with-email.csv"]


async def test_cli_export_progress_ends_where_its_last_line_says(
    worker_env: dict[str, str], pool: asyncpg.Pool, petition_id: int, tmp_path: Path
) -> None:
    # The bar counted the header line too: "49/49", then "exported 48".
    await seed(pool, petition_id)
    out = tmp_path / "all.csv"
    code, shown = await asyncio.to_thread(
        countersign_on_a_terminal, "export", SLUG, "--out", str(out), env=worker_env
    )
    assert code == 0, shown
    exported = re.search(r"exported (\d+) signatures", shown)
    assert exported, shown
    assert exported[1] == "48"
    positions = re.findall(r"\b(\d+)/(\d+)\b", shown)
    assert positions[-1] == ("48", "48"), shown


async def test_cli_export_keeps_an_existing_file_unless_forced(
    worker_env: dict[str, str], pool: asyncpg.Pool, petition_id: int, tmp_path: Path
) -> None:
    await seed(pool, petition_id)
    out = tmp_path / "delivery.csv"
    out.write_text("yesterday's export")
    kept = await asyncio.to_thread(countersign, "export", SLUG, "--out", str(out), env=worker_env)
    assert (kept.returncode, kept.stderr) == (
        1,
        f"countersign: error: {out} exists: give --force to replace it\n",
    )
    assert out.read_text() == "yesterday's export"
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0  # nothing was exported
    forced = await asyncio.to_thread(
        countersign, "export", SLUG, "--out", str(out), "--force", env=worker_env
    )
    assert forced.returncode == 0, forced.stderr
    assert read_csv(out.read_bytes()) == await expected_rows(pool)
