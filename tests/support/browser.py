"""What the browser tests share: a page in a fresh context, and axe-core's verdict."""

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


async def axe_violations(
    page: Page, axe_source: str, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[dict[str, Any]]:
    """What axe-core finds on the page, of these impacts (the page must let the script
    in: open it with ``bypass_csp=True``)."""
    await page.add_script_tag(content=axe_source)
    result: dict[str, Any] = await page.evaluate("axe.run(document)")
    return [v for v in result["violations"] if v["impact"] in impacts]


def described(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in violations
    )
