"""The widget as served: its script and loader, caching, the iframe page and its CSP.
What it does in a browser is in tests/browser/."""

from __future__ import annotations

import html
import re

import asyncpg
import pycountry
from aiohttp import ClientResponse

from countersign_domain.partners import create_partner, grant_petition
from petition_api.widget import content_security_policy
from petition_api.widget_assets import STATIC, WidgetAssets, partner_page, partner_snippet
from tests.support.factories import SLUG
from tests.support.http import Client

SCRIPT = (STATIC / "widget.js").read_text(encoding="utf-8")


def test_the_script_is_small_plain_and_self_contained() -> None:
    assert len(SCRIPT.encode()) < 22 * 1024  # "under 22 KB", unminified
    # Nothing is loaded from anywhere: the only absolute URLs are plain share links.
    urls = set(re.findall(r"https?://[^\"' ]+", SCRIPT))
    assert urls == {
        "https://twitter.com/intent/tweet?text=",
        "https://www.facebook.com/sharer/sharer.php?u=",
        "https://wa.me/?text=",
        "https://t.me/share/url?url=",
    }
    for loader in ("import(", "importScripts", 'createElement("script")', "eval(", "innerHTML"):
        assert loader not in SCRIPT


def test_the_country_list_is_the_one_the_api_accepts() -> None:
    packed = re.search(r"var COUNTRIES = \(([^)]*)\)", SCRIPT)
    assert packed is not None
    codes = "".join(re.findall(r'"([A-Z]+)"', packed.group(1)))
    listed = [codes[i : i + 2] for i in range(0, len(codes), 2)]
    assert listed == sorted(country.alpha_2 for country in pycountry.countries)


def test_every_language_has_every_text() -> None:
    blocks = dict(re.findall(r"\n    (\w\w): \{\n(.*?)\n    \}", SCRIPT, re.DOTALL))
    assert set(blocks) == {"en", "fr", "ru", "ar"}
    keys = {lang: set(re.findall(r"(\w+): \"", block)) for lang, block in blocks.items()}
    assert len(keys["en"]) > 20
    for lang in ("fr", "ru", "ar"):
        assert keys[lang] == keys["en"], lang


async def test_the_loader_is_short_cached_and_loads_the_versioned_script(client: Client) -> None:
    version = WidgetAssets.load().version
    response = await client.get("/widget.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert f'"widget/{version}.js"' in await response.text()
    again = await client.get("/widget.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304


async def test_the_versioned_script_is_immutable(client: Client) -> None:
    version = WidgetAssets.load().version
    response = await client.get(f"/widget/{version}.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert await response.text() == SCRIPT
    # Another deploy's version: our script, but not cached as if it were that one.
    other = await client.get("/widget/0123456789abcdef.js")
    assert other.status == 200
    assert other.headers["Cache-Control"] == "public, max-age=300"
    assert (await client.get("/widget/not-a-version.js")).status == 404


async def test_the_version_follows_the_content() -> None:
    assets = WidgetAssets.load()
    assert re.fullmatch(r"[0-9a-f]{16}", assets.version)
    assert assets.version in assets.loader.decode()


async def test_the_embed_page(client: Client) -> None:
    version = WidgetAssets.load().version
    response = await client.get(f"/embed/{SLUG}?lang=fr")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = await response.text()
    assert f'<div data-countersign-petition="{SLUG}" data-lang="fr"></div>' in page
    assert f'<script src="../widget/{version}.js" async></script>' in page
    assert '<html lang="fr">' in page
    assert "<title>Refer Syria to the ICC</title>" in page


async def test_the_embed_page_ignores_a_bad_language(client: Client) -> None:
    page = await (await client.get(f"/embed/{SLUG}?lang=%22%3E%3Cscript%3E")).text()
    assert "<script>" not in page
    assert "data-lang" not in page
    assert '<html lang="en">' in page


def frame_ancestors(response: ClientResponse) -> str:
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    return directives["frame-ancestors"]


async def test_the_embed_page_may_be_framed_by_nobody_by_default(client: Client) -> None:
    response = await client.get(f"/embed/{SLUG}")
    assert frame_ancestors(response) == "'none'"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


async def test_the_embed_page_may_be_framed_by_its_own_and_its_partners_origins(
    client: Client, pool: asyncpg.Pool
) -> None:
    await pool.execute(
        """UPDATE petitions SET allowed_origins = '{https://b.example,https://a.example,
           "https://evil.example; script-src *"}'"""
    )
    await create_partner(
        pool, actor="test", name="P", source_code="p", origins=["https://partner.example"]
    )
    await create_partner(
        pool, actor="test", name="R", source_code="r", origins=["https://revoked.example"]
    )
    # A partner of other petitions: this petition's page does not name it.
    await create_partner(
        pool, actor="test", name="E", source_code="e", origins=["https://elsewhere.example"]
    )
    for code in ("p", "r"):
        await grant_petition(pool, actor="tests", source_code=code, slug=SLUG)
    await pool.execute("UPDATE partners SET revoked_at = now() WHERE source_code = 'r'")
    response = await client.get(f"/embed/{SLUG}")
    # A malformed row is left out rather than written into the header.
    assert frame_ancestors(response) == (
        "https://a.example https://b.example https://partner.example"
    )


async def test_a_star_petition_may_be_framed_anywhere(client: Client, pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE petitions SET allowed_origins = '{*}'")
    assert frame_ancestors(await client.get(f"/embed/{SLUG}")) == "*"


async def test_no_embed_page_for_unknown_or_draft_petitions(
    client: Client, pool: asyncpg.Pool
) -> None:
    # An HTML route: its errors are pages too, in the reader's language.
    unknown = await client.get("/embed/nope", headers={"Accept-Language": "fr"})
    assert (unknown.status, unknown.content_type) == (404, "text/html")
    assert "<h1>Page introuvable</h1>" in await unknown.text()
    await pool.execute("INSERT INTO petitions (slug, title) VALUES ('a-draft', 'Draft')")
    assert (await client.get("/embed/a-draft")).status == 404


def test_content_security_policy() -> None:
    assert content_security_policy(frozenset()).endswith("frame-ancestors 'none'")
    assert content_security_policy(frozenset({"*", "https://a.example"})).endswith(
        "frame-ancestors *"
    )


def test_the_partner_page_pastes_the_snippet() -> None:
    page = partner_page(
        "http://127.0.0.1:8080/", [(SLUG, "daily-example"), ("other", None), ('x"y', "<z>")]
    )
    assert f'<div data-countersign-petition="{SLUG}" data-source="daily-example"></div>' in page
    assert '<div data-countersign-petition="other"></div>' in page
    assert '<script src="http://127.0.0.1:8080/widget.js" async></script>' in page
    assert 'data-countersign-petition="x&quot;y" data-source="&lt;z&gt;"' in page


def test_the_partner_page_shows_the_snippet_it_embeds() -> None:
    widgets = [(SLUG, "daily-example"), ('x"y', "<z>")]
    page = partner_page("http://127.0.0.1:8080", widgets)
    shown = re.search(r'<pre id="snippet"><code>(.*?)</code></pre>', page, re.DOTALL)
    assert shown, page
    # As text (escaped: the browser shows it, runs nothing), and exactly what the page
    # itself pastes after it.
    assert "<" not in shown[1]
    snippet = html.unescape(shown[1])
    assert snippet == partner_snippet("http://127.0.0.1:8080", widgets)
    assert snippet.endswith('<script src="http://127.0.0.1:8080/widget.js" async></script>')
    assert snippet in page[shown.end() :]
