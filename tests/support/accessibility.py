"""axe-core in a browser page: the accessibility violations it finds."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

SERIOUS = ("serious", "critical")


async def axe_violations(
    page: Page, axe_source: str, impacts: tuple[str, ...] = SERIOUS
) -> list[dict[str, Any]]:
    """Violations of these impacts (serious and critical by default) in the page, which
    must allow the injected script (a browser context with ``bypass_csp=True``)."""
    await page.add_script_tag(content=axe_source)
    result: dict[str, Any] = await page.evaluate("axe.run(document)")
    return [v for v in result["violations"] if v["impact"] in impacts]


def describe_violations(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in violations
    )
