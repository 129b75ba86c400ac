"""The summary (JSON and CSV) and the printable delivery page."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pycountry

from counter_worker.worker import CounterWorker
from tests.support.counts import postgres_tally
from tests.support.factories import SLUG, StaffTokens, hasher, insert_signature
from tests.support.http import ADMIN, Client, bearer, error_of
from tests.support.processes import countersign

SUMMARY = f"{ADMIN}/petitions/{SLUG}/summary"
DELIVERY = f"{ADMIN}/petitions/{SLUG}/delivery"
DAY_ONE = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)

# country, source, day offset, how many
SIGNED = [
    ("SY", None, 0, 5),
    ("SY", "partner-a", 1, 3),
    ("FR", "partner-a", 1, 4),
    ("RU", "-newsroom", 2, 2),
    ("CI", None, 2, 1),
]


async def seed(pool: asyncpg.Pool, petition_id: int) -> None:
    n = 0
    for country, source, day, count in SIGNED:
        for _ in range(count):
            await insert_signature(
                pool,
                hasher,
                petition_id,
                email=f"s{n}@example.org",
                country=country,
                source=source,
                created_at=DAY_ONE + timedelta(days=day, minutes=n),
            )
            n += 1
    # Two that stopped counting, and one that never counted: the summary says so.
    await pool.execute(
        """UPDATE signatures SET invalidated_at = now(), invalid_reason = 'bot'
           WHERE email = 's0@example.org'"""
    )
    await pool.execute(
        """UPDATE signatures SET erased_at = now(), name = NULL, email = NULL
           WHERE email = 's1@example.org'"""
    )
    await insert_signature(pool, hasher, petition_id, email="pending@example.org")
    await pool.execute(
        "UPDATE signatures SET confirmed_at = NULL WHERE email = 'pending@example.org'"
    )
    # Three counted signers agreed to hear from the campaign; two that do not count did too.
    await pool.execute(
        """UPDATE signatures SET consent_updates = true
           WHERE (country = 'SY' AND source = 'partner-a')
              OR email IN ('s0@example.org', 'pending@example.org')"""
    )


def name_of(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    assert country is not None
    return str(country.name)


async def test_summary_json_matches_postgres(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await seed(pool, petition_id)
    response = await client.get(SUMMARY, headers=bearer(staff.exporter))
    assert response.status == 200
    body = await response.json()
    truth = await postgres_tally(pool, petition_id)
    assert body["total"] == truth.total == 13
    assert body["countries"] == [
        {"code": "SY", "name": name_of("SY"), "count": 6},
        {"code": "FR", "name": name_of("FR"), "count": 4},
        {"code": "RU", "name": name_of("RU"), "count": 2},
        {"code": "CI", "name": "Côte d'Ivoire", "count": 1},
    ]
    assert {c["code"]: c["count"] for c in body["countries"]} == truth.countries
    assert body["sources"] == [
        {"source": "partner-a", "count": 7},
        {"source": None, "count": 4},
        {"source": "-newsroom", "count": 2},
    ]
    assert sum(source["count"] for source in body["sources"]) == body["total"]
    assert body["days"] == [
        {"date": "2025-05-01", "count": 3},
        {"date": "2025-05-02", "count": 7},
        {"date": "2025-05-03", "count": 3},
    ]
    assert (body["invalidated"], body["erased"]) == (1, 1)
    assert body["consent_updates"] == 3
    assert datetime.fromisoformat(body["first_signed_at"]) == DAY_ONE + timedelta(minutes=2)
    assert datetime.fromisoformat(body["last_signed_at"]) == DAY_ONE + timedelta(days=2, minutes=14)
    assert (body["petition"], body["status"], body["goal"]) == (SLUG, "open", 100000)


async def test_summary_of_a_petition_nobody_signed(client: Client, staff: StaffTokens) -> None:
    body = await (await client.get(SUMMARY, headers=bearer(staff.admin))).json()
    assert (body["total"], body["countries"], body["sources"], body["days"]) == (0, [], [], [])
    assert body["first_signed_at"] is None
    missing = await client.get(f"{ADMIN}/petitions/nope/summary", headers=bearer(staff.admin))
    assert (await error_of(missing, 404))["code"] == "petition_not_found"


async def test_summary_as_csv(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await seed(pool, petition_id)
    response = await client.get(SUMMARY, headers={**bearer(staff.exporter), "Accept": "text/csv"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    text = (await response.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [
        ["section", "key", "name", "count"],
        ["total", "", "", "13"],
        ["invalidated", "", "", "1"],
        ["erased", "", "", "1"],
        ["consent_updates", "", "", "3"],
        ["country", "SY", name_of("SY"), "6"],
        ["country", "FR", "France", "4"],
        ["country", "RU", name_of("RU"), "2"],
        ["country", "CI", "Côte d'Ivoire", "1"],
        ["source", "partner-a", "", "7"],
        ["source", "", "(none)", "4"],  # signed without a source code
        ["source", "'-newsroom", "", "2"],  # a spreadsheet would read -newsroom as a formula
        ["day", "2025-05-01", "", "3"],
        ["day", "2025-05-02", "", "7"],
        ["day", "2025-05-03", "", "3"],
    ]
    either = await client.get(
        SUMMARY, headers={**bearer(staff.admin), "Accept": "application/json;q=0.5, text/csv"}
    )
    assert either.headers["Content-Type"].startswith("text/csv")
    json_by_default = await client.get(SUMMARY, headers=bearer(staff.admin))
    assert json_by_default.headers["Content-Type"].startswith("application/json")


# -- the delivery page ---------------------------------------------------------------------------


async def test_delivery_page_has_what_goes_to_the_target(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await pool.execute(
        "UPDATE petitions SET body = $1, target = 'The UN Security Council'",
        "First paragraph.\n\nSecond paragraph.",
    )
    await seed(pool, petition_id)
    response = await client.get(DELIVERY, headers=bearer(staff.exporter))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = await response.text()
    assert "Refer Syria to the ICC" in page
    assert "To: The UN Security Council" in page
    assert "First paragraph.\n\nSecond paragraph." in page
    assert "13 signatures" in page
    assert "Signed between 1 May 2025 and 3 May 2025, in 4" in page
    # The table lists every top country with its share; the chart has a bar for each.
    table = page[page.index("<table>") :]
    for name, count, share in [
        (name_of("SY"), 6, "46.2%"),
        ("France", 4, "30.8%"),
        (name_of("RU"), 2, "15.4%"),
        ("Côte d&#39;Ivoire", 1, "7.7%"),
    ]:
        cells = [
            f"{re.escape(name)} \\(\\w\\w\\)",
            f'class="count">{count}',
            f'class="share">{share}',
        ]
        assert re.search(r"</td>\s*<td ".join(cells), table), name
    widths = re.findall(r'<rect x="0" y="0" height="10" width="([0-9.]+)">', page)
    assert widths == ["100.00", "66.67", "33.33", "16.67"]
    # By source, signatures without one included: the rows add up to the total.
    sources = page[page.index("Signatures by source") :]
    rows = re.findall(r'<td>([^<]+)</td>\s*<td class="count">(\d+)</td>', sources)
    assert rows == [("partner-a", "7"), ("(none)", "4"), ("-newsroom", "2")]
    assert sum(int(count) for _, count in rows) == 13
    assert "@media print" in page


async def test_the_consent_count_is_on_the_staff_view_only(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int, worker: CounterWorker
) -> None:
    await seed(pool, petition_id)
    page = await (await client.get(DELIVERY, headers=bearer(staff.exporter))).text()
    staff_note = re.search(r'<aside class="staff">(.*?)</aside>', page, flags=re.DOTALL)
    assert staff_note is not None
    assert "3 of these signers agreed to hear from the campaign" in staff_note[1]
    # The page goes to the target printed: the note does not.
    print_rules = page[page.index("@media print") :]
    assert re.search(r"\.staff\s*\{\s*display:\s*none", print_rules)
    # The public figures never say it.
    await worker.drain()
    public = await (await client.get(f"/v1/petitions/{SLUG}/counts")).text()
    assert "consent" not in public


async def test_delivery_page_security_headers_and_no_active_content(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await pool.execute(
        "UPDATE petitions SET title = $1, target = $2",
        "<script>alert(1)</script> Free them",
        '"><img src=x onerror=alert(1)>',
    )
    await seed(pool, petition_id)
    response = await client.get(DELIVERY, headers=bearer(staff.admin))
    page = await response.text()
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; ")
    [nonce] = re.findall(r"style-src 'nonce-([A-Za-z0-9_-]+)'", policy)
    assert f'<style nonce="{nonce}">' in page
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    # Escaped, not run; and nothing fetched from anywhere.
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Free them" in page
    assert "<script" not in page
    assert "<img" not in page
    assert not re.search(r"<[^>]*\b(src|href)=", page)  # no attribute fetches anything
    # A second page gets a fresh nonce.
    again = await client.get(DELIVERY, headers=bearer(staff.admin))
    assert again.headers["Content-Security-Policy"] != policy


async def test_delivery_page_groups_countries_beyond_the_top(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    codes = sorted(c.alpha_2 for c in pycountry.countries)[:20]
    for i, code in enumerate(codes):
        for j in range(20 - i):
            await insert_signature(
                pool, hasher, petition_id, email=f"{code}{j}@example.org", country=code
            )
    page = await (await client.get(DELIVERY, headers=bearer(staff.admin))).text()
    # The top 15 by name, then one line for the 5 others (5 + 4 + 3 + 2 + 1 signatures).
    assert len(re.findall(r"<rect ", page)) == 16
    assert re.search(r"<td>5 other countries</td>\s*<td class=\"count\">15</td>", page)


# -- the command line --------------------------------------------------------------------------


async def test_the_summary_command_gives_the_apis_figures(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    petition_id: int,
    worker_env: dict[str, str],
) -> None:
    await seed(pool, petition_id)
    answer = await client.get(SUMMARY, headers={**bearer(staff.exporter), "Accept": "text/csv"})
    api_rows = list(csv.reader(io.StringIO((await answer.read()).decode("utf-8-sig"))))
    as_csv = await asyncio.to_thread(countersign, "summary", SLUG, "--csv", env=worker_env)
    assert as_csv.stdout.startswith("\ufeff")  # as the API sends it, for spreadsheets
    assert list(csv.reader(io.StringIO(as_csv.stdout.removeprefix("\ufeff")))) == api_rows

    text = (await asyncio.to_thread(countersign, "summary", SLUG, env=worker_env)).stdout
    assert text.startswith(f"Refer Syria to the ICC ({SLUG}), open, goal 100,000\n")
    blocks = {block.split()[0]: block.splitlines() for block in text.split("\n\n")[1:]}
    assert blocks["total"][1].split()[:3] == ["13", "1", "1"]  # total, invalidated, erased
    assert [re.split(r"\s{2,}", line) for line in blocks["country"][1:]] == [
        ["SY", name_of("SY"), "6"],
        ["FR", "France", "4"],
        ["RU", name_of("RU"), "2"],
        ["CI", "Côte d'Ivoire", "1"],
    ]
    sources = [line.split() for line in blocks["source"][1:]]
    assert sources == [["partner-a", "7"], ["(none)", "4"], ["-newsroom", "2"]]
    assert sum(int(count) for _, count in sources) == 13
    assert [line.split() for line in blocks["day"][1:]] == [
        ["2025-05-01", "3"],
        ["2025-05-02", "7"],
        ["2025-05-03", "3"],
    ]


def _inflated(pdf: bytes) -> bytes:
    """A PDF's compressed streams, inflated (its objects are kept in them)."""
    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.DOTALL)
    return b"".join(zlib.decompressobj().decompress(stream) for stream in streams)


