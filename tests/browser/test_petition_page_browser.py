"""The petition's own page in Debian's Chromium: signing with JavaScript off and on, the
error path, the language switcher, Arabic right to left, keyboard-only signing, axe-core,
the share card and the share links' source codes, at 1280 and 375 pixels."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import asyncpg
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, ViewportSize, expect

from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from countersign_domain.confirmation_tokens import ConfirmationRef, ConfirmationTokens
from countersign_domain.petitions import translate_petition
from petition_api.app import create_app
from tests.support.accessibility import axe_violations, describe_violations
from tests.support.browser import open_page
from tests.support.factories import SLUG, add_signatures, create_staff_tokens, signature_rows
from tests.support.http import AiohttpServer, bearer
from tests.support.values import TEST_SECRET
from tests.support.waiting import eventually

expect.set_options(timeout=20_000)

PAGE = f"/petitions/{SLUG}"
TITLE = "Refer Syria to the ICC"
FRENCH = "Saisir la Cour pénale internationale"
ARABIC = "أحيلوا سوريا إلى المحكمة الجنائية الدولية"
LONG_TEXT = (
    "Hundreds of thousands of people have been killed in Syria, and the crimes committed "
    "against civilians there, by every side, have gone unpunished. The UN Security Council "
    "can refer the situation in Syria to the International Criminal Court, as it did for "
    "Darfur and Libya. A referral has been blocked by veto.\n\n" * 3
)
ARABIC_TEXT = (
    "قُتل مئات الآلاف من الناس في سوريا، وبقيت الجرائم المرتكبة بحق المدنيين من دون عقاب. "
    "يستطيع مجلس الأمن أن يحيل الوضع في سوريا إلى المحكمة الجنائية الدولية، كما فعل في "
    "دارفور وليبيا.\n\n" * 3
)
WIDE: ViewportSize = {"width": 1280, "height": 900}
NARROW: ViewportSize = {"width": 375, "height": 812}
THANKS = "Thank you for signing!"


async def translated(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE petitions SET body = $1", LONG_TEXT)
    for lang, title, body, target in (
        ("fr", FRENCH, LONG_TEXT, "La Russie"),
        ("ar", ARABIC, ARABIC_TEXT, "روسيا"),
    ):
        await translate_petition(
            pool, actor="test", slug=SLUG, lang=lang, title=title, body=body, target=target
        )


async def fill(page: Page, name: str = "Amal Haddad", email: str = "amal@example.org") -> None:
    await page.get_by_label("Full name", exact=True).fill(name)
    await page.get_by_label("Email address", exact=True).fill(email)
    await page.get_by_label("Country", exact=True).select_option("SY")


async def shot(page: Page, artifacts: Path, name: str) -> None:
    await page.screenshot(path=artifacts / f"page-{name}.png", full_page=True)


# -- signing --------------------------------------------------------------------------------


async def test_signing_with_javascript_off(
    browser: Browser, api: str, pool: asyncpg.Pool, artifacts: Path
) -> None:
    page = await open_page(
        browser, f"{api}{PAGE}?source=newsletter", java_script_enabled=False, viewport=WIDE
    )
    await expect(page.get_by_role("heading", level=1, name=TITLE)).to_be_visible()
    await fill(page)
    await page.get_by_label("Keep me updated about this campaign by email").check()
    await page.get_by_role("button", name="Sign the petition").click()
    await expect(page.get_by_role("heading", level=1, name=THANKS)).to_be_visible()
    await shot(page, artifacts, "thanks-no-js")
    [row] = await signature_rows(pool)
    assert (row["name"], row["source"], row["consent_updates"]) == (
        "Amal Haddad",
        "newsletter",
        True,
    )


async def test_signing_with_javascript_on_without_a_reload(
    browser: Browser, api: str, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    page = await open_page(browser, f"{api}{PAGE}", viewport=WIDE)
    await expect(page.locator('.progress [data-total="0"]').first).to_be_visible()
    await page.evaluate("window.stillTheSamePage = true")
    await fill(page)
    await page.get_by_role("button", name="Sign the petition").click()
    thanks = page.get_by_role("heading", level=1, name=THANKS)
    await expect(thanks).to_be_focused()
    assert await page.evaluate("window.stillTheSamePage") is True  # no reload
    # The count follows the live stream.
    await expect(page.locator('.progress [data-total="1"]').first).to_be_visible()
    assert len(await signature_rows(pool)) == 1


@pytest.mark.parametrize("scripts", [True, False], ids=["js-on", "js-off"])
async def test_errors_beside_the_fields(
    browser: Browser, api: str, pool: asyncpg.Pool, artifacts: Path, scripts: bool
) -> None:
    page = await open_page(
        browser, f"{api}{PAGE}", locale="fr-FR", java_script_enabled=scripts, viewport=WIDE
    )
    await page.get_by_label("Nom complet", exact=True).fill("Amal")
    await page.get_by_label("Adresse e-mail", exact=True).fill("not-an-address")
    await page.get_by_label("Pays", exact=True).select_option("")  # preselected: FR
    await page.get_by_role("button", name="Signer la pétition").click()
    email = page.get_by_label("Adresse e-mail", exact=True)
    await expect(email).to_have_attribute("aria-invalid", "true")
    await expect(email).to_have_value("not-an-address")  # kept
    await expect(page.locator("#error-email")).to_have_text("Indiquez une adresse e-mail valide.")
    await expect(page.locator("#error-country")).to_have_text("Ce champ est obligatoire.")
    await expect(page.get_by_label("Nom complet", exact=True)).to_have_value("Amal")
    if scripts:
        await expect(page.locator("#error-summary")).to_be_focused()
    await shot(page, artifacts, f"errors-{'js' if scripts else 'no-js'}")
    # Corrected, it signs.
    await email.fill("amal@example.org")
    await page.get_by_label("Pays", exact=True).select_option("SY")
    await page.get_by_role("button", name="Signer la pétition").click()
    thanks = page.get_by_role("heading", level=1, name="Merci d\u2019avoir signé !")
    await expect(thanks).to_be_visible()
    assert len(await signature_rows(pool)) == 1


async def test_signing_with_the_keyboard_only_and_the_focus_visible(
    browser: Browser, api: str, pool: asyncpg.Pool
) -> None:
    page = await open_page(browser, f"{api}{PAGE}", locale="en-US", viewport=WIDE)
    name = page.get_by_label("Full name", exact=True)
    for _ in range(20):  # from the top of the page, past the header's links
        await page.keyboard.press("Tab")
        if await name.evaluate("e => e === document.activeElement"):
            break
    await expect(name).to_be_focused()
    await page.keyboard.type("Amal Haddad")
    await page.keyboard.press("Tab")
    await page.keyboard.type("amal@example.org")
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Country", exact=True)).to_be_focused()
    await page.keyboard.type("Syria")
    await page.keyboard.press("Tab")  # the postal code, left empty
    await page.keyboard.press("Tab")
    await page.keyboard.press("Space")
    await expect(page.get_by_role("checkbox")).to_be_checked()
    await page.keyboard.press("Tab")  # past the honeypot, to the button
    submit = page.get_by_role("button", name="Sign the petition")
    await expect(submit).to_be_focused()
    outline = await submit.evaluate(
        "e => getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth"
    )
    assert outline == "solid 3px"
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name=THANKS)).to_be_focused()
    [row] = await signature_rows(pool)
    assert (row["country"], row["consent_updates"]) == ("SY", True)


# -- languages ------------------------------------------------------------------------------


async def test_the_language_switcher_and_arabic_right_to_left(
    browser: Browser,
    api: str,
    pool: asyncpg.Pool,
    running_worker: CounterWorker,
    artifacts: Path,
) -> None:
    await translated(pool)
    page = await open_page(browser, f"{api}{PAGE}", viewport=WIDE)
    await expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    languages = page.get_by_role("navigation", name="Languages")
    await expect(languages.get_by_role("link")).to_have_text(["English", "العربية", "Français"])
    await languages.get_by_role("link", name="Français").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(FRENCH)
    assert await page.get_attribute("html", "lang") == "fr"
    await page.get_by_role("navigation", name="Langues").get_by_role("link", name="العربية").click()
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_have_text(ARABIC)
    assert (await page.get_attribute("html", "lang"), await page.get_attribute("html", "dir")) == (
        "ar",
        "rtl",
    )
    # Right to left: the title's text starts at the right edge of its column.
    column = await page.locator("article.about").bounding_box()
    text = await heading.evaluate(
        """e => { const r = document.createRange(); r.selectNodeContents(e);
                  const b = r.getBoundingClientRect(); return {left: b.left, right: b.right}; }"""
    )
    assert column is not None
    assert abs(column["x"] + column["width"] - text["right"]) < 2
    assert text["left"] > column["x"] + 20  # shorter than the column: room on the left
    assert await heading.evaluate("e => getComputedStyle(e).direction") == "rtl"
    await shot(page, artifacts, "ar-1280")
    await page.set_viewport_size(NARROW)
    await shot(page, artifacts, "ar-375")


async def test_on_a_narrow_screen_the_form_comes_before_the_whole_text(
    browser: Browser,
    api: str,
    pool: asyncpg.Pool,
    petition_id: int,
    running_worker: CounterWorker,
    artifacts: Path,
) -> None:
    await translated(pool)
    await add_signatures(pool, petition_id, 1234)
    for lang in ("en", "ru", "fr"):
        page = await open_page(browser, f"{api}{PAGE}?lang={lang}", viewport=NARROW)
        await expect(page.locator('.progress [data-total="1234"]').first).to_be_visible()
        name = await page.locator("#field-name").bounding_box()
        assert name is not None
        # Within two screens, and the rest of the text folded behind "read more".
        assert name["y"] < 2 * NARROW["height"], (lang, name)
        await expect(page.locator("details")).not_to_have_attribute("open", "")
        await expect(page.locator("details p").first).to_be_hidden()
        await shot(page, artifacts, f"{lang}-375")
        await page.set_viewport_size(WIDE)
        await shot(page, artifacts, f"{lang}-1280")
    # "Read more" opens without JavaScript.
    page = await open_page(browser, f"{api}{PAGE}", java_script_enabled=False, viewport=NARROW)
    await page.locator("summary").click()
    await expect(page.locator("details p").first).to_be_visible()


# -- accessibility --------------------------------------------------------------------------


async def sign_in_any_language(page: Page, name: str, email: str) -> None:
    """Fill the form by its fields' ids, send it, and wait for the answer's heading."""
    await page.locator("#field-name").fill(name)
    await page.locator("#field-email").fill(email)
    await page.locator("#field-country").select_option("SY")
    await page.locator("form[data-enhance] button[type=submit]").click()
    await expect(page.locator("h1")).to_be_focused()


@pytest.fixture
async def confirming(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE petitions SET require_confirmation = true")


@pytest.mark.parametrize("locale", ["en-GB", "ar-EG"])
async def test_axe_finds_nothing_on_the_page_thank_you_and_confirmation_pages(
    browser: Browser,
    api: str,
    pool: asyncpg.Pool,
    petition_id: int,
    confirming: None,
    running_worker: CounterWorker,
    axe_source: str,
    artifacts: Path,
    locale: str,
) -> None:
    await translated(pool)
    every = ("minor", "moderate", "serious", "critical")
    lang = locale[:2]
    # The page's CSP forbids injected scripts; axe needs it lifted to run.
    page = await open_page(browser, f"{api}{PAGE}", locale=locale, bypass_csp=True, viewport=NARROW)
    found = await axe_violations(page, axe_source, every)
    assert found == [], describe_violations(found)
    # The form with its errors.
    await page.locator("form[data-enhance] button[type=submit]").click()
    await expect(page.locator("#error-summary")).to_be_focused()
    found = await axe_violations(page, axe_source, every)
    assert found == [], describe_violations(found)
    # Check your inbox.
    await sign_in_any_language(page, "Amal Haddad", "amal@example.org")
    await shot(page, artifacts, f"inbox-{lang}")
    found = await axe_violations(page, axe_source, every)
    assert found == [], describe_violations(found)
    # The confirmation link's page, then the confirmed page (with the count and sharing).
    [row] = await signature_rows(pool)
    token = ConfirmationTokens(TEST_SECRET, max_age_days=7).make(
        ConfirmationRef(row["id"], petition_id)
    )
    await page.goto(f"{api}/confirm/{token}")
    found = await axe_violations(page, axe_source, every)
    assert found == [], describe_violations(found)
    await page.locator("form button[type=submit]").click()
    await expect(page.locator(".share")).to_be_visible()
    await shot(page, artifacts, f"confirmed-{lang}")
    found = await axe_violations(page, axe_source, every)
    assert found == [], describe_violations(found)
    # The thank-you page of a petition that counts at once.
    await pool.execute("UPDATE petitions SET require_confirmation = false")
    page = await open_page(browser, f"{api}{PAGE}", locale=locale, bypass_csp=True, viewport=WIDE)
    await sign_in_any_language(page, "Rami Haddad", "rami@example.org")
    await shot(page, artifacts, f"thanks-{lang}")
    found = await axe_violations(page, axe_source, every)
    assert found == [], describe_violations(found)


# -- sharing --------------------------------------------------------------------------------


async def test_the_card_is_1200_by_630_and_changes_with_the_count(
    browser: Browser,
    aiohttp_server: AiohttpServer,
    settings: Settings,
    pool: asyncpg.Pool,
    petition_id: int,
    running_worker: CounterWorker,
    artifacts: Path,
) -> None:
    # Drawn again at every change here (the default waits a minute between drawings).
    api_settings = dataclasses.replace(settings.api, card_refresh_seconds=0)
    server = await aiohttp_server(create_app(dataclasses.replace(settings, api=api_settings)))
    api = str(server.make_url("")).rstrip("/")
    page = await open_page(browser, f"{api}{PAGE}")
    card = await page.locator('meta[property="og:image"]').get_attribute("content")
    assert card is not None
    first = await (await page.request.get(card)).body()
    image = Image.open(io.BytesIO(first))
    assert (image.format, image.size) == ("PNG", (1200, 630))
    (artifacts / "card-0.png").write_bytes(first)
    await add_signatures(pool, petition_id, 1500)

    async def redrawn() -> bytes:
        body = await (await page.request.get(card)).body()
        return body if body != first else b""

    (artifacts / "card-1500.png").write_bytes(await eventually(redrawn))


async def test_share_links_bring_signatures_staff_see_by_source(
    browser: Browser, api: str, pool: asyncpg.Pool
) -> None:
    page = await open_page(browser, f"{api}{PAGE}", viewport=WIDE)
    links = {
        name: await page.get_by_role("link", name=name).get_attribute("href")
        for name in ("WhatsApp", "Telegram", "Email")
    }
    # The petition's address each link shares (percent-encoded in the network's URL).
    shared = {
        name: unquote(re.findall(r"http%3A%2F%2F[^&]+", href or "")[0])
        for name, href in links.items()
    }
    assert shared["WhatsApp"].endswith(f"{PAGE}?source=share-whatsapp")
    # Friends open the shared links and sign, with JavaScript on or off.
    for (name, url), scripts in zip(shared.items(), (True, False, True), strict=True):
        friend = await open_page(browser, url, java_script_enabled=scripts)
        await fill(friend, name=f"{name} Friend", email=f"{name.lower()}@example.org")
        await friend.get_by_role("button", name="Sign the petition").click()
        await expect(friend.get_by_role("heading", level=1, name=THANKS)).to_be_visible()
    staff = await create_staff_tokens(pool)
    async with aiohttp.ClientSession() as session:
        response = await session.get(
            f"{api}/v1/admin/petitions/{SLUG}/summary", headers=bearer(staff.exporter)
        )
        summary: dict[str, Any] = await response.json()
    sources = {item["source"]: item["count"] for item in summary["sources"]}
    assert sources == {"share-whatsapp": 1, "share-telegram": 1, "share-email": 1}
