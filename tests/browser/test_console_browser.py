"""The staff console in Debian's Chromium: a staff member signs in with the link the
mail sender emailed, creates a petition, watches its dashboard move as people sign,
exports with a filter, downloads the delivery PDF; an exporter is refused an admin
page; an ended session sends the browser back to the sign-in page. Every page is
checked by axe-core and photographed (test-artifacts/browser/console-*.png)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from countersign_core.settings import Settings
from countersign_domain.partners import create_partner, grant_petition
from countersign_domain.petitions import translate_petition
from countersign_domain.staff import Role, invite_staff
from mail_sender.sender import MailSender
from petition_api.app import create_app
from tests.support.accessibility import axe_violations, describe_violations
from tests.support.console import CONSOLE, link_path, sign_in_link
from tests.support.factories import SLUG as PETITION
from tests.support.factories import StaffTokens, add_signatures, hasher, insert_signature
from tests.support.http import AiohttpServer, read_csv
from tests.support.mail import SmtpSink
from tests.support.waiting import eventually

expect.set_options(timeout=20_000)

SLUG = "free-the-detainees-now"
EVERY_IMPACT = ("minor", "moderate", "serious", "critical")


@pytest.fixture
async def console_api(aiohttp_server: AiohttpServer, mail_settings: Settings) -> str:
    server = await aiohttp_server(create_app(mail_settings))
    return str(server.make_url("")).rstrip("/")


async def new_page(browser: Browser, locale: str = "en-GB") -> tuple[BrowserContext, Page]:
    # axe is injected into the page: only the tests lift the console's CSP, for it.
    context = await browser.new_context(locale=locale, bypass_csp=True, accept_downloads=True)
    return context, await context.new_page()


async def accessible(page: Page, axe_source: str, artifacts: Path, name: str) -> None:
    await page.screenshot(path=str(artifacts / f"console-{name}.png"), full_page=True)
    found = await axe_violations(page, axe_source, EVERY_IMPACT)
    assert found == [], describe_violations(found)


async def sign(api: str, email: str, country: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{api}/v1/petitions/{SLUG}/signatures",
            json={"name": "Amal Haddad", "email": email, "country": country},
        ) as response,
    ):
        assert response.status in (200, 201, 202), await response.text()


async def test_a_staff_member_runs_a_petition_from_the_console(
    browser: Browser,
    console_api: str,
    pool: asyncpg.Pool,
    sender: MailSender,
    smtp_sink: SmtpSink,
    staff: StaffTokens,
    axe_source: str,
    artifacts: Path,
) -> None:
    await invite_staff(pool, actor="test", name="Amal", email="amal@example.org", role=Role.ADMIN)
    context, page = await new_page(browser)

    # Signing in with the emailed link.
    await page.goto(f"{console_api}{CONSOLE}/")
    await expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    await accessible(page, axe_source, artifacts, "sign-in")
    await page.get_by_label("Email address").fill("amal@example.org")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    async def emailed() -> bool:
        await sender.drain()
        return bool(smtp_sink.received)

    await eventually(emailed)
    await page.goto(console_api + link_path(sign_in_link(smtp_sink.received[0])))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("Signed in as Amal (admin)")).to_be_visible()

    # Creating a petition, with the keyboard alone.
    await page.get_by_role("link", name="New petition").focus()
    await page.keyboard.press("Enter")
    await page.get_by_label("Slug").fill(SLUG)
    await page.get_by_label("Title").fill("Free the detainees now")
    await page.get_by_label("Goal (signatures)").fill("10")
    await page.get_by_label("Count a signature only once its address is confirmed").uncheck()
    await page.get_by_label("Open it for signatures now").check()
    await accessible(page, axe_source, artifacts, "new-petition")
    await page.get_by_role("button", name="Create").press("Enter")
    await expect(page.get_by_role("status")).to_have_text("The petition is created.")

    # The dashboard moves as people sign.
    counted = page.locator('[data-figure="counted"]')
    await expect(counted).to_have_text("0")
    await sign(console_api, "amal@example.org", "SY")
    await sign(console_api, "jonas@example.org", "DE")
    await sign(console_api, "lea@example.org", "FR")
    await expect(counted).to_have_text("3")
    await expect(page.locator('#world-map g[data-code="SY"]')).not_to_have_class("level-0")
    await accessible(page, axe_source, artifacts, "dashboard")

    # Export with a filter, and compare with the rows.
    await page.get_by_role("link", name="Export and delivery").click()
    await page.get_by_label("Country").select_option("FR")
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await download_info.value
    rows = read_csv(await asyncio.to_thread(Path(await download.path()).read_bytes))
    expected = await pool.fetch(
        "SELECT s.name FROM signatures s JOIN petitions p ON p.id = s.petition_id "
        "WHERE p.slug = $1 AND s.country = 'FR' AND s.counted",
        SLUG,
    )
    assert [row["name"] for row in rows] == [row["name"] for row in expected]
    assert [row["country_code"] for row in rows] == ["FR"]
    await accessible(page, axe_source, artifacts, "export")

    # The delivery page, printable, and its PDF made by the server.
    async with page.expect_download() as pdf_info:
        await page.get_by_role("link", name="Download as PDF").click()
    pdf = await asyncio.to_thread(Path(await (await pdf_info.value).path()).read_bytes)
    assert pdf.startswith(b"%PDF-")
    await asyncio.to_thread((artifacts / "console-delivery.pdf").write_bytes, pdf)
    await page.get_by_role("link", name="Open the page to print").click()
    await expect(page.get_by_text("3 signatures").first).to_be_visible()
    await page.pdf(path=str(artifacts / "console-delivery-printed.pdf"))

    # An ended session sends the browser back to signing in.
    await pool.execute("UPDATE staff_sessions SET expires_at = now()")
    await page.goto(f"{console_api}{CONSOLE}/petitions/{SLUG}")
    await expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    await context.close()


async def test_an_exporter_is_refused_admin_pages_in_arabic(
    browser: Browser,
    console_api: str,
    pool: asyncpg.Pool,
    staff: StaffTokens,
    axe_source: str,
    artifacts: Path,
) -> None:
    context, page = await new_page(browser, locale="ar")
    await page.goto(f"{console_api}{CONSOLE}/sign-in")
    assert await page.locator("html").get_attribute("dir") == "rtl"
    await accessible(page, axe_source, artifacts, "sign-in-ar")
    await page.get_by_label("رمز الفريق", exact=True).fill(staff.exporter)
    await page.get_by_role("button", name="الدخول بالرمز").click()
    await expect(page.get_by_role("heading", name="العرائض")).to_be_visible()
    await accessible(page, axe_source, artifacts, "petitions-ar")
    await page.goto(f"{console_api}{CONSOLE}/audit")
    await expect(page.get_by_role("alert")).to_have_text("دورك لا يسمح بذلك.")
    actions = await pool.fetch("SELECT actor, action FROM audit_log WHERE action LIKE 'console.%'")
    assert [(r["actor"], r["action"]) for r in actions][-1] == (
        "exporter-test",
        "console.forbidden",
    )
    await context.close()


# -- every page, in English and in Arabic; the grant and export forms by keyboard ----------


@pytest.fixture
async def busy_petition(pool: asyncpg.Pool, petition_id: int) -> str:
    """The usual petition with signatures (some agreed to hear from the campaign), one
    suspect, a partner granted it and one not, a staff account and an Arabic version:
    every page has rows."""
    await add_signatures(pool, petition_id, 12)
    await pool.execute("UPDATE signatures SET consent_updates = (id % 3 = 0)")
    held = await insert_signature(pool, hasher, petition_id, email="held@example.org")
    await pool.execute(
        "UPDATE signatures SET suspect_reason = 'rate_limit_address' WHERE id = $1", held
    )
    for code in ("daily", "weekly"):
        await create_partner(
            pool, actor="test", name=code.title(), source_code=code, origins=["https://x.example"]
        )
    await grant_petition(pool, actor="test", source_code="daily", slug=PETITION)
    await invite_staff(
        pool, actor="test", name="Lina", email="lina@example.org", role=Role.EXPORTER
    )
    await translate_petition(
        pool,
        actor="test",
        slug=PETITION,
        lang="ar",
        title="أحيلوا سوريا",
        body="نص",
        target="روسيا",
    )
    return PETITION


# Every template a signed-in admin reaches (figures.html is the dashboard's own part).
ADMIN_PAGES = (
    ("petitions", "/"),
    ("petition-new", "/petitions/new"),
    ("dashboard-grants", f"/petitions/{PETITION}"),
    ("petition-edit", f"/petitions/{PETITION}/edit"),
    ("languages", f"/petitions/{PETITION}/languages"),
    ("export-consent", f"/petitions/{PETITION}/export"),
    ("delivery", f"/petitions/{PETITION}/delivery"),
    ("suspects", f"/petitions/{PETITION}/suspects"),
    ("invalidations", f"/petitions/{PETITION}/invalidations"),
    ("erasure", "/erasure"),
    ("audit", "/audit"),
    ("partners-grants", "/partners"),
    ("staff", "/staff"),
    ("problem", "/petitions/no-such-petition"),
)


@pytest.mark.parametrize("locale", ["en-GB", "ar"])
async def test_every_console_page_passes_axe_in_english_and_in_arabic(
    browser: Browser,
    console_api: str,
    busy_petition: str,
    staff: StaffTokens,
    axe_source: str,
    artifacts: Path,
    locale: str,
) -> None:
    language = locale[:2]
    context, page = await new_page(browser, locale=locale)
    direction = "rtl" if language == "ar" else "ltr"

    async def check(name: str) -> None:
        # The delivery page is the document handed over, in the petition's language.
        if name != "all-delivery":
            assert await page.locator("html").get_attribute("dir") == direction
            assert await page.locator("html").get_attribute("lang") == language
        await accessible(page, axe_source, artifacts, f"{name}-{language}")

    # The sign-in pages: the form, the answer to an address, the emailed link's page.
    await page.goto(f"{console_api}{CONSOLE}/sign-in")
    await check("all-sign-in")
    await page.locator("#email").fill("nobody@example.org")
    await page.locator("#email").press("Enter")
    await page.wait_for_url("**/sign-in/link")
    await check("all-sign-in-sent")
    await page.goto(f"{console_api}{CONSOLE}/sign-in/not-a-real-link")
    await check("all-sign-in-link")

    await page.goto(f"{console_api}{CONSOLE}/sign-in")
    await page.locator("#token").fill(staff.admin)
    await page.locator("#token").press("Enter")
    await page.wait_for_url(f"{console_api}{CONSOLE}/")
    for name, path in ADMIN_PAGES:
        response = await page.goto(f"{console_api}{CONSOLE}{path}")
        assert response is not None
        assert response.status == (404 if name == "problem" else 200), name
        await check(f"all-{name}")

    # A form refused, with its errors beside the fields; a partner's key shown once.
    await page.goto(f"{console_api}{CONSOLE}/petitions/{PETITION}/edit")
    await page.locator("#next_goal").fill("1")
    await page.locator("#next_goal").press("Enter")
    await expect(page.locator("#next_goal")).to_have_attribute("aria-invalid", "true")
    await check("all-petition-refused")
    await page.goto(f"{console_api}{CONSOLE}/partners")
    await page.locator("#partner-name").fill("Monthly")
    await page.locator("#source_code").fill("monthly")
    await page.locator("#source_code").press("Enter")
    await expect(page.locator("#partner-key")).to_be_visible()
    await check("all-partner-created")
    await context.close()


async def tab_to(page: Page, target: Locator, limit: int = 150) -> None:
    """Press Tab from where the focus is until ``target`` has it (the keyboard reaches
    it), failing after ``limit`` presses."""
    for _ in range(limit):
        if await target.evaluate("element => element === document.activeElement"):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {target}")


async def test_grants_and_the_consent_filter_by_keyboard(
    browser: Browser,
    console_api: str,
    busy_petition: str,
    pool: asyncpg.Pool,
    staff: StaffTokens,
) -> None:
    context, page = await new_page(browser)
    await page.goto(f"{console_api}{CONSOLE}/sign-in")
    await page.locator("#token").fill(staff.admin)
    await page.locator("#token").press("Enter")
    await page.wait_for_url(f"{console_api}{CONSOLE}/")

    async def granted() -> list[str]:
        rows = await pool.fetch(
            "SELECT pa.source_code FROM partner_grants g JOIN partners pa ON pa.id = g.partner_id"
            " ORDER BY 1"
        )
        return [row["source_code"] for row in rows]

    # The petition's page: grant the partner offered, then take the other one back.
    await page.goto(f"{console_api}{CONSOLE}/petitions/{PETITION}")
    await tab_to(page, page.get_by_label("Partner to grant"))
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("The partner is granted the petition.")
    assert await granted() == ["daily", "weekly"]
    await tab_to(page, page.get_by_role("button", name="Take back: Daily"))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("The petition is taken back")
    assert await granted() == ["weekly"]

    # The partners page: grant Daily the petition again, from its row.
    await page.goto(f"{console_api}{CONSOLE}/partners")
    await tab_to(page, page.get_by_label("Petition to grant (Daily)"))
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("The partner is granted the petition.")
    assert await granted() == ["daily", "weekly"]

    # The export: only those who agreed, chosen and sent with the keyboard.
    await page.goto(f"{console_api}{CONSOLE}/petitions/{PETITION}/export")
    consent = page.get_by_label("Agreed to hear from the campaign")
    await tab_to(page, consent)
    await page.keyboard.press("ArrowDown")
    await expect(consent).to_have_value("yes")
    await tab_to(page, page.get_by_role("button", name="Download CSV"))
    async with page.expect_download() as download_info:
        await page.keyboard.press("Enter")
    download = await download_info.value
    rows = read_csv(await asyncio.to_thread(Path(await download.path()).read_bytes))
    expected = await pool.fetch(
        "SELECT name, country FROM signatures WHERE counted AND consent_updates"
        " ORDER BY created_at, id"
    )
    assert [(r["name"], r["country_code"]) for r in rows] == [
        (r["name"], r["country"]) for r in expected
    ]
    assert len(rows) > 0
    assert {r["consent_updates"] for r in rows} == {"yes"}
    await context.close()
