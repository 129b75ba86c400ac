"""The staff console at /admin/, in process: signing in (emailed link, staff token),
sessions, CSRF, roles, and each page calling the domain's rules with their audit entries."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from html import unescape
from http.cookies import SimpleCookie

import asyncpg
import pytest
from click.testing import CliRunner, Result

from countersign.cli import main as cli
from countersign_core.settings import Rate, Settings
from countersign_domain.partners import create_partner, grant_petition
from countersign_domain.sessions import SessionPolicy, request_sign_in_link, sign_in_secret
from countersign_domain.staff import Role, invite_staff
from mail_sender.sender import MailSender
from petition_api.app import create_app
from tests.support.console import (
    CONSOLE,
    console_sign_in,
    csrf_of,
    link_path,
    page_csrf,
    sign_in_link,
    submit,
)
from tests.support.factories import SLUG, StaffTokens, add_signatures, hasher, insert_signature
from tests.support.http import AiohttpClient, Client, read_csv
from tests.support.mail import SmtpSink, with_mail

pytestmark = pytest.mark.usefixtures("petition_id")


@pytest.fixture
async def console(aiohttp_client: AiohttpClient, mail_settings: Settings) -> Client:
    """The API with the console, whose links point at the test mail settings' URL."""
    return await aiohttp_client(create_app(mail_settings))


