"""Who holds the data, and where the privacy policy is: the deployment's (settings) or a
petition's own, in the petition's JSON (for the widget and the embed page), in every
confirmation email and on the confirmation pages, in every built-in language."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlsplit

import asyncpg
import pytest

from countersign_core.settings import Settings
from countersign_core.texts import TextCatalog
from mail_sender.main import build_sender
from petition_api.app import create_app
from tests.support.factories import StaffTokens, signer
from tests.support.http import ADMIN, AiohttpClient, Client, bearer, error_of
from tests.support.mail import SmtpSink, confirmation_link, html_part, text_part

SLUG = "free-the-detainees"
CONTROLLER = "Syria Justice Campaign"
POLICY = "https://campaign.example/privacy"
LANGUAGES = ("en", "fr", "ru", "ar")


def noticed(settings: Settings) -> Settings:
    privacy = dataclasses.replace(settings.privacy, data_controller=CONTROLLER, policy_url=POLICY)
    return dataclasses.replace(settings, privacy=privacy)


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, confirming_petition_id: int
) -> Client:
    return await aiohttp_client(create_app(noticed(settings)))


def test_every_built_in_language_says_it() -> None:
    catalog = TextCatalog.load()
    english = catalog.get("en")
    for language in LANGUAGES:
        texts = catalog.get(language)
        assert texts.language == language
        assert CONTROLLER in texts("privacy_controller", controller=CONTROLLER)
        if language != "en":  # translated, not English fallen back to
            assert texts.strings["privacy_controller"] != english.strings["privacy_controller"]
            assert texts.strings["privacy_policy"] != english.strings["privacy_policy"]


async def test_the_petition_says_it_and_may_say_otherwise(
    client: Client, pool: asyncpg.Pool
) -> None:
    body = await (await client.get(f"/v1/petitions/{SLUG}")).json()
    assert body["privacy"] == {"data_controller": CONTROLLER, "policy_url": POLICY}
    # A petition of another organisation names its own controller; its policy, unset,
    # stays the deployment's.
    await pool.execute(
        """INSERT INTO petitions (slug, title, status, data_controller)
           VALUES ('partner-call', 'A partner call', 'open', 'Partner NGO')"""
    )
    other = await (await client.get("/v1/petitions/partner-call")).json()
    assert other["privacy"] == {"data_controller": "Partner NGO", "policy_url": POLICY}


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_email_and_confirmation_page_says_it(
    client: Client,
    pool: asyncpg.Pool,
    mail_settings: Settings,
    database_url: str,
    smtp_sink: SmtpSink,
    language: str,
) -> None:
    sender = build_sender(noticed(mail_settings), database_url, pool, TextCatalog.load())
    texts = TextCatalog.load().get(language)
    response = await client.post(f"/v1/petitions/{SLUG}/signatures", json=signer(language=language))
    assert response.status == 202
    await sender.drain()
    [message] = smtp_sink.received
    said = texts("privacy_controller", controller=CONTROLLER)
    assert said in text_part(message)
    assert f"{texts('privacy_policy')}: {POLICY}" in text_part(message)
    html = html_part(message)
    assert f'<a href="{POLICY}"' in html
    assert texts("privacy_policy") in html

    path = urlsplit(confirmation_link(message)).path
    headers = {"Accept-Language": language}
    for page in (
        await client.get(path, headers=headers),
        await client.post(path, headers=headers),
        await client.get("/confirm", headers=headers),
    ):
        text = await page.text()
        assert said in text, page.url
        assert f'<a href="{POLICY}">{texts("privacy_policy")}</a>' in text


async def test_nothing_is_said_when_nothing_is_set(
    aiohttp_client: AiohttpClient, settings: Settings, confirming_petition_id: int
) -> None:
    client = await aiohttp_client(create_app(settings))
    page = await (await client.get("/confirm")).text()
    assert 'class="privacy"' not in page


async def test_staff_set_a_petition_notice_and_bad_addresses_are_refused(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    path = f"{ADMIN}/petitions/{SLUG}"
    changed = await client.patch(
        path,
        json={"data_controller": "Partner NGO", "privacy_policy_url": "https://ngo.example/p"},
        headers=bearer(staff.admin),
    )
    assert changed.status == 200, await changed.text()
    body = await changed.json()
    assert (body["data_controller"], body["privacy_policy_url"]) == (
        "Partner NGO",
        "https://ngo.example/p",
    )
    for bad in ("javascript:alert(1)", "ftp://ngo.example", "https://a b.example", "https://\x85a"):
        refused = await client.patch(
            path, json={"privacy_policy_url": bad}, headers=bearer(staff.admin)
        )
        error = await error_of(refused, 422)
        assert set(error["fields"]) == {"privacy_policy_url"}
    cleared = await client.patch(
        path,
        json={"data_controller": None, "privacy_policy_url": None},
        headers=bearer(staff.admin),
    )
    assert (await cleared.json())["data_controller"] is None
    entries = await pool.fetch("SELECT details FROM audit_log ORDER BY id")
    assert json.loads(entries[0]["details"])["fields"] == ["data_controller", "privacy_policy_url"]
