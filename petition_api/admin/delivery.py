"""The delivery summary: one HTML page staff print to PDF and hand over with the file.

No script and no external asset: the chart is inline SVG, the stylesheet is inline with
a per-response nonce, and the Content-Security-Policy allows nothing else. Browsers
cannot send a Bearer header when navigating, so staff fetch the page with it (curl,
or a bookmarklet) and open the saved file; a token never goes in a URL.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp_jinja2
import jinja2
from aiohttp import web

from countersign_domain.errors import PetitionNotFound
from countersign_domain.summary import Summary, summarise
from petition_api.admin.routes import db, petition_of, staff_operation
from petition_api.openapi import SLUG, Reply

TOP_COUNTRIES = 15


@dataclass(frozen=True)
class CountryBar:
    rank: int | None  # None for the "other countries" line
    name: str
    code: str
    count: int
    share: float  # of the total, in percent
    width: float  # of the longest bar, in percent


async def templates(app: web.Application) -> AsyncIterator[None]:
    """The page's templates, on the staff app (a cleanup context: read as pages need them)."""
    filters: dict[str, Callable[..., str]] = {"number": number, "long_date": long_date}
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("petition_api.admin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
        filters=filters,
    )
    yield


def number(value: int) -> str:
    return f"{value:,}"


def long_date(value: datetime) -> str:
    """'1 May 2024', in UTC like every date of the export."""
    day = value.astimezone(UTC)
    return f"{day.day} {day:%B %Y}"


def country_bars(figures: Summary) -> list[CountryBar]:
    top = figures.countries[:TOP_COUNTRIES]
    rest = figures.countries[TOP_COUNTRIES:]
    longest = max([c.count for c in top], default=1)
    total = figures.total or 1
    bars = [
        CountryBar(rank, c.name, c.code, c.count, 100 * c.count / total, 100 * c.count / longest)
        for rank, c in enumerate(top, start=1)
    ]
    if rest:
        others = sum(c.count for c in rest)
        bars.append(
            CountryBar(
                None,
                f"{len(rest)} other countries",
                "",
                others,
                100 * others / total,
                100 * others / longest,
            )
        )
    return bars


@staff_operation(
    "A petition's delivery summary (a page to print)",
    exporter=True,
    path_parameters={"slug": SLUG},
    responses={
        200: Reply("The page: no script, no external asset.", text_types=("text/html",)),
    },
    problems=(PetitionNotFound,),
)
async def delivery_page(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    figures = await summarise(db(request), petition.id)
    nonce = secrets.token_urlsafe(16)
    response = aiohttp_jinja2.render_template(
        "delivery.html",
        request,
        {
            "petition": petition,
            "figures": figures,
            "bars": country_bars(figures),
            "nonce": nonce,
            "generated_at": datetime.now(UTC),
        },
    )
    response.headers.update(
        {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; "
                "form-action 'none'; frame-ancestors 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
    )
    return response
