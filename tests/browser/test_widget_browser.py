"""The widget in a real browser (headless Chromium), on partner pages served from another
origin than the API, with a real counter worker pushing changes to it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, Locator, Page, Route, expect

from counter_worker.worker import CounterWorker
from countersign_domain.petitions import translate_petition
from petition_api.widget_assets import partner_page
from tests.support.accessibility import axe_violations, describe_violations
from tests.support.browser import open_page
from tests.support.factories import SLUG, add_signatures
from tests.support.http import Site
from tests.support.mail import confirmation_link, parse
from tests.support.processes import DevRun
from tests.support.waiting import eventually

expect.set_options(timeout=20_000)

TITLE = "Refer Syria to the ICC"


def snippet_page(api: str, source: str | None = "daily-example", **options: str) -> str:
    """The partner page with one widget; ``options`` become more data- attributes."""
    html = partner_page(api, [(SLUG, source)])
    extra = "".join(f' data-{name}="{value}"' for name, value in options.items())
    return html.replace(
        f'data-countersign-petition="{SLUG}"', f'data-countersign-petition="{SLUG}"{extra}'
    )


def widget(page: Page, index: int = 0) -> Locator:
    return page.locator("[data-countersign-petition]").nth(index)


async def shows_total(where: Locator, total: int) -> None:
    await expect(where.locator(f'[data-total="{total}"]')).to_be_visible()


async def rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    found: list[asyncpg.Record] = await pool.fetch("SELECT * FROM signatures ORDER BY id")
    return found


async def fill_form(where: Locator, name: str, email: str) -> None:
    await where.get_by_label("Full name", exact=True).fill(name)
    await where.get_by_label("Email", exact=True).fill(email)


# -- rendering ----------------------------------------------------------------------------


async def test_the_widget_renders_from_the_snippet(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    petition_id: int,
    running_worker: CounterWorker,
) -> None:
    await add_signatures(pool, petition_id, 12, countries=("SY", "FR", "SY"), sources=(None,))
    page = await open_page(browser, partner.page("article", snippet_page(api)))
    box = widget(page)
    await expect(box.get_by_role("heading", name=TITLE)).to_be_visible()
    await expect(box.get_by_text("To: Russia")).to_be_visible()
    await expect(box.get_by_text("Text", exact=True)).to_be_visible()
    await shows_total(box, 12)
    await expect(box.locator(".count")).to_have_text("12 of 100,000 signatures")
    bar = box.get_by_role("progressbar")
    await expect(bar).to_have_attribute("aria-valuenow", "12")
    await expect(bar).to_have_attribute("aria-valuemax", "100000")
    # Top countries, named in the reader's language; those with fewer signatures than
    # the public breakdown shows on their own (5) are "Other countries".
    await expect(box.locator(".top li")).to_have_text(["Syria8", "Other countries4"])
    # The form: every field labelled; the country preselected from the locale (en-GB).
    for label in ("Full name", "Email", "Country", "Postal code (optional)"):
        await expect(box.get_by_label(label, exact=True)).to_be_visible()
    await expect(box.get_by_label("Country", exact=True)).to_have_value("GB")
    await expect(
        box.get_by_label("Keep me updated about this campaign by email", exact=True)
    ).not_to_be_checked()
    honeypot = box.locator("input[name=website]")
    await expect(honeypot).to_have_attribute("tabindex", "-1")
    await expect(honeypot).to_have_attribute("autocomplete", "off")
    assert (await honeypot.bounding_box() or {"x": 0})["x"] < -1000  # off-screen
    # The partner's CSS hides every button and paints text red: not inside the widget.
    await expect(box.get_by_role("button", name="Sign the petition")).to_be_visible()
    color = await box.get_by_role("heading", name=TITLE).evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(26, 26, 26)"


async def test_several_widgets_on_a_page_and_the_source_from_the_page_address(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    running_worker: CounterWorker,
) -> None:
    await pool.execute(
        """INSERT INTO petitions (slug, title, status, allowed_origins, require_confirmation)
           VALUES ('free-them', 'Free them', 'open', $1, false)""",
        [partner.origin],
    )
    html = partner_page(api, [(SLUG, "daily-example"), ("free-them", None)])
    page = await open_page(browser, partner.page("two", html) + "?source=newsletter")
    first, second = widget(page, 0), widget(page, 1)
    await expect(first.get_by_role("heading", name=TITLE)).to_be_visible()
    await expect(second.get_by_role("heading", name="Free them")).to_be_visible()

    await fill_form(second, "Lina Khoury", "lina@example.org")
    await second.get_by_role("button", name="Sign the petition").click()
    await expect(second.get_by_role("heading", name="Thank you for signing!")).to_be_visible()
    await fill_form(first, "Amal Haddad", "amal@example.org")
    await first.get_by_role("button", name="Sign the petition").click()
    await expect(first.get_by_role("heading", name="Thank you for signing!")).to_be_visible()

    sources = {r["email"]: r["source"] for r in await rows(pool)}
    # data-source wins; without it, the page's ?source= is used.
    assert sources == {"lina@example.org": "newsletter", "amal@example.org": "daily-example"}
    await shows_total(second, 1)


# -- signing ------------------------------------------------------------------------------


async def test_signing_by_keyboard_only(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    page = await open_page(browser, partner.page("article", snippet_page(api)))
    box = widget(page)
    await shows_total(box, 0)
    keyboard = page.keyboard
    await keyboard.press("Tab")
    await expect(box.get_by_label("Full name", exact=True)).to_be_focused()
    await keyboard.type("Amal Haddad")
    await keyboard.press("Tab")
    await keyboard.type("amal@example.org")
    await keyboard.press("Tab")
    await expect(box.get_by_label("Country", exact=True)).to_be_focused()
    await keyboard.type("Syria")
    await keyboard.press("Tab")
    await keyboard.type("12345")
    await keyboard.press("Tab")
    await keyboard.press("Space")
    await expect(box.get_by_role("checkbox")).to_be_checked()
    await keyboard.press("Tab")  # past the honeypot, straight to the button
    submit = box.get_by_role("button", name="Sign the petition")
    await expect(submit).to_be_focused()
    # The focus is visible.
    outline = await submit.evaluate(
        "e => getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth"
    )
    assert outline == "solid 3px"
    await keyboard.press("Enter")

    thanks = box.get_by_role("heading", name="Thank you for signing!")
    await expect(thanks).to_be_focused()
    [row] = await rows(pool)
    assert (row["name"], row["email"], row["country"], row["postal_code"]) == (
        "Amal Haddad",
        "amal@example.org",
        "SY",
        "12345",
    )
    assert row["consent_updates"] is True
    assert row["source"] == "daily-example"
    await shows_total(box, 1)


async def test_field_errors_are_shown_beside_the_fields_and_announced(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    page = await open_page(browser, partner.page("article", snippet_page(api)))
    box = widget(page)
    await shows_total(box, 0)
    await fill_form(box, "Cheap pills at www.pills.example", "not-an-address")
    await box.get_by_label("Postal code (optional)", exact=True).fill("<b>")
    await box.get_by_role("button", name="Sign the petition").click()

    name = box.get_by_label("Full name", exact=True)
    await expect(box.get_by_role("alert")).to_have_text("Please correct the highlighted fields.")
    await expect(name).to_be_focused()
    for label, message in [
        ("Full name", "Enter your name, without web addresses."),
        ("Email", "Enter a valid email address."),
        ("Postal code (optional)", "Check this field."),
    ]:
        field = box.get_by_label(label, exact=True)
        await expect(field).to_have_attribute("aria-invalid", "true")
        error_id = await field.get_attribute("aria-describedby")
        await expect(box.locator(f"#{error_id}")).to_have_text(message)
        await expect(field).to_have_accessible_description(message)
    await expect(box.get_by_label("Country", exact=True)).not_to_have_attribute(
        "aria-invalid", "true"
    )
    assert await rows(pool) == []

    # Corrected, the errors go and the signature is taken.
    await name.fill("")
    await box.get_by_label("Email", exact=True).fill("amal@example.org")
    await box.get_by_label("Postal code (optional)", exact=True).fill("")
    await box.get_by_role("button", name="Sign the petition").click()
    await expect(box.locator("#cs-name-err")).to_have_text("This field is required.")
    await expect(box.get_by_label("Email", exact=True)).not_to_have_attribute(
        "aria-invalid", "true"
    )
    await name.fill("Amal Haddad")
    await box.get_by_role("button", name="Sign the petition").click()
    await expect(box.get_by_role("heading", name="Thank you for signing!")).to_be_visible()
    assert len(await rows(pool)) == 1


async def test_messages_for_network_failure_rate_limit_and_closed_petition(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    page = await open_page(browser, partner.page("article", snippet_page(api)))
    box = widget(page)
    await shows_total(box, 0)
    await fill_form(box, "Amal Haddad", "amal@example.org")
    submit = box.get_by_role("button", name="Sign the petition")
    alert = box.get_by_role("alert")

    # The connection drops (the browser sees a network error).
    await page.route("**/signatures", lambda route: route.abort("internetdisconnected"))
    await submit.click()
    await expect(alert).to_have_text("No connection to the petition. Check your network and retry.")
    # The API has no rate limit of its own yet; a proxy in front may answer 429.
    await page.unroute("**/signatures")
    await page.route("**/signatures", rate_limited)
    await submit.click()
    await expect(alert).to_have_text("Too many attempts: please wait a minute and retry.")
    await page.unroute("**/signatures")
    assert await rows(pool) == []

    # The real API: the petition closed after the page loaded.
    await pool.execute("UPDATE petitions SET status = 'closed'")
    await submit.click()
    await expect(alert).to_have_text("This petition is closed.")
    assert await rows(pool) == []


async def test_a_closed_petition_shows_no_form(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    await pool.execute("UPDATE petitions SET status = 'closed'")
    page = await open_page(browser, partner.page("article", snippet_page(api)))
    box = widget(page)
    await expect(box.get_by_role("alert")).to_have_text("This petition is closed.")
    await shows_total(box, 0)
    await expect(box.locator("form")).to_have_count(0)


async def rate_limited(route: Route) -> None:
    body = {"error": {"code": "rate_limited", "message": "too many requests"}}
    await route.fulfill(status=429, json=body, headers={"Access-Control-Allow-Origin": "*"})


# -- live counts --------------------------------------------------------------------------


async def test_after_signing_the_total_rises_without_reload_on_every_page(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    running_worker: CounterWorker,
    artifacts: Path,
) -> None:
    url = partner.page("article", snippet_page(api))
    requests: list[str] = []
    signer_page = await open_page(
        browser, url, requests=requests, viewport={"width": 900, "height": 1500}
    )
    reader_page = await open_page(browser, url, requests=requests)  # another visitor
    box, other = widget(signer_page), widget(reader_page)
    await shows_total(box, 0)
    await shows_total(other, 0)
    await signer_page.screenshot(path=artifacts / "widget-before-signing.png", full_page=True)

    await fill_form(box, "Amal Haddad", "amal@example.org")
    await box.get_by_label("Country", exact=True).select_option("SY")
    await box.get_by_role("button", name="Sign the petition").click()
    await expect(box.get_by_role("heading", name="Thank you for signing!")).to_be_visible()
    # Pushed by the worker over the live stream, to both pages: no reload, no polling.
    await shows_total(box, 1)
    await shows_total(other, 1)
    await expect(other.locator(".top li")).to_have_text(["Other countries1"])
    await signer_page.screenshot(path=artifacts / "widget-after-signing.png", full_page=True)
    assert not [r for r in requests if "/counts" in r]
    assert len([r for r in requests if r.endswith("/live")]) == 2

    # The thank-you state: a link to copy and plain share links, no third-party script.
    link = box.get_by_label("Link to share", exact=True)
    await expect(link).to_have_value(url)
    await box.get_by_role("button", name="Copy link").click()
    await expect(box.get_by_role("alert")).to_have_text("Link copied.")
    shares = {
        name: await box.get_by_role("link", name=name).get_attribute("href")
        for name in ("X", "Facebook", "WhatsApp", "Telegram", "Email")
    }
    encoded = url.replace(":", "%3A").replace("/", "%2F")
    assert re.match(
        rf"https://twitter\.com/intent/tweet\?text=I%20signed.*&url={re.escape(encoded)}$",
        str(shares["X"]),
    )
    assert shares["Facebook"] == f"https://www.facebook.com/sharer/sharer.php?u={encoded}"
    assert str(shares["Email"]).startswith("mailto:?subject=Refer%20Syria%20to%20the%20ICC&body=")
    scripts = await signer_page.evaluate("[...document.scripts].map(s => s.src)")
    assert all(src.startswith(api) for src in scripts)


async def test_polling_when_the_browser_has_no_event_source(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    petition_id: int,
    running_worker: CounterWorker,
) -> None:
    context = await browser.new_context(locale="en-GB")
    await context.add_init_script("delete window.EventSource")
    page = await context.new_page()
    polled: list[str] = []
    page.on(
        "request", lambda request: polled.append(request.url) if "/counts" in request.url else None
    )
    await page.goto(partner.page("article", snippet_page(api, poll="1")))
    box = widget(page)
    await shows_total(box, 0)
    await add_signatures(pool, petition_id, 2)
    await shows_total(box, 2)
    assert len(polled) >= 2


async def test_polling_when_the_stream_fails(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    petition_id: int,
    running_worker: CounterWorker,
) -> None:
    context = await browser.new_context(locale="en-GB")
    await context.route("**/live", lambda route: route.abort("connectionrefused"))
    page = await context.new_page()
    await page.goto(partner.page("article", snippet_page(api, poll="1")))
    box = widget(page)
    await shows_total(box, 0)
    await add_signatures(pool, petition_id, 3)
    await shows_total(box, 3)


# -- embedding and origins ----------------------------------------------------------------


def iframe_page(api: str, slug: str = SLUG) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Partner</title>'
        f'</head><body><main><iframe src="{api}/embed/{slug}?lang=fr" title="Pétition" '
        'width="600" height="1400"></iframe></main></body></html>'
    )


async def test_the_widget_and_the_embed_say_when_the_goal_is_reached(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    await pool.execute("UPDATE petitions SET goal = 10")
    await add_signatures(pool, await pool.fetchval("SELECT id FROM petitions"), 16)
    page = await open_page(browser, partner.page("article", snippet_page(api)))
    for box in (widget(page), (await open_page(browser, f"{api}/embed/{SLUG}")).locator("body")):
        await shows_total(box, 16)
        await expect(box.locator(".count")).to_have_text("Goal reached: 16 signatures!")
        bar = box.get_by_role("progressbar")
        await expect(bar).to_have_attribute("aria-valuenow", "10")  # full, never past it


async def test_the_widget_shows_the_petition_in_its_language_and_marks_any_other(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    await translate_petition(
        pool, actor="test", slug=SLUG, lang="fr", title="Saisir la CPI", body="Texte"
    )
    french = await open_page(browser, partner.page("fr", snippet_page(api, lang="fr")))
    heading = widget(french).get_by_role("heading", name="Saisir la CPI")
    await expect(heading).to_be_visible()
    assert await heading.get_attribute("lang") is None  # the widget's own language
    arabic = await open_page(browser, partner.page("ar", snippet_page(api, lang="ar")))
    heading = widget(arabic).get_by_role("heading", name=TITLE)  # no Arabic text: the default
    await expect(heading).to_have_attribute("lang", "en")
    await expect(heading).to_have_attribute("dir", "auto")


async def test_the_iframe_embed(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    page = await open_page(browser, partner.page("framed", iframe_page(api)), locale="fr-FR")
    frame = page.frame_locator("iframe")
    await expect(frame.get_by_role("heading", name=TITLE)).to_be_visible()
    await shows_total(frame.locator("body"), 0)
    await frame.get_by_label("Nom complet", exact=True).fill("Amal Haddad")
    await frame.get_by_label("E-mail", exact=True).fill("amal@example.org")
    await expect(frame.get_by_label("Pays", exact=True)).to_have_value("FR")
    await frame.get_by_role("button", name="Signer la pétition").click()
    await expect(frame.get_by_role("heading", name="Merci d\u2019avoir signé !")).to_be_visible()
    await shows_total(frame.locator("body"), 1)
    [row] = await rows(pool)
    assert row["country"] == "FR"


async def test_the_iframe_embed_is_refused_to_other_origins(
    browser: Browser, api: str, stranger: Site, pool: asyncpg.Pool
) -> None:
    refusals: list[str] = []
    page = await (await browser.new_context()).new_page()
    page.on(
        "console",
        lambda message: (
            refusals.append(message.text) if "frame-ancestors" in message.text else None
        ),
    )
    await page.goto(stranger.page("framed", iframe_page(api)))

    async def refused() -> bool:
        return bool(refusals)

    await eventually(refused)
    frame = page.frames[1]
    assert await frame.locator("[data-countersign-petition]").count() == 0


async def test_another_site_cannot_make_its_visitors_sign_with_a_form(
    browser: Browser, api: str, stranger: Site, pool: asyncpg.Pool
) -> None:
    # A form posted by script needs no preflight: the browser sends it, with its Origin.
    fields = {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"}
    inputs = "".join(f'<input name="{k}" value="{v}">' for k, v in fields.items())
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Win</title></head>'
        f'<body><form method="post" action="{api}/v1/petitions/{SLUG}/signatures">{inputs}'
        "</form><script>document.forms[0].submit()</script></body></html>"
    )
    page = await (await browser.new_context()).new_page()
    async with page.expect_response(lambda r: r.url.endswith("/signatures")) as answer:
        await page.goto(stranger.page("trap", html))
    response = await answer.value
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "origin_not_allowed"
    assert await rows(pool) == []


async def test_an_origin_that_is_not_allowed_gets_no_cors_grant(
    browser: Browser, api: str, stranger: Site, pool: asyncpg.Pool
) -> None:
    page = await open_page(browser, stranger.page("article", snippet_page(api)))
    box = widget(page)
    # The script loads (it is public), but the browser refuses it the petition's data.
    await expect(box.get_by_text("This petition could not be loaded.")).to_be_visible()
    outcome = await page.evaluate(
        """async (url) => {
             try {
               await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                 body: JSON.stringify({name: "Amal Haddad", email: "amal@example.org",
                                       country: "SY"})});
               return "sent";
             } catch (error) { return error.name; }
           }""",
        f"{api}/v1/petitions/{SLUG}/signatures",
    )
    assert outcome == "TypeError"  # the preflight was refused; the POST never went out
    assert await rows(pool) == []


# -- languages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "label", "button", "direction", "syria"),
    [
        ("fr-FR", "Nom complet", "Signer la pétition", "ltr", "Syrie"),
        ("ru-RU", "Имя и фамилия", "Подписать петицию", "ltr", "Сирия"),
        ("ar-EG", "الاسم الكامل", "وقّع العريضة", "rtl", "سوريا"),
    ],
)
async def test_the_widget_speaks_the_reader_language(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    petition_id: int,
    running_worker: CounterWorker,
    locale: str,
    label: str,
    button: str,
    direction: str,
    syria: str,
) -> None:
    await add_signatures(pool, petition_id, 5, countries=("SY",))
    page = await open_page(browser, partner.page("article", snippet_page(api)), locale=locale)
    box = widget(page)
    await expect(box.get_by_label(label, exact=True)).to_be_visible()
    await expect(box.get_by_role("button", name=button)).to_be_visible()
    await expect(box.locator("section")).to_have_attribute("dir", direction)
    await expect(box.locator("section")).to_have_attribute("lang", locale.split("-")[0])
    await expect(box.locator(".top li span").first).to_have_text(syria)
    region = locale.split("-")[1]
    await expect(box.locator("select")).to_have_value(region)


@pytest.mark.parametrize(
    ("locale", "said", "policy"),
    [
        ("en-GB", "Your data is held by Syria Justice Campaign.", "Privacy policy"),
        ("fr-FR", "Vos données sont conservées par Syria Justice Campaign.", "Politique"),
        ("ar-EG", "يحتفظ Syria Justice Campaign ببياناتك.", "سياسة الخصوصية"),
    ],
)
async def test_the_privacy_notice_is_beside_the_consent_box(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    running_worker: CounterWorker,
    locale: str,
    said: str,
    policy: str,
) -> None:
    await pool.execute(
        "UPDATE petitions SET data_controller = $1, privacy_policy_url = $2",
        "Syria Justice Campaign",
        "https://campaign.example/privacy",
    )
    page = await open_page(browser, partner.page("article", snippet_page(api)), locale=locale)
    notice = widget(page).locator(".privacy")
    await expect(notice).to_contain_text(said)
    link = notice.get_by_role("link", name=re.compile(policy))
    await expect(link).to_have_attribute("href", "https://campaign.example/privacy")
    # Right after the consent box.
    following = (
        await widget(page)
        .locator("#cs-consent_updates")
        .evaluate("input => input.closest('div').nextElementSibling.className")
    )
    assert following == "privacy"


async def test_the_embed_page_shows_the_privacy_notice_in_its_language(
    browser: Browser, api: str, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    await pool.execute("UPDATE petitions SET data_controller = 'Syria Justice Campaign'")
    page = await open_page(browser, f"{api}/embed/{SLUG}?lang=ru", locale="ru-RU")
    await expect(widget(page).locator(".privacy")).to_have_text(
        "Ваши данные хранит Syria Justice Campaign. "
    )


async def test_texts_can_be_overridden_per_language(
    browser: Browser, api: str, partner: Site, pool: asyncpg.Pool, running_worker: CounterWorker
) -> None:
    overrides = {
        "fr": {"submit": "Je signe !"},
        "en": {"submit": "Add my name", "privacy": "{controller} keeps what you send."},
    }
    await pool.execute("UPDATE petitions SET data_controller = 'Syria Justice Campaign'")
    html = snippet_page(api).replace(
        "<script src=",
        f"<script>window.CountersignTexts = {json.dumps(overrides)};</script>\n<script src=",
    )
    url = partner.page("custom", html)
    french = widget(await open_page(browser, url, locale="fr-CA"))
    await expect(french.get_by_role("button", name="Je signe !")).to_be_visible()
    await expect(
        french.get_by_label("Nom complet", exact=True)
    ).to_be_visible()  # the rest stays French
    english = widget(await open_page(browser, url, locale="en-US"))
    await expect(english.get_by_role("button", name="Add my name")).to_be_visible()
    await expect(english.locator(".privacy")).to_have_text(
        "Syria Justice Campaign keeps what you send. "
    )


# -- accessibility ------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en-GB", "ar-EG"])
async def test_no_serious_accessibility_violations(
    browser: Browser,
    api: str,
    partner: Site,
    pool: asyncpg.Pool,
    petition_id: int,
    running_worker: CounterWorker,
    axe_source: str,
    locale: str,
) -> None:
    await add_signatures(pool, petition_id, 5)
    await pool.execute(
        "UPDATE petitions SET data_controller = 'Syria Justice Campaign', "
        "privacy_policy_url = 'https://campaign.example/privacy'"
    )
    page = await open_page(browser, partner.page("article", snippet_page(api)), locale=locale)
    box = widget(page)
    await shows_total(box, 5)
    assert (found := await axe_violations(page, axe_source)) == [], describe_violations(found)

    # With errors on display.
    await box.get_by_role("button").click()
    await expect(box.locator("[aria-invalid=true]").first).to_be_visible()
    assert (found := await axe_violations(page, axe_source)) == [], describe_violations(found)

    # The thank-you state.
    await fill_form_any_language(box)
    await box.get_by_role("button").click()
    await expect(box.locator(".thanks")).to_be_visible()
    assert (found := await axe_violations(page, axe_source)) == [], describe_violations(found)


async def fill_form_any_language(box: Locator) -> None:
    await box.locator("#cs-name").fill("Amal Haddad")
    await box.locator("#cs-email").fill("amal@example.org")
    await box.locator("#cs-country").select_option("SY")


async def test_the_embed_page_has_no_serious_accessibility_violations(
    browser: Browser, api: str, running_worker: CounterWorker, axe_source: str
) -> None:
    # The page's CSP forbids injected scripts; axe needs it lifted to run.
    page = await open_page(browser, f"{api}/embed/{SLUG}", bypass_csp=True)
    await shows_total(widget(page), 0)
    assert (found := await axe_violations(page, axe_source)) == [], describe_violations(found)


# -- countersign dev ----------------------------------------------------------------------


async def test_the_dev_demo_partner_page(browser: Browser, dev: DevRun) -> None:
    page = await open_page(browser, dev.partner_page)
    box = widget(page)
    title = "Refer Syria to the International Criminal Court"
    await expect(box.get_by_role("heading", name=title)).to_be_visible()
    await shows_total(box, 0)
    await fill_form(box, "Amal Haddad", "amal@example.org")
    await box.get_by_role("button", name="Sign the petition").click()
    # The demo petition asks signers to confirm by email: the widget says so, and the
    # signature counts only once the link in the email is followed and confirmed.
    await expect(box.get_by_role("heading", name="Thank you for signing!")).to_be_visible()
    await expect(box.get_by_text("Check your inbox")).to_be_visible()
    await shows_total(box, 0)

    async def caught() -> list[Path]:
        return sorted(dev.mail_dir.glob("*.eml"))

    [email] = await eventually(caught)
    confirm = await browser.new_page()
    await confirm.goto(confirmation_link(parse(email.read_bytes())))
    await confirm.get_by_role("button", name="Confirm my signature").click()
    await expect(confirm.get_by_text("your signature is confirmed")).to_be_visible()
    await shows_total(box, 1)  # pushed to the partner page, no reload
