"""A petition's own page: read, sign and share it, in the reader's language, as a browser
with JavaScript off gets it; the home page, the HTML error pages, the share card,
compression and weight. (tests/browser/test_petition_page_browser.py: with JavaScript.)"""

from __future__ import annotations

import dataclasses
import gzip
import io
import re
from datetime import UTC, datetime
from typing import Any

import asyncpg
import brotli
import pytest
from bs4 import BeautifulSoup, Tag
from PIL import Image

from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from countersign_core.texts import TextCatalog
from countersign_domain.petitions import Petition, PetitionText, translate_petition
from petition_api.app import create_app
from petition_api.cards import CardRenderer, Writer, draw_card
from tests.support.factories import SLUG, add_signatures, signature_rows
from tests.support.http import AiohttpClient, Client

PAGE = f"/petitions/{SLUG}"
FRENCH = "Saisir la Cour pénale internationale"
ARABIC = "أحيلوا سوريا إلى المحكمة الجنائية الدولية"
RUSSIAN = "Передайте дело Сирии в Международный уголовный суд"


async def translated(pool: asyncpg.Pool) -> None:
    for lang, title, target in (("fr", FRENCH, "La Russie"), ("ar", ARABIC, "روسيا")):
        await translate_petition(
            pool, actor="test", slug=SLUG, lang=lang, title=title, body="Texte.", target=target
        )


async def page_of(response: Any, status: int = 200) -> BeautifulSoup:
    text = await response.text()
    assert response.status == status, text
    assert response.headers["Content-Type"].startswith("text/html")
    return BeautifulSoup(text, "html.parser")


def one(soup: BeautifulSoup | Tag, selector: str) -> Tag:
    found = soup.select_one(selector)
    assert found is not None, selector
    return found


def meta(soup: BeautifulSoup, name: str) -> str:
    tag = soup.find("meta", attrs={"property": name}) or soup.find("meta", attrs={"name": name})
    assert isinstance(tag, Tag), name
    return str(tag["content"])


def visible_count(soup: BeautifulSoup) -> str:
    [shown] = [p for p in soup.select(".progress p.count") if not p.has_attr("hidden")]
    return shown.get_text()


# -- reading --------------------------------------------------------------------------------


async def test_the_page_speaks_the_readers_language_in_the_order_of_the_rules(
    client: Client, pool: asyncpg.Pool
) -> None:
    await translated(pool)
    french = await page_of(await client.get(PAGE, headers={"Accept-Language": "fr-FR, en"}))
    html = one(french, "html")
    assert (html["lang"], html["dir"]) == ("fr", "ltr")
    assert one(french, "h1").get_text() == FRENCH
    assert not one(french, "article.about").has_attr("lang")  # in the page's language
    # ?lang= first, whatever the browser says.
    arabic = await page_of(await client.get(f"{PAGE}?lang=ar", headers={"Accept-Language": "fr"}))
    assert (one(arabic, "html")["lang"], one(arabic, "html")["dir"]) == ("ar", "rtl")
    assert one(arabic, "h1").get_text() == ARABIC
    # Neither: the petition's default language.
    english = await page_of(await client.get(PAGE, headers={"Accept-Language": "de"}))
    assert one(english, "h1").get_text() == "Refer Syria to the ICC"
    # A ?lang= that is no language tag (a damaged shared link) is ignored, not refused.
    for damaged in ("%C2%9A", "fr_FR!", ""):
        kept = await page_of(
            await client.get(f"{PAGE}?lang={damaged}", headers={"Accept-Language": "fr"})
        )
        assert one(kept, "h1").get_text() == FRENCH
    # The switcher lists the petition's languages, each named in itself.
    switcher = [(a.get_text(), a["href"], a.get("aria-current")) for a in french.select("nav a")]
    assert switcher == [
        ("English", f"{PAGE}?lang=en", None),
        ("العربية", f"{PAGE}?lang=ar", None),
        ("Français", f"{PAGE}?lang=fr", "page"),
    ]
    assert [a["lang"] for a in french.select("nav a")] == ["en", "ar", "fr"]