def _without_the_moment(page: str) -> str:
    """The page less what differs between two renderings: the nonce and the time."""
    page = re.sub(r'nonce="[^"]+"', 'nonce=""', page)
    return re.sub(r"Generated .* UTC\.", "Generated", page)


async def test_the_delivery_command_writes_the_apis_page_and_a_pdf(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    petition_id: int,
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    await seed(pool, petition_id)
    page = await (await client.get(DELIVERY, headers=bearer(staff.exporter))).text()

    def delivery(out: Path, *more: str) -> subprocess.CompletedProcess[str]:
        return countersign("delivery", SLUG, "--out", str(out), *more, env=worker_env)

    html = tmp_path / "delivery.html"
    written = await asyncio.to_thread(delivery, html)
    assert written.returncode == 0, written.stderr
    assert _without_the_moment(html.read_text()) == _without_the_moment(page)

    pdf = tmp_path / "delivery.pdf"
    assert (await asyncio.to_thread(delivery, pdf)).returncode == 0
    document = pdf.read_bytes()
    assert document.startswith(b"%PDF-")
    assert document.rstrip().endswith(b"%%EOF")
    assert re.search(rb"/Type /Page\b", _inflated(document))  # one page at least

    # An existing file stays unless --force.
    html.write_text("kept")
    kept = await asyncio.to_thread(delivery, html)
    assert (kept.returncode, kept.stderr) == (
        1,
        f"countersign: error: {html} exists: give --force to replace it\n",
    )
    assert html.read_text() == "kept"
    assert (await asyncio.to_thread(delivery, html, "--force")).returncode == 0
    assert "Signatures by source" in html.read_text()
    other = await asyncio.to_thread(delivery, tmp_path / "delivery.txt")
    assert other.returncode == 2
    assert sorted(os.listdir(tmp_path)) == ["delivery.html", "delivery.pdf"]
