"""The console's languages page: a petition's text in every language with its preview,
added, refused in words, made the default and removed through the domain's rules, with
their audit entries; an exporter reads it and changes nothing."""

from __future__ import annotations

import asyncpg
import pytest
from bs4 import BeautifulSoup

from countersign_core.settings import Settings
from petition_api.app import create_app
from tests.support.console import CONSOLE, console_sign_in, page_csrf
from tests.support.factories import SLUG, StaffTokens
from tests.support.http import AiohttpClient, Client

pytestmark = pytest.mark.usefixtures("petition_id")

PAGE = f"{CONSOLE}/petitions/{SLUG}/languages"
# An Arabic version: its title, and its text in two paragraphs.
TITLE_AR = "أحيلوا سوريا إلى المحكمة"
FIRST_AR, SECOND_AR = "الفقرة الأولى", "الفقرة الثانية"


@pytest.fixture
async def console(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    return await aiohttp_client(create_app(settings))


async def translations(pool: asyncpg.Pool) -> dict[str, tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT t.lang, t.title, t.body FROM petition_translations t"
        " JOIN petitions p ON p.id = t.petition_id WHERE p.slug = $1",
        SLUG,
    )
    return {row["lang"]: (row["title"], row["body"]) for row in rows}


async def translate_actions(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT details->>'lang' AS lang FROM audit_log WHERE action = 'petition.translate'"
        " ORDER BY id"
    )
    return [row["lang"] for row in rows]


def previews(html: str) -> dict[str, str]:
    """Each preview's language -> its title."""
    soup = BeautifulSoup(html, "html.parser")
    return {
        str(article["lang"]): article.select_one(".preview-title").get_text()  # type: ignore[union-attr]
        for article in soup.select("article.preview")
    }


async def test_a_language_is_added_previewed_made_default_and_removed(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.admin)
    page = await console.get(PAGE)
    assert page.status == 200
    assert previews(await page.text()) == {"en": "Refer Syria to the ICC"}
    csrf = await page_csrf(console, PAGE)

    added = await console.post(
        PAGE,
        data={
            "csrf": csrf,
            "lang": "ar",
            "title": TITLE_AR,
            "target": "روسيا",
            "text": f"{FIRST_AR}\r\n\r\n{SECOND_AR}",
        },
    )
    assert added.status == 200  # the page again, after the redirect
    html = await added.text()
    assert "The text is saved." in html
    assert previews(html) == {"en": "Refer Syria to the ICC", "ar": TITLE_AR}
    preview = BeautifulSoup(html, "html.parser").select_one('article[lang="ar"]')
    assert preview is not None
    assert preview["dir"] == "auto"
    assert [p.get_text() for p in preview.find_all("p")][-2:] == [FIRST_AR, SECOND_AR]
    assert await translations(pool) == {"ar": (TITLE_AR, f"{FIRST_AR}\n\n{SECOND_AR}")}

    # Refusals in words, beside their field, and nothing stored.
    bad_code = await console.post(PAGE, data={"csrf": csrf, "lang": "EN1", "title": "X"})
    assert bad_code.status == 422
    assert 'id="new-lang-error"' in await bad_code.text()
    no_title = await console.post(PAGE, data={"csrf": csrf, "lang": "fr", "title": " "})
    assert no_title.status == 422
    assert "This field is required." in await no_title.text()
    assert set(await translations(pool)) == {"ar"}

    made_default = await console.post(f"{PAGE}/ar", data={"csrf": csrf, "action": "default"})
    assert "The default language is changed." in await made_default.text()
    row = await pool.fetchrow("SELECT default_lang, title FROM petitions WHERE slug = $1", SLUG)
    assert (row["default_lang"], row["title"]) == ("ar", TITLE_AR)
    assert set(await translations(pool)) == {"en"}

    kept = await console.post(f"{PAGE}/ar", data={"csrf": csrf, "action": "remove"})
    assert kept.status == 409
    assert "The default language cannot be removed" in await kept.text()
    removed = await console.post(f"{PAGE}/en", data={"csrf": csrf, "action": "remove"})
    assert "The language is removed." in await removed.text()
    assert await translations(pool) == {}
    assert await translate_actions(pool) == ["ar", "en"]


async def test_an_exporter_reads_the_languages_and_changes_nothing(
    console: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    await console_sign_in(console, staff.exporter)
    page = await console.get(PAGE)
    assert page.status == 200
    html = await page.text()
    assert previews(html) == {"en": "Refer Syria to the ICC"}
    assert 'action="/admin/petitions/' not in html  # no form to change them
    csrf = await page_csrf(console, PAGE)
    forged = await console.post(PAGE, data={"csrf": csrf, "lang": "fr", "title": "Forgé"})
    assert forged.status == 403
    assert await translations(pool) == {}
    route = await pool.fetchval(
        "SELECT details->>'route' FROM audit_log WHERE action = 'console.forbidden'"
    )
    assert route == "/admin/petitions/{slug}/languages"
