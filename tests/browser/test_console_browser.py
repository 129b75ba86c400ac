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
from playwright.async_api import Browser, BrowserContext, Page, expect

from countersign_core.settings import Settings
from countersign_domain.staff import Role, invite_staff
from mail_sender.sender import MailSender
from petition_api.app import create_app
from tests.support.accessibility import axe_violations, describe_violations
from tests.support.console import CONSOLE, link_path, sign_in_link
from tests.support.factories import StaffTokens
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