async def audit_actions(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT actor, action FROM audit_log ORDER BY id")
    return [(row["actor"], row["action"]) for row in rows]


# -- signing in -----------------------------------------------------------------------------


async def test_a_staff_member_signs_in_once_with_the_emailed_link(
    console: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    await invite_staff(pool, actor="test", name="Amal H", email="amal@example.org", role=Role.ADMIN)
    csrf = await page_csrf(console)
    known = await console.post(
        f"{CONSOLE}/sign-in/link", data={"csrf": csrf, "email": "Amal@Example.org"}
    )
    unknown = await console.post(
        f"{CONSOLE}/sign-in/link", data={"csrf": csrf, "email": "nobody@example.org"}
    )
    # The same page either way: it never says whether the address has an account.
    assert known.status == unknown.status == 200
    assert await known.text() == await unknown.text()

    async def queued() -> int:
        return int(await pool.fetchval("SELECT count(*) FROM email_jobs"))

    for _ in range(200):  # the job is written after the answer, by a task of its own
        if await queued():
            break
        await (await console.get(f"{CONSOLE}/static/console.css")).release()
    await sender.drain()
    [message] = smtp_sink.received
    assert message["To"] == "amal@example.org"
    link = sign_in_link(message)
    stored = await pool.fetchrow("SELECT token_hash, nonce FROM staff_sign_in_links")
    assert link_path(link).rsplit("/", 1)[1].encode() not in (stored["token_hash"], stored["nonce"])

    # Opening the link changes nothing (a mail scanner may fetch it); pressing the button does.
    page = await console.get(link_path(link))
    assert page.status == 200
    response = await console.post(
        link_path(link), data={"csrf": csrf_of(await page.text())}, allow_redirects=False
    )
    assert response.status == 303
    cookie = SimpleCookie(response.headers["Set-Cookie"])["cs_console"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/admin/"
    assert not cookie["secure"]  # the public URL is http here
    home = await console.get(f"{CONSOLE}/")
    assert "Amal H" in await home.text()

    # Single use: the same link again is refused, in words, and the failure audited.
    again = await console.post(
        link_path(link), data={"csrf": csrf_of(await home.text())}, allow_redirects=False
    )
    assert again.status == 401
    assert "does not work" in await again.text()
    actions = await audit_actions(pool)
    assert ("Amal H", "console.sign_in_link") in actions
    assert ("anonymous", "console.sign_in_link") in actions  # the unknown address
    assert ("Amal H", "console.sign_in") in actions
    assert actions[-1] == ("anonymous", "console.sign_in_failed")


async def test_an_expired_link_is_refused(
    console: Client, pool: asyncpg.Pool, mail_settings: Settings
) -> None:
    await invite_staff(pool, actor="test", name="Amal", email="amal@example.org", role=Role.ADMIN)
    csrf = await page_csrf(console)
    await request_sign_in_link(
        pool,
        mail_settings.require_secret_key(),
        email="amal@example.org",
        language="en",
        policy=SessionPolicy(15, 30, 12),
    )
    nonce = await pool.fetchval("UPDATE staff_sign_in_links SET expires_at = now() RETURNING nonce")
    secret = sign_in_secret(mail_settings.require_secret_key(), nonce)
    response = await console.post(f"{CONSOLE}/sign-in/{secret}", data={"csrf": csrf})
    assert response.status == 401


async def test_a_staff_token_signs_in_and_a_wrong_one_is_refused_and_audited(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    csrf = await page_csrf(console)
    wrong = await console.post(
        f"{CONSOLE}/sign-in/token", data={"csrf": csrf, "token": "cs_staff_nope"}
    )
    assert wrong.status == 401
    assert "does not work" in await wrong.text()
    await console_sign_in(console, staff.admin)
    home = await console.get(f"{CONSOLE}/")
    assert home.status == 200
    assert "admin-test" in await home.text()
    assert await audit_actions(pool) == [
        ("anonymous", "console.sign_in_failed"),
        ("admin-test", "console.sign_in"),
    ]
    # Signing out ends the session: the cookie no longer opens anything.
    out = await console.post(
        f"{CONSOLE}/sign-out", data={"csrf": csrf_of(await home.text())}, allow_redirects=False
    )
    assert out.status == 303
    assert (await audit_actions(pool))[-1] == ("admin-test", "console.sign_out")
    assert await pool.fetchval("SELECT count(*) FROM staff_sessions WHERE ended_at IS NULL") == 0


async def test_repeated_sign_in_attempts_are_rate_limited(
    aiohttp_client: AiohttpClient, mail_settings: Settings
) -> None:
    limited = dataclasses.replace(
        mail_settings,
        console=dataclasses.replace(mail_settings.console, sign_in_limit=Rate(3, 600)),
    )
    client = await aiohttp_client(create_app(limited))
    csrf = await page_csrf(client)
    statuses = [
        (
            await client.post(f"{CONSOLE}/sign-in/token", data={"csrf": csrf, "token": "wrong"})
        ).status
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


async def test_every_form_needs_the_csrf_token(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.admin)
    forged = await console.post(
        f"{CONSOLE}/petitions", data={"slug": "forged", "title": "Forged"}, allow_redirects=False
    )
    assert forged.status == 403
    assert "Reload the page" in await forged.text()
    other = await console.post(
        f"{CONSOLE}/petitions",
        data={"csrf": "0" * 64, "slug": "forged", "title": "Forged"},
        allow_redirects=False,
    )
    assert other.status == 403
    assert await pool.fetchval("SELECT count(*) FROM petitions WHERE slug = 'forged'") == 0
    assert (await audit_actions(pool))[-1] == ("admin-test", "console.csrf_rejected")


async def test_an_idle_or_expired_session_is_refused(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.admin)
    csrf = csrf_of(await (await console.get(f"{CONSOLE}/")).text())
    await pool.execute("UPDATE staff_sessions SET last_seen_at = now() - interval '31 minutes'")
    page = await console.get(f"{CONSOLE}/", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"].startswith(f"{CONSOLE}/sign-in?next=")
    post = await console.post(
        f"{CONSOLE}/petitions", data={"csrf": csrf, "slug": "late", "title": "Late"}
    )
    assert post.status == 401
    # The absolute expiry holds however busy the session is.
    await console_sign_in(console, staff.admin)
    await pool.execute("UPDATE staff_sessions SET expires_at = now() WHERE ended_at IS NULL")
    assert (await console.get(f"{CONSOLE}/", allow_redirects=False)).status == 303


async def test_cookies_are_secure_when_the_public_url_is_https(
    aiohttp_client: AiohttpClient, mail_settings: Settings, staff: StaffTokens
) -> None:
    https = with_mail(mail_settings, public_url="https://sign.example.org")
    client = await aiohttp_client(create_app(https))
    page = await client.get(f"{CONSOLE}/sign-in")
    assert page.status == 200
    await page.release()
    cookie = SimpleCookie(page.headers["Set-Cookie"])["cs_console_form"]
    assert cookie["secure"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"


# -- roles ----------------------------------------------------------------------------------


async def test_an_exporter_is_refused_admin_pages_and_forged_actions_are_audited(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.exporter)
    home = await console.get(f"{CONSOLE}/")
    assert home.status == 200
    html = await home.text()
    assert "/admin/partners" not in html
    assert "New petition" not in html
    assert (await console.get(f"{CONSOLE}/petitions/{SLUG}")).status == 200
    assert (await console.get(f"{CONSOLE}/petitions/{SLUG}/export")).status == 200
    refused = await console.get(f"{CONSOLE}/audit")
    assert refused.status == 403
    assert "Your role does not allow this" in await refused.text()
    forged = await console.post(
        f"{CONSOLE}/petitions/{SLUG}/status", data={"csrf": csrf_of(html), "status": "closed"}
    )
    assert forged.status == 403
    assert await pool.fetchval("SELECT status FROM petitions WHERE slug = $1", SLUG) == "open"
    emails = await console.get(f"{CONSOLE}/petitions/{SLUG}/signatures.csv?include=email")
    assert emails.status == 403
    forbidden = await pool.fetch(
        "SELECT details->>'route' AS route FROM audit_log WHERE action = 'console.forbidden'"
    )
    assert [row["route"] for row in forbidden] == [
        "/admin/audit",
        "/admin/petitions/{slug}/status",
    ]


# -- petitions ------------------------------------------------------------------------------


async def test_petitions_are_created_edited_and_moved_through_the_domain_rules(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.admin)
    csrf = await page_csrf(console, f"{CONSOLE}/petitions/new")
    created = await console.post(
        f"{CONSOLE}/petitions",
        data={
            "csrf": csrf,
            "slug": "free-them",
            "title": "Free them",
            "text": "Line one\r\nLine two",
            "goal": "500",
            "allowed_origins": "https://partner.example\n",
            "require_confirmation": "on",
        },
        allow_redirects=False,
    )
    assert created.status == 303, await created.text()
    row = await pool.fetchrow("SELECT * FROM petitions WHERE slug = 'free-them'")
    assert row["status"] == "draft"
    assert row["goal"] == 500
    assert row["require_confirmation"]
    assert row["body"] == "Line one\nLine two"
    assert row["allowed_origins"] == ["https://partner.example"]

    # The next goal: above the goal, or refused with the field named; empty clears it.
    too_low = await console.post(
        f"{CONSOLE}/petitions/free-them/edit",
        data={"csrf": csrf, "title": "Free them", "goal": "500", "next_goal": "500"},
    )
    assert too_low.status == 422
    assert 'id="next_goal-error">Must be above the goal (500).<' in await too_low.text()
    await submit(
        console,
        f"{CONSOLE}/petitions/free-them/edit",
        data={"csrf": csrf, "title": "Free them", "goal": "500", "next_goal": "2000"},
    )
    assert await pool.fetchval("SELECT next_goal FROM petitions WHERE slug = 'free-them'") == 2000
    edit_page = await (await console.get(f"{CONSOLE}/petitions/free-them/edit")).text()
    assert 'name="next_goal" inputmode="numeric" value="2000"' in edit_page
    await submit(
        console,
        f"{CONSOLE}/petitions/free-them/edit",
        data={"csrf": csrf, "title": "Free them", "goal": "500", "next_goal": ""},
    )
    assert await pool.fetchval("SELECT next_goal FROM petitions WHERE slug = 'free-them'") is None

    invalid = await console.post(
        f"{CONSOLE}/petitions/free-them/edit",
        data={"csrf": csrf, "title": "Free them", "goal": "-3", "allowed_origins": "nope"},
    )
    assert invalid.status == 422
    assert 'aria-invalid="true"' in await invalid.text()

    # A draft cannot be closed: the domain's refusal, in words.
    closing = await console.post(
        f"{CONSOLE}/petitions/free-them/status", data={"csrf": csrf, "status": "closed"}
    )
    assert closing.status == 409
    assert "This status move is not allowed" in await closing.text()
    opened = await console.post(
        f"{CONSOLE}/petitions/free-them/status",
        data={"csrf": csrf, "status": "open"},
        allow_redirects=False,
    )
    assert opened.status == 303
    assert await pool.fetchval("SELECT status FROM petitions WHERE slug = 'free-them'") == "open"
    actions = [action for _, action in await audit_actions(pool)]
    assert actions.count("petition.create") == 1
    assert actions.count("petition.update") == 3  # the next goal set, cleared; opened


async def test_the_dashboard_shows_the_figures_and_their_updates(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await add_signatures(pool, petition_id, 10)
    await insert_signature(pool, hasher, petition_id, email="held@example.org", country="FR")
    await pool.execute(
        "UPDATE signatures SET suspect_reason = 'rate_limit_address' WHERE email LIKE 'held@%'"
    )
    await console_sign_in(console, staff.exporter)
    page = await console.get(f"{CONSOLE}/petitions/{SLUG}")
    html = await page.text()
    assert page.status == 200
    assert re.search(r'data-figure="counted">10<', html)
    assert re.search(r'data-figure="suspects">1<', html)
    assert 'id="world-map"' in html
    assert 'data-code="SY" class="level-' in html
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy

    figures = await console.get(f"{CONSOLE}/petitions/{SLUG}/figures")
    tag = figures.headers["ETag"]
    unchanged = await console.get(
        f"{CONSOLE}/petitions/{SLUG}/figures", headers={"If-None-Match": tag}
    )
    assert unchanged.status == 304
    await add_signatures(pool, petition_id, 5)
    moved = await console.get(f"{CONSOLE}/petitions/{SLUG}/figures", headers={"If-None-Match": tag})
    assert moved.status == 200
    assert re.search(r'data-figure="counted">15<', await moved.text())


# -- export and delivery --------------------------------------------------------------------


async def test_the_export_filters_and_the_pdf(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await add_signatures(pool, petition_id, 20)
    await console_sign_in(console, staff.exporter)
    response = await console.get(
        f"{CONSOLE}/petitions/{SLUG}/signatures.csv", params={"country": "FR", "signed_to": ""}
    )
    assert response.status == 200
    rows = read_csv(await response.read())
    expected = await pool.fetchval(
        "SELECT count(*) FROM signatures WHERE country = 'FR' AND counted"
    )
    assert len(rows) == expected > 0
    assert {row["country_code"] for row in rows} == {"FR"}
    assert "email" not in rows[0]
    bad = await console.get(f"{CONSOLE}/petitions/{SLUG}/signatures.csv?signed_to=yesterday")
    assert bad.status == 422

    delivery = await console.get(f"{CONSOLE}/petitions/{SLUG}/delivery")
    assert delivery.status == 200
    assert "20 signatures" in await delivery.text()
    assert delivery.headers["Content-Security-Policy"].startswith("default-src 'none'")
    pdf = await console.get(f"{CONSOLE}/petitions/{SLUG}/delivery.pdf")
    assert pdf.status == 200
    assert pdf.headers["Content-Type"] == "application/pdf"
    body = await pdf.read()
    assert body.startswith(b"%PDF-")
    exports = await pool.fetch("SELECT actor, row_count FROM audit_log WHERE action = 'export'")
    assert [(row["actor"], row["row_count"]) for row in exports] == [("exporter-test", expected)]


async def test_the_consent_filter_exports_exactly_those_rows(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await add_signatures(pool, petition_id, 12)
    # Some agreed to hear from the campaign, in several countries.
    await pool.execute("UPDATE signatures SET consent_updates = (id % 3 = 0)")
    await console_sign_in(console, staff.exporter)
    form_page = await (await console.get(f"{CONSOLE}/petitions/{SLUG}/export")).text()
    assert '<select id="consent" name="consent"' in form_page

    async def exported(**params: str) -> list[tuple[str, str, str]]:
        response = await console.get(f"{CONSOLE}/petitions/{SLUG}/signatures.csv", params=params)
        assert response.status == 200, await response.text()
        rows = read_csv(await response.read())
        return [(r["signed_at"], r["country_code"], r["consent_updates"]) for r in rows]

    async def in_postgres(consent: bool, country: str | None = None) -> list[tuple[str, str, str]]:
        rows = await pool.fetch(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            " AS signed_at, country, consent_updates FROM signatures"
            " WHERE counted AND consent_updates = $1 AND ($2::text IS NULL OR country = $2)"
            " ORDER BY created_at, id",
            consent,
            country,
        )
        return [
            (r["signed_at"], r["country"], "yes" if r["consent_updates"] else "no") for r in rows
        ]

    agreed = await exported(consent="yes")
    assert agreed == await in_postgres(True) != []
    refused = await exported(consent="no", country="FR")
    assert refused == await in_postgres(False, "FR") != []
    assert len(await exported(consent="")) == 12  # any
    bad = await console.get(f"{CONSOLE}/petitions/{SLUG}/signatures.csv?consent=maybe")
    assert bad.status == 422
    assert 'aria-invalid="true"' in await bad.text()
    filters = await pool.fetch(
        "SELECT details->'filters' AS f FROM audit_log WHERE action = 'export' ORDER BY id"
    )
    assert [json.loads(row["f"]).get("consent") for row in filters] == ["True", "False", None]


# -- moderation -----------------------------------------------------------------------------


async def test_suspects_invalidations_erasure_and_the_audit_log(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    held = [
        await insert_signature(pool, hasher, petition_id, email=f"bot{n}@spam.example")
        for n in range(3)
    ]
    await pool.execute(
        "UPDATE signatures SET suspect_reason = 'rate_limit_address' WHERE id = ANY($1)", held
    )
    await console_sign_in(console, staff.admin)
    listed = await console.get(f"{CONSOLE}/petitions/{SLUG}/suspects")
    html = await listed.text()
    assert "bot0@spam.example" not in html  # no emails unless asked
    shown = await console.get(f"{CONSOLE}/petitions/{SLUG}/suspects?contact=1")
    assert "bot0@spam.example" in await shown.text()
    csrf = csrf_of(html)
    released = await console.post(
        f"{CONSOLE}/petitions/{SLUG}/suspects",
        data={"csrf": csrf, "selection": "ticked", "id": str(held[0]), "decision": "release"},
    )
    assert "1 signature(s) released" in await released.text()
    await submit(
        console,
        f"{CONSOLE}/petitions/{SLUG}/suspects",
        data={"csrf": csrf, "selection": "all", "decision": "invalidate"},
    )
    assert await pool.fetchval("SELECT count(*) FROM signatures WHERE counted") == 1

    # Invalidation by criteria: the count first, then applying, then undoing.
    await add_signatures(pool, petition_id, 6, sources=("bots",))
    dry = await console.post(
        f"{CONSOLE}/petitions/{SLUG}/invalidations",
        data={"csrf": csrf, "step": "check", "source": "bots"},
    )
    assert 'data-would="6"' in await dry.text()
    assert await pool.fetchval("SELECT count(*) FROM signatures WHERE counted") == 7
    await submit(
        console,
        f"{CONSOLE}/petitions/{SLUG}/invalidations",
        data={"csrf": csrf, "step": "apply", "source": "bots", "reason": "bot wave"},
    )
    assert await pool.fetchval("SELECT count(*) FROM signatures WHERE counted") == 1
    invalidation = await pool.fetchval("SELECT id FROM invalidations")
    await submit(
        console,
        f"{CONSOLE}/petitions/{SLUG}/invalidations/{invalidation}/undo",
        data={"csrf": csrf},
    )
    assert await pool.fetchval("SELECT count(*) FROM signatures WHERE counted") == 7

    erased = await console.post(
        f"{CONSOLE}/erasure", data={"csrf": csrf, "email": " bot0@spam.example "}
    )
    assert "Erased 1 signature(s) on 1 petition(s)" in await erased.text()
    assert "bot0@spam.example" not in await erased.text()

    log = await console.get(f"{CONSOLE}/audit", params={"action": "invalidation."})
    text = await log.text()
    for action in ("invalidation.dry_run", "invalidation.apply", "invalidation.undo"):
        assert action in text
    assert "<code>erasure</code>" not in text
    actions = [action for _, action in await audit_actions(pool)]
    for action in ("suspects.contact", "suspects.release", "suspects.invalidate", "erasure"):
        assert action in actions


# -- partners and staff ---------------------------------------------------------------------


async def test_partners_get_their_key_once_and_can_be_revoked(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.admin)
    csrf = await page_csrf(console, f"{CONSOLE}/partners")
    created = await console.post(
        f"{CONSOLE}/partners",
        data={"csrf": csrf, "name": "Daily Example", "source_code": "daily", "origins": ""},
    )
    html = unescape(await created.text())
    [key] = re.findall(r'value="(cs_partner_[\w-]+)"', html)
    assert 'data-source="daily"' in html
    assert "/widget.js" in html
    again = await console.get(f"{CONSOLE}/partners")
    assert key not in await again.text()
    taken = await console.post(
        f"{CONSOLE}/partners", data={"csrf": csrf, "name": "Other", "source_code": "daily"}
    )
    assert taken.status == 422
    await submit(console, f"{CONSOLE}/partners/daily/revoke", data={"csrf": csrf})
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM partners") is True


async def test_partners_are_granted_petitions_from_both_pages_and_audited(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.admin)
    csrf = await page_csrf(console, f"{CONSOLE}/partners")
    for code in ("daily", "weekly"):
        await submit(
            console,
            f"{CONSOLE}/partners",
            data={"csrf": csrf, "name": code.title(), "source_code": code, "origins": ""},
        )
    # From the petition's page, a partner chosen; from the partners page, a petition.
    dashboard = await (await console.get(f"{CONSOLE}/petitions/{SLUG}")).text()
    assert "No partner is granted this petition." in dashboard
    assert '<option value="daily">' in dashboard
    granted = await submit(
        console, f"{CONSOLE}/petitions/{SLUG}/grants", data={"csrf": csrf, "partner": "daily"}
    )
    assert "The partner is granted the petition." in granted
    assert "<code>daily</code>" in granted
    assert '<option value="daily">' not in granted  # granted already: no longer offered
    listed = await submit(
        console,
        f"{CONSOLE}/partners/weekly/grants",
        data={"csrf": csrf, "petition": SLUG, "back": "partners"},
    )
    assert "The partner is granted the petition." in listed
    assert f'<option value="{SLUG}">' not in listed  # both granted it: none is offered
    assert listed.count(f'<a href="/admin/petitions/{SLUG}">') == 2  # both partners' rows

    async def granted_codes() -> list[str]:
        rows = await pool.fetch(
            "SELECT pa.source_code FROM partner_grants g JOIN partners pa ON pa.id = g.partner_id"
            " ORDER BY 1"
        )
        return [row["source_code"] for row in rows]

    assert await granted_codes() == ["daily", "weekly"]
    # Refusals are the domain's, in words.
    unknown = await console.post(
        f"{CONSOLE}/petitions/{SLUG}/grants", data={"csrf": csrf, "partner": "nobody"}
    )
    assert unknown.status == 404
    assert "No active partner has this source code." in await unknown.text()
    taken_back = await submit(
        console, f"{CONSOLE}/petitions/{SLUG}/grants/daily/revoke", data={"csrf": csrf}
    )
    assert "The petition is taken back from the partner" in taken_back
    again = await console.post(
        f"{CONSOLE}/petitions/{SLUG}/grants/daily/revoke", data={"csrf": csrf}
    )
    assert again.status == 404
    assert "This partner is not granted this petition." in await again.text()
    assert await granted_codes() == ["weekly"]
    # Without the form's token, nothing changes.
    forged = await console.post(f"{CONSOLE}/petitions/{SLUG}/grants", data={"partner": "daily"})
    assert forged.status == 403
    await submit(console, f"{CONSOLE}/partners/weekly/revoke", data={"csrf": csrf})
    assert await granted_codes() == ["weekly"]  # a revoked partner's grant stays, inert

    entries = await pool.fetch(
        "SELECT actor, action, details FROM audit_log WHERE action LIKE 'partner.%' ORDER BY id"
    )
    assert [(e["actor"], e["action"], json.loads(e["details"])) for e in entries] == [
        ("admin-test", "partner.create", {"partner": "daily"}),
        ("admin-test", "partner.create", {"partner": "weekly"}),
        ("admin-test", "partner.grant", {"partner": "daily"}),
        ("admin-test", "partner.grant", {"partner": "weekly"}),
        ("admin-test", "partner.revoke_grant", {"partner": "daily"}),
        ("admin-test", "partner.revoke", {"partner": "weekly"}),
    ]
    assert "cs_partner_" not in str([dict(e) for e in entries])


async def test_an_exporter_sees_the_grants_but_cannot_change_them(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await create_partner(pool, actor="test", name="Daily", source_code="daily", origins=[])
    await create_partner(pool, actor="test", name="Weekly", source_code="weekly", origins=[])
    await grant_petition(pool, actor="test", source_code="daily", slug=SLUG)
    await console_sign_in(console, staff.exporter)
    page = await console.get(f"{CONSOLE}/petitions/{SLUG}")
    html = await page.text()
    assert "<code>daily</code>" in html
    assert "/grants" not in html  # no grant or take-back forms
    csrf = csrf_of(html)
    forged = [
        await console.post(path, data={"csrf": csrf, **fields})
        for path, fields in (
            (f"{CONSOLE}/petitions/{SLUG}/grants", {"partner": "weekly"}),
            (f"{CONSOLE}/partners/weekly/grants", {"petition": SLUG}),
            (f"{CONSOLE}/petitions/{SLUG}/grants/daily/revoke", {}),
        )
    ]
    assert [response.status for response in forged] == [403, 403, 403]
    assert await pool.fetchval("SELECT count(*) FROM partner_grants") == 1
    forbidden = await pool.fetch(
        "SELECT actor, details->>'route' AS route FROM audit_log"
        " WHERE action = 'console.forbidden' ORDER BY id"
    )
    assert [(row["actor"], row["route"]) for row in forbidden] == [
        ("exporter-test", "/admin/petitions/{slug}/grants"),
        ("exporter-test", "/admin/partners/{code}/grants"),
        ("exporter-test", "/admin/petitions/{slug}/grants/{code}/revoke"),
    ]


async def test_staff_accounts_from_the_console_and_the_command(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:6379/0"}

    async def countersign(*args: str) -> Result:
        # In a thread: the command runs an event loop of its own.
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)

    invited = await countersign(
        "staff", "invite", "lina@example.org", "--name", "Lina", "--role", "exporter"
    )
    assert invited.exit_code == 0, invited.output
    twice = await countersign("staff", "invite", "LINA@example.org", "--name", "Lina 2")
    assert twice.exit_code == 1
    assert "staff_account_exists" in twice.output
    listed = await countersign("staff", "list")
    assert "lina@example.org" in listed.output
    assert "exporter" in listed.output

    await console_sign_in(console, staff.admin)
    csrf = await page_csrf(console, f"{CONSOLE}/staff")
    await submit(
        console,
        f"{CONSOLE}/staff",
        data={"csrf": csrf, "name": "Omar", "email": "omar@example.org", "role": "admin"},
    )
    page = await (await console.get(f"{CONSOLE}/staff")).text()
    assert "omar@example.org" in page
    assert "lina@example.org" in page
    omar = await pool.fetchval("SELECT id FROM staff_accounts WHERE name = 'Omar'")
    await submit(console, f"{CONSOLE}/staff/{omar}/remove", data={"csrf": csrf})
    removed = await countersign("staff", "remove", "lina@example.org")
    assert removed.exit_code == 0, removed.output
    assert (await countersign("staff", "list")).output.strip() == "no staff accounts"
    actions = [action for _, action in await audit_actions(pool)]
    assert actions.count("staff.invite") == 2
    assert actions.count("staff.remove") == 2


async def test_the_console_speaks_the_readers_language(console: Client) -> None:
    arabic = await console.get(f"{CONSOLE}/sign-in", headers={"Accept-Language": "ar"})
    assert 'lang="ar" dir="rtl"' in await arabic.text()
    csrf = csrf_of(await arabic.text())
    chosen = await console.post(
        f"{CONSOLE}/language", data={"csrf": csrf, "language": "ru", "next": f"{CONSOLE}/sign-in"}
    )
    assert 'lang="ru" dir="ltr"' in await chosen.text()
    assert "Вход" in await chosen.text()
