"""The console's export and delivery pages: the CSV download with its filters, the
delivery page to print, and the same page as a PDF rendered here by WeasyPrint (no
browser at request time)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date, timedelta
from typing import Any, cast

from aiohttp import web
from marshmallow import ValidationError
from weasyprint import HTML

from countersign_domain.staff import Role
from countersign_domain.summary import summarise
from petition_api.admin.delivery import delivery_response, render_delivery
from petition_api.admin.routes import send_export
from petition_api.admin.schemas import ExportQuerySchema
from petition_api.console.pages import TEMPLATES, Access, console_page, db, render, staff_of
from petition_api.console.petitions import petition_of

# The export form's fields, as a browser sends them (dates as YYYY-MM-DD).
EXPORT_FIELDS = ("country", "source", "consent", "signed_from", "signed_to", "include")


@console_page(Access.EXPORTER)
async def export_page(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    figures = await summarise(db(request), petition.id)
    context = {
        "petition": petition,
        "figures": figures,
        "may_include_email": staff_of(request).may(Role.ADMIN),
        "typed": {},
        "errors": {},
    }
    return render(request, "export.html", context)


def export_query(typed: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the staff API's query: the last day given is included."""
    query: dict[str, Any] = {
        name: typed[name] for name in ("country", "source", "consent", "include") if typed.get(name)
    }
    if typed.get("signed_from"):
        query["signed_after"] = f"{typed['signed_from']}T00:00:00Z"
    if typed.get("signed_to"):
        try:
            day_after = date.fromisoformat(typed["signed_to"]) + timedelta(days=1)
        except ValueError:
            raise ValidationError({"signed_to": ["Not a date."]}) from None
        query["signed_before"] = f"{day_after.isoformat()}T00:00:00Z"
    return cast(dict[str, Any], ExportQuerySchema().load(query))


@console_page(Access.EXPORTER)
async def download(request: web.Request) -> web.StreamResponse:
    petition = await petition_of(request)
    typed = {name: request.query.get(name, "").strip() for name in EXPORT_FIELDS}
    try:
        query = export_query(typed)
    except ValidationError as exc:
        figures = await summarise(db(request), petition.id)
        context = {
            "petition": petition,
            "figures": figures,
            "may_include_email": staff_of(request).may(Role.ADMIN),
            "typed": typed,
            "errors": exc.messages,
        }
        return render(request, "export.html", context, status=422)
    return await send_export(request, staff_of(request), petition, query)


@console_page(Access.EXPORTER)
async def delivery_page(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    return await delivery_response(request, petition, app_key=TEMPLATES)


@console_page(Access.EXPORTER)
async def delivery_pdf(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    page = await render_delivery(request, petition, secrets.token_urlsafe(16), app_key=TEMPLATES)
    # Seconds of CPU for a long petition: off the event loop.
    pdf = await asyncio.get_running_loop().run_in_executor(None, _pdf, page)
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{petition.slug}-delivery.pdf"',
            "Cache-Control": "no-store",
        },
    )


def _pdf(page: str) -> bytes:
    # No base URL: the page has no asset to fetch, and nothing may be fetched for it.
    pdf: bytes = HTML(string=page, url_fetcher=_refuse_fetch).write_pdf()
    return pdf


def _refuse_fetch(url: str, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
    raise ValueError("the delivery page loads nothing")
