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
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from countersign_domain.errors import PetitionNotFound
from countersign_domain.petitions import ManagedPetition
from countersign_domain.summary import Summary, summarise
from petition_api.admin.routes import db, petition_of, staff_operation
from petition_api.openapi import SLUG, Reply
from petition_api.signature_log import delivery_log

TOP_COUNTRIES = 15


@dataclass(frozen=True)
class CountryBar:
    rank: int | None  # None for the "other countries" line
    name: str
    code: str
    count: int
    share: float  # of the total, in percent
    width: float  # of the longest bar, in percent


# How the templates are read (autoescaped), by the staff app and by ``delivery_html``.
TEMPLATE_OPTIONS: dict[str, Any] = {
    "loader": jinja2.PackageLoader("petition_api.admin", "templates"),
    "undefined": jinja2.StrictUndefined,
}


async def templates(app: web.Application) -> AsyncIterator[None]:
    """The page's templates, on the staff app (a cleanup context: read as pages need them)."""
    aiohttp_jinja2.setup(
        app, autoescape=True, default_helpers=False, filters=FILTERS, **TEMPLATE_OPTIONS
    )
    yield


def number(value: int) -> str:
    return f"{value:,}"


def long_date(value: datetime) -> str:
    """'1 May 2024', in UTC like every date of the export."""
    day = value.astimezone(UTC)
    return f"{day.day} {day:%B %Y}"


FILTERS: dict[str, Callable[..., str]] = {"number": number, "long_date": long_date}


def delivery_context(
    petition: ManagedPetition,
    figures: Summary,
    nonce: str,
    signature_log: dict[str, Any] | None,
) -> dict[str, Any]:
    """What the page shows (with the signature log's final head and ledger, once there
    is one); its one stylesheet carries ``nonce``."""
    return {
        "petition": petition,
        "figures": figures,
        "bars": country_bars(figures),
        "nonce": nonce,
        "generated_at": datetime.now(UTC),
        "signature_log": signature_log,
    }


def delivery_html(
    petition: ManagedPetition, figures: Summary, signature_log: dict[str, Any] | None
) -> str:
    """The page as a file to keep or print, away from a request (``countersign delivery``)."""
    environment = jinja2.Environment(autoescape=True, **TEMPLATE_OPTIONS)
    environment.filters.update(FILTERS)
    context = delivery_context(petition, figures, secrets.token_urlsafe(16), signature_log)
    return environment.get_template("delivery.html").render(context)


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
    return await delivery_response(request, petition)


async def delivery_response(
    request: web.Request,
    petition: ManagedPetition,
    *,
    app_key: web.AppKey[jinja2.Environment] = aiohttp_jinja2.APP_KEY,
) -> web.Response:
    """The page, from the templates of the app ``app_key`` names (the console shows it
    too)."""
    nonce = secrets.token_urlsafe(16)
    response = web.Response(
        text=await render_delivery(request, petition, nonce, app_key=app_key),
        content_type="text/html",
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


async def render_delivery(
    request: web.Request,
    petition: ManagedPetition,
    nonce: str,
    *,
    app_key: web.AppKey[jinja2.Environment] = aiohttp_jinja2.APP_KEY,
) -> str:
    """The page for a request, from the templates of the app ``app_key`` names."""
    figures = await summarise(db(request), petition.id)
    signature_log = await delivery_log(db(request), petition.id)
    return aiohttp_jinja2.render_string(
        "delivery.html",
        request,
        delivery_context(petition, figures, nonce, signature_log),
        app_key=app_key,
    )
