"""What the browser tests share: a page in a fresh context (axe-core's verdict is in
tests/support/accessibility.py)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page


async def open_page(
    browser: Browser,
    url: str,
    *,
    locale: str = "en-GB",
    requests: list[str] | None = None,
    **context: Any,
) -> Page:
    """A page in a fresh browser context; ``requests`` collects the URLs it fetches."""
    page = await (await browser.new_context(locale=locale, **context)).new_page()
    if requests is not None:
        page.on("request", lambda request: requests.append(request.url))
    await page.goto(url)
    return page