async def test_text_in_another_language_than_the_page_is_marked(
    client: Client, pool: asyncpg.Pool
) -> None:
    # Russian interface texts, but no Russian translation: the English text is marked.
    soup = await page_of(await client.get(PAGE, headers={"Accept-Language": "ru"}))
    assert one(soup, "html")["lang"] == "ru"
    about = one(soup, "article.about")
    assert (about["lang"], about["dir"]) == ("en", "auto")
    assert one(soup, "h1").get_text() == "Refer Syria to the ICC"
    assert one(soup, "#sign-heading").get_text() == "Подписать петицию"


async def test_link_previews_per_language(client: Client, pool: asyncpg.Pool) -> None:
    await translated(pool)
    soup = await page_of(await client.get(f"{PAGE}?lang=fr"))
    base = str(client.make_url("")).rstrip("/")
    assert meta(soup, "og:title") == FRENCH
    assert meta(soup, "og:url") == f"{base}{PAGE}?lang=fr"
    assert one(soup, "link[rel=canonical]")["href"] == f"{base}{PAGE}?lang=fr"
    assert meta(soup, "og:image") == f"{base}{PAGE}/card.png?lang=fr"
    assert (meta(soup, "og:image:width"), meta(soup, "og:image:height")) == ("1200", "630")
    assert meta(soup, "og:description") == "Texte."
    assert meta(soup, "twitter:card") == "summary_large_image"
    assert meta(soup, "twitter:image") == meta(soup, "og:image")
    alternates = {a["hreflang"]: a["href"] for a in soup.select("link[rel=alternate]")}
    assert alternates == {lang: f"{base}{PAGE}?lang={lang}" for lang in ("en", "ar", "fr")}


async def test_count_top_countries_form_and_privacy_notice(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    pool: asyncpg.Pool,
    petition_id: int,
    worker: CounterWorker,
) -> None:
    privacy = dataclasses.replace(
        settings.privacy,
        data_controller="Syria Justice Campaign",
        policy_url="https://example.org/privacy",
    )
    client = await aiohttp_client(create_app(dataclasses.replace(settings, privacy=privacy)))
    await add_signatures(pool, petition_id, 1234, countries=("SY", "FR", "SY", "DE"))
    await worker.drain()
    soup = await page_of(await client.get(PAGE, headers={"Accept-Language": "fr"}))
    assert visible_count(soup) == "1\u202f234 signatures sur 100\u202f000"
    progress = one(soup, "progress")
    assert (progress["value"], progress["max"]) == ("1234", "100000")
    top = [(li["data-code"], li.get_text(" ", strip=True)) for li in soup.select(".top li")]
    assert top == [("SY", "Syrie 617"), ("FR", "France 309"), ("DE", "Allemagne 308")]
    labels = [
        one(soup, f"label[for={field['id']}]").get_text(strip=True)
        for field in soup.select("form [name]:not([type=hidden]):not([name=website])")
    ]
    assert labels == [
        "Nom complet",
        "Adresse e-mail",
        "Pays",
        "Code postal (facultatif)",
        "Tenez-moi informé·e de cette campagne par e-mail",
    ]
    notice = one(soup, "#privacy-notice")
    assert "Vos données sont conservées par Syria Justice Campaign." in notice.get_text()
    assert one(notice, "a")["href"] == "https://example.org/privacy"
    assert one(soup, "#field-consent_updates")["aria-describedby"] == "privacy-notice"
    # The honeypot is out of sight and out of the tab order.
    assert one(soup, "#field-website")["tabindex"] == "-1"


async def test_the_goal_reached_is_said_and_the_bar_stops_full(
    client: Client, pool: asyncpg.Pool, petition_id: int, worker: CounterWorker
) -> None:
    await pool.execute("UPDATE petitions SET goal = 10")
    await add_signatures(pool, petition_id, 16)
    await worker.drain()
    soup = await page_of(await client.get(PAGE))
    assert visible_count(soup) == "16 signatures: the goal of 10 is reached!"
    progress = one(soup, "progress")
    assert (progress["value"], progress["max"]) == ("10", "10")
    assert progress["aria-labelledby"] == "count-reached"


async def test_the_text_folds_behind_read_more(client: Client, pool: asyncpg.Pool) -> None:
    body = "First paragraph, short.\n\nSecond paragraph.\n\nThird paragraph."
    await pool.execute("UPDATE petitions SET body = $1", body)
    soup = await page_of(await client.get(PAGE))
    shown = [p.get_text() for p in soup.select(".text > p")]
    folded = [p.get_text() for p in soup.select(".text details p")]
    assert (shown, folded) == (
        ["First paragraph, short."],
        ["Second paragraph.", "Third paragraph."],
    )
    assert one(soup, "summary").get_text() == "Read the full text"


