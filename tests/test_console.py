"""The staff console at /admin/, in process: signing in (emailed link, staff token),
sessions, CSRF, roles, and each page calling the domain's rules with their audit entries."""

from __future__ import annotations

import dataclasses
import io
import re
from http.cookies import SimpleCookie

import asyncpg
import pytest
from aiohttp import web
from click.testing import CliRunner

from countersign.cli import main as cli
from countersign_core.settings import Settings
from countersign_domain.sessions import SessionPolicy, request_sign_in_link, sign_in_secret
from countersign_domain.staff import Role, invite_staff
from mail_sender.sender import MailSender
from petition_api.app import create_app
from tests.support.console import (
    CONSOLE,
    csrf_of,
    page_csrf,
    path_of,
    sign_in_link,
    sign_in_with_token,
)
from tests.support.factories import SLUG, StaffTokens, add_signatures, insert_signature, hasher
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


async def text_of(response: web.StreamResponse | object) -> str:
    return await response.text()  # type: ignore[attr-defined,no-any-return]


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
        await console.get(f"{CONSOLE}/static/console.css")
    await sender.drain()
    [message] = smtp_sink.received
    assert message["To"] == "amal@example.org"
    link = sign_in_link(message)
    stored = await pool.fetchrow("SELECT token_hash, nonce FROM staff_sign_in_links")
    assert path_of(link).rsplit("/", 1)[1].encode() not in (stored["token_hash"], stored["nonce"])

    # Opening the link changes nothing (a mail scanner may fetch it); pressing the button does.
    page = await console.get(path_of(link))
    assert page.status == 200
    response = await console.post(
        path_of(link), data={"csrf": csrf_of(await page.text())}, allow_redirects=False
    )
    assert response.status == 303
    cookie = SimpleCookie(response.headers["Set-Cookie"])["cs_console"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin/"
    assert not cookie["secure"]  # the public URL is http here
    home = await console.get(f"{CONSOLE}/")
    assert "Amal H" in await home.text()

    # Single use: the same link again is refused, in words, and the failure audited.
    again = await console.post(
        path_of(link), data={"csrf": csrf_of(await home.text())}, allow_redirects=False
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

