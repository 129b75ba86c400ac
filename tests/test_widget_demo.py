"""``countersign dev`` serves a demo partner page on a second port (another origin)."""

from __future__ import annotations

import asyncio
import urllib.request

from tests.support.processes import DevRun


def fetch(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return response.status, dict(response.headers), response.read().decode()


async def test_dev_serves_a_partner_page_on_another_origin(dev: DevRun) -> None:
    origin = dev.partner_page.rstrip("/")
    assert origin != dev.api
    assert f"embed         {dev.api}/embed/refer-syria-to-icc" in dev.banner
    # The petition's own page, printed first: a page for people, not JSON.
    page_line = f"petition page {dev.api}/petitions/refer-syria-to-icc"
    assert page_line in dev.banner
    status, headers, _ = await asyncio.to_thread(fetch, f"{dev.api}/petitions/refer-syria-to-icc")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")

    status, _, page = await asyncio.to_thread(fetch, dev.partner_page)
    assert status == 200
    assert f'<script src="{dev.api}/widget.js" async></script>' in page
    assert '<div data-countersign-petition="refer-syria-to-icc" data-source="demo-partner">' in page
    # And it shows that snippet, to copy.
    assert (
        "<code>&lt;div data-countersign-petition=&quot;refer-syria-to-icc&quot; "
        "data-source=&quot;demo-partner&quot;&gt;&lt;/div&gt;\n"
        f"&lt;script src=&quot;{dev.api}/widget.js&quot; async&gt;&lt;/script&gt;</code>"
    ) in page

    # The demo petition lets that origin sign from the browser.
    status, headers, _ = await asyncio.to_thread(
        fetch,
        f"{dev.api}/v1/petitions/refer-syria-to-icc/signatures",
        {"Origin": origin, "Access-Control-Request-Method": "POST"},
        "OPTIONS",
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == origin