# -- signing without JavaScript -------------------------------------------------------------


def form_of(soup: BeautifulSoup, **fields: str) -> dict[str, str]:
    """What a browser posts: the form's own fields (hidden ones included), as filled."""
    posted = {
        str(field["name"]): str(field.get("value", ""))
        for field in soup.select("form[data-enhance] input[name]")
        if field.get("type") != "checkbox"
    }
    return {**posted, **fields}


async def test_signing_with_the_form_answers_a_thank_you_page(
    client: Client, pool: asyncpg.Pool
) -> None:
    soup = await page_of(await client.get(f"{PAGE}?source=share-whatsapp"))
    body = form_of(
        soup,
        name="Amal Haddad",
        email="amal@example.org",
        country="SY",
        consent_updates="on",
    )
    assert body["source"] == "share-whatsapp"
    answer = await page_of(await client.post(PAGE, data=body), 201)
    assert one(answer, "h1").get_text() == "Thank you for signing!"
    assert [a.get_text() for a in answer.select(".share li a")] == [
        "Email",
        "WhatsApp",
        "Telegram",
        "X",
        "Facebook",
    ]
    [row] = await signature_rows(pool)
    assert (row["name"], row["source"], row["consent_updates"]) == (
        "Amal Haddad",
        "share-whatsapp",
        True,
    )


async def test_share_links_carry_a_source_code_per_channel(client: Client) -> None:
    soup = await page_of(await client.get(PAGE))
    links = {a.get_text(): str(a["href"]) for a in soup.select(".share li a")}
    for name, code in [
        ("Email", "share-email"),
        ("WhatsApp", "share-whatsapp"),
        ("Telegram", "share-telegram"),
        ("X", "share-x"),
        ("Facebook", "share-facebook"),
    ]:
        assert f"source%3D{code}" in links[name], name
    assert links["WhatsApp"].startswith("https://wa.me/?text=")
    assert str(one(soup, "#share-link")["value"]).endswith(f"{PAGE}?source=share-copy")
    # Plain links: nothing of theirs is loaded here.
    assert not soup.select("script[src^=http], img[src^=http], iframe")


@pytest.fixture
async def confirming_client(
    aiohttp_client: AiohttpClient, settings: Settings, confirming_petition_id: int
) -> Client:
    return await aiohttp_client(create_app(settings))


async def test_a_petition_that_confirms_answers_check_your_inbox(
    confirming_client: Client, pool: asyncpg.Pool
) -> None:
    page = "/petitions/free-the-detainees"
    soup = await page_of(await confirming_client.get(page, headers={"Accept-Language": "ar"}))
    body = form_of(soup, name="رامي", email="rami@mail.example.net", country="SY")
    answer = await page_of(await confirming_client.post(page, data=body), 202)
    assert one(answer, "h1").get_text() == "تفقّد بريدك الوارد"
    assert one(answer, "main > p strong").get_text() == "mail.example.net"
    # A way to ask again: the form that sends the link again.
    again = one(answer, "form[action='/confirm']")
    assert one(again, "input[name=email]")["value"] == "rami@mail.example.net"
    # The confirmation email goes out in the page's language.
    assert await pool.fetchval("SELECT language FROM email_jobs") == "ar"


async def test_errors_are_shown_beside_the_fields_with_the_values_kept(
    client: Client, pool: asyncpg.Pool
) -> None:
    soup = await page_of(await client.get(PAGE, headers={"Accept-Language": "fr"}))
    body = form_of(soup, name="Amal", email="not-an-address", country="", postal_code="<b>")
    answer = await page_of(await client.post(PAGE, data=body), 422)
    assert one(answer, "html")["lang"] == "fr"
    summary = one(answer, "#error-summary")
    assert summary["role"] == "alert"
    assert [a["href"] for a in summary.select("a")] == [
        "#field-email",
        "#field-country",
        "#field-postal_code",
    ]
    email = one(answer, "#field-email")
    assert (email["value"], email["aria-invalid"], email["aria-describedby"]) == (
        "not-an-address",
        "true",
        "error-email",
    )
    assert one(answer, "#error-email").get_text() == "Indiquez une adresse e-mail valide."
    assert one(answer, "#error-country").get_text() == "Ce champ est obligatoire."
    assert one(answer, "#field-name")["value"] == "Amal"
    assert not one(answer, "#field-name").has_attr("aria-invalid")
    assert await signature_rows(pool) == []


