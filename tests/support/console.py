"""Driving the staff console (``/admin/``) in tests: forms' CSRF tokens, signing in with
a staff token or an emailed link, and reading the sign-in email."""

from __future__ import annotations

import re
from email.message import EmailMessage

from yarl import URL

from tests.support.http import Client
from tests.support.mail import html_part, text_part

CONSOLE = "/admin"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_SIGN_IN_LINK = re.compile(r"https?://\S+/admin/sign-in/[\w-]+")


def csrf_of(html: str) -> str:
    """The CSRF token the page's forms carry (every form of a page carries the same)."""
    tokens: set[str] = set(_CSRF.findall(html))
    assert len(tokens) == 1, tokens
    return tokens.pop()


async def page_csrf(client: Client, path: str = f"{CONSOLE}/sign-in") -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return csrf_of(await response.text())


async def console_sign_in(client: Client, token: str) -> None:
    """Sign the client's browser in with a staff token; its cookie jar keeps the session."""
    csrf = await page_csrf(client)
    response = await client.post(
        f"{CONSOLE}/sign-in/token",
        data={"csrf": csrf, "token": token, "next": f"{CONSOLE}/"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()


def sign_in_link(message: EmailMessage) -> str:
    """The one sign-in link of the email, the same in both parts."""
    [link] = set(_SIGN_IN_LINK.findall(text_part(message)))
    assert link in html_part(message)
    return str(link)


def link_path(link: str) -> str:
    return URL(link).path


async def submit(client: Client, path: str, data: dict[str, str]) -> str:
    """Send a console form (following its redirect) and read the page it leads to."""
    response = await client.post(path, data=data)
    page: str = await response.text()
    assert response.status < 500, page
    return page