async def test_a_closed_petition_says_so_and_refuses_the_form(
    client: Client, pool: asyncpg.Pool
) -> None:
    await pool.execute("UPDATE petitions SET status = 'closed'")
    # (The page reads petitions through a cache of a few seconds: a fresh app.)
    soup = await page_of(await client.get(PAGE))
    assert one(soup, ".sign .message").get_text() == "This petition no longer takes signatures."
    assert soup.select("form[data-enhance]") == []
    body = {"name": "Amal", "email": "amal@example.org", "country": "SY"}
    answer = await page_of(await client.post(PAGE, data=body), 409)
    assert one(answer, ".sign .message").get_text() == "This petition no longer takes signatures."


# -- the home page and the HTML errors ------------------------------------------------------


async def test_the_home_page_lists_the_open_petitions(
    client: Client, pool: asyncpg.Pool, petition_id: int, worker: CounterWorker
) -> None:
    await translated(pool)
    await pool.execute(
        "INSERT INTO petitions (slug, title, status) VALUES ('a-draft', 'Draft', 'draft')"
    )
    await add_signatures(pool, petition_id, 3)
    await worker.drain()
    soup = await page_of(await client.get("/", headers={"Accept-Language": "fr"}))
    items = [
        (one(li, "a").get_text(), one(li, "a")["href"], one(li, "span").get_text())
        for li in soup.select(".petitions li")
    ]
    assert items == [(FRENCH, f"{PAGE}?lang=fr", "3 signatures")]


async def test_the_home_page_can_send_readers_to_one_petition(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int
) -> None:
    api = dataclasses.replace(settings.api, home_petition=SLUG)
    client = await aiohttp_client(create_app(dataclasses.replace(settings, api=api)))
    response = await client.get("/", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, PAGE)


async def test_browsers_get_error_pages_in_their_language(client: Client) -> None:
    html = {"Accept": "text/html,*/*;q=0.8", "Accept-Language": "ar"}
    unknown = await page_of(await client.get("/petitions/no-such-petition", headers=html), 404)
    assert (one(unknown, "html")["lang"], one(unknown, "h1").get_text()) == (
        "ar",
        "الصفحة غير موجودة",
    )
    assert (await page_of(await client.get("/no/such/page", headers=html), 404)).select("h1")
    # The JSON API stays JSON, and programs that ask for no HTML get JSON.
    api = await client.get("/v1/petitions/no-such-petition", headers=html)
    assert (api.status, api.content_type) == (404, "application/json")
    bare = await client.get("/petitions/no-such-petition")
    assert bare.content_type == "text/html"  # an HTML route: a page, whoever asks
    not_a_form = await client.post(PAGE, json={"name": "x"}, headers=html)
    assert (not_a_form.status, not_a_form.content_type) == (400, "text/html")


# -- weight and compression -----------------------------------------------------------------


async def test_the_page_weighs_under_60_kb_and_loads_nothing_from_elsewhere(
    client: Client, pool: asyncpg.Pool
) -> None:
    await pool.execute("UPDATE petitions SET body = $1", "A paragraph of text. " * 150)
    for lang in ("en", "ar", "ru"):
        response = await client.get(f"{PAGE}?lang={lang}", headers={"Accept-Encoding": "identity"})
        html = await response.read()
        soup = BeautifulSoup(html, "html.parser")
        [script] = soup.select("script[src]")
        assert str(script["src"]).startswith("/assets/page-")
        js = await (await client.get(str(script["src"]))).read()
        assert len(html) + len(js) < 60_000, (lang, len(html), len(js))  # CSS is in the page
        assert not soup.select("link[rel=stylesheet], img, iframe")
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        # Its address goes to no other site; to its own, so that its form carries an Origin.
        assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize(
    ("coding", "decode"), [("br", brotli.decompress), ("gzip", gzip.decompress)]
)
async def test_pages_and_scripts_are_compressed(client: Client, coding: str, decode: Any) -> None:
    plain = await (await client.get(PAGE, headers={"Accept-Encoding": "identity"})).read()
    soup = BeautifulSoup(plain, "html.parser")
    loader = await (await client.get("/widget.js")).text()
    [version] = re.findall(r"widget/([0-9a-f]+)\.js", loader)
    widget = f"/widget/{version}.js"
    for path in (PAGE, str(one(soup, "script")["src"]), widget):
        response = await client.get(
            path, headers={"Accept-Encoding": f"{coding}, deflate"}, auto_decompress=False
        )
        assert response.headers["Content-Encoding"] == coding, path
        assert "Accept-Encoding" in response.headers.getall("Vary"), path
        body = decode(await response.read())
        identity = await (await client.get(path, headers={"Accept-Encoding": "identity"})).read()
        assert body.startswith(b"<!doctype html>") if path == PAGE else body == identity


async def test_a_compressed_script_is_still_revalidated_by_its_etag(client: Client) -> None:
    soup = BeautifulSoup(await (await client.get(PAGE)).text(), "html.parser")
    script = str(one(soup, "script")["src"])
    first = await client.get(script, headers={"Accept-Encoding": "br"})
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = await client.get(script, headers={"Accept-Encoding": "br", "If-None-Match": etag})
    assert again.status == 304


# -- the share card -------------------------------------------------------------------------


async def test_the_card_is_a_1200_by_630_png_per_language(
    client: Client, pool: asyncpg.Pool
) -> None:
    await translated(pool)
    english = await client.get(f"{PAGE}/card.png")
    assert (english.status, english.content_type) == (200, "image/png")
    image = Image.open(io.BytesIO(await english.read()))
    assert (image.format, image.size) == ("PNG", (1200, 630))
    arabic = await client.get(f"{PAGE}/card.png?lang=ar")
    assert arabic.headers["Content-Language"] == "ar"
    assert await arabic.read() != await english.read()
    same = await client.get(f"{PAGE}/card.png", headers={"If-None-Match": english.headers["ETag"]})
    assert same.status == 304


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_card_is_drawn_again_at_most_once_a_minute(petition_id: int) -> None:

    clock = Clock()
    cards = CardRenderer(refresh_seconds=60, clock=clock)
    texts = TextCatalog.load().get("en")
    petition = Petition(
        id=1,
        slug=SLUG,
        title="T",
        body="",
        target="",
        goal=100,
        status="open",
        created_at=datetime.now(UTC),
        closes_at=None,
        require_confirmation=False,
        data_controller=None,
        privacy_policy_url=None,
        next_goal=None,
    )
    text = PetitionText("en", "Refer Syria to the ICC", "", "")
    first = await cards.card(petition, text, texts, 12)
    clock.now += 59
    assert (await cards.card(petition, text, texts, 13)).png == first.png  # not yet
    clock.now += 1
    second = await cards.card(petition, text, texts, 13)
    assert second.png != first.png
    clock.now += 60
    assert (await cards.card(petition, text, texts, 13)).etag == second.etag  # nothing new


def ink_box(png: bytes) -> tuple[int, int, int, int]:
    """Where the title's dark ink lies."""
    image = Image.open(io.BytesIO(png)).convert("L").crop((0, 100, 1200, 440))
    box = image.point(lambda value: 255 if value < 80 else 0).getbbox()
    assert box is not None
    return box


def test_right_to_left_titles_are_shaped_and_start_at_the_right() -> None:
    raqm = draw_card(ARABIC, None, None, 1, "Petitions", Writer(raqm=True))
    fallback = draw_card(ARABIC, None, None, 1, "Petitions", Writer(raqm=False))
    # Two shapers (Raqm, and arabic-reshaper with python-bidi) draw the same line...
    left, _, right, _ = ink_box(raqm)
    assert right > 1100  # from the right margin
    assert abs(ink_box(fallback)[0] - left) < 12
    assert abs(ink_box(fallback)[2] - right) < 12
    # ...and joined letters are narrower than the same letters drawn apart.
    writer = Writer(raqm=True)
    face = writer.font(68)
    word = "المحكمة"
    assert writer.width(word, face) < sum(writer.width(letter, face) for letter in word)


def test_the_font_draws_latin_cyrillic_and_arabic() -> None:
    face = Writer().font(68)
    missing = face.getmask("\ue000").getbbox()  # a private-use character: no glyph
    for char in set((RUSSIAN + ARABIC + FRENCH).replace(" ", "")):
        assert face.getmask(char).getbbox() != missing or char == "\ue000", char
