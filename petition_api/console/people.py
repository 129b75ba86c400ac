"""The console's pages about people: partners (their keys and figures) and staff
accounts. Admin only."""

from __future__ import annotations

import re
from collections.abc import Mapping

import asyncpg
from aiohttp import web

from countersign_domain import dashboard, partners, patterns, petitions, staff
from countersign_domain.errors import Problem, StaffAccountNotFound, ValidationFailed
from countersign_domain.origins import normalise_origin
from countersign_domain.staff import Role
from petition_api.console.pages import (
    PREFIX,
    TEXTS,
    Access,
    console_page,
    db,
    form,
    problem_message,
    render_form_page,
    see_other,
    settings_of,
    staff_of,
)
from petition_api.widget_assets import widget_div

# -- partners ---------------------------------------------------------------------------------


def snippet(api: str, slug: str, source: str) -> str:
    """What a partner pastes into their page: the widget's place and its script."""
    return f'{widget_div(slug, source=source)}\n<script src="{api}/widget.js" async></script>'


async def _partners_page(
    request: web.Request, context: Mapping[str, object], *, status: int = 200
) -> web.Response:
    found = await partners.list_partners(db(request))
    figures = await dashboard.partner_figures(db(request))
    grants = await partners.grants_by_partner(db(request))
    listed = {
        "partners": found,
        "figures": figures,
        "grants": grants,
        "petitions": await petitions.list_petitions(db(request)),
    }
    return render_form_page(request, "partners.html", listed, context, status=status)


@console_page(Access.ADMIN)
async def partners_page(request: web.Request) -> web.Response:
    return await _partners_page(request, {})


@console_page(Access.ADMIN)
async def create_partner(request: web.Request) -> web.Response:
    fields = await form(request)
    typed = {name: fields.get(name, "").strip() for name in ("name", "source_code", "origins")}
    errors: dict[str, list[str]] = {}
    if not 1 <= len(typed["name"]) <= 200:
        errors["name"] = ["Use 1-200 characters."]
    if not re.fullmatch(patterns.SOURCE_CODE, typed["source_code"]):
        errors["source_code"] = ["Use 1-64 of a-z, 0-9, '_' and '-'."]
    origins: list[str] = []
    for line in typed["origins"].splitlines():
        try:
            origins += [normalise_origin(line)] if line.strip() else []
        except ValueError:
            errors["origins"] = ["Give origins such as https://example.org, one a line."]
    if not errors:
        try:
            partner, key = await partners.create_partner(
                db(request),
                actor=staff_of(request).name,
                name=typed["name"],
                source_code=typed["source_code"],
                origins=origins,
            )
        except asyncpg.UniqueViolationError:
            errors["source_code"] = ["A partner has this source code already."]
    if errors:
        return await _partners_page(request, {"typed": typed, "errors": errors}, status=422)
    api = settings_of(request).mail.public_url or f"{request.scheme}://{request.host}"
    found = await petitions.list_petitions(db(request))
    slug = found[0].slug if found else "your-petition"
    context = {"created": partner, "key": key, "snippet": snippet(api, slug, partner.source_code)}
    return await _partners_page(request, context)


@console_page(Access.ADMIN)
async def revoke_partner(request: web.Request) -> web.Response:
    revoked = await partners.revoke_partner(
        db(request), actor=staff_of(request).name, source_code=request.match_info["code"]
    )
    if revoked is None:
        raise ValidationFailed("no active partner has this source code")
    return see_other(f"{PREFIX}/partners?done=revoked")


# -- partners granted petitions ---------------------------------------------------------------
# Through the domain's grant_petition and revoke_grant, as the staff API and the CLI: the
# same refusals (PartnerNotFound, PetitionNotFound, GrantNotFound) and audit entries.


def _back_to(fields: Mapping[str, str], slug: str, done: str) -> web.Response:
    if fields.get("back") == "partners":
        return see_other(f"{PREFIX}/partners?done={done}")
    return see_other(f"{PREFIX}/petitions/{slug}?done={done}#grants-heading")


@console_page(Access.ADMIN)
async def grant(request: web.Request) -> web.Response:
    """Grant a partner a petition: from the petition's page (the partner chosen) or the
    partners page (the petition chosen)."""
    fields = await form(request)
    slug = request.match_info.get("slug") or fields.get("petition") or ""
    code = request.match_info.get("code") or fields.get("partner") or ""
    await partners.grant_petition(
        db(request), actor=staff_of(request).name, source_code=code, slug=slug
    )
    return _back_to(fields, slug, "granted")


@console_page(Access.ADMIN)
async def revoke_grant(request: web.Request) -> web.Response:
    fields = await form(request)
    slug = request.match_info["slug"]
    await partners.revoke_grant(
        db(request),
        actor=staff_of(request).name,
        source_code=request.match_info["code"],
        slug=slug,
    )
    return _back_to(fields, slug, "grant_revoked")


# -- staff accounts ---------------------------------------------------------------------------


async def _staff_page(
    request: web.Request, context: Mapping[str, object], *, status: int = 200
) -> web.Response:
    listed = {"accounts": await staff.list_staff(db(request)), "roles": list(Role)}
    return render_form_page(request, "staff.html", listed, context, status=status)


@console_page(Access.ADMIN)
async def staff_page(request: web.Request) -> web.Response:
    return await _staff_page(request, {})


@console_page(Access.ADMIN)
async def invite(request: web.Request) -> web.Response:
    fields = await form(request)
    typed = {name: fields.get(name, "").strip() for name in ("name", "email", "role")}
    if typed["role"] not in {role.value for role in Role}:
        return await _staff_page(
            request, {"typed": typed, "errors": {"role": ["admin or exporter"]}}, status=422
        )
    try:
        await staff.invite_staff(
            db(request),
            actor=staff_of(request).name,
            name=typed["name"],
            email=typed["email"],
            role=Role(typed["role"]),
        )
    except Problem as exc:
        context = {
            "typed": typed,
            "errors": dict(exc.fields or {}),
            "message": problem_message(request[TEXTS], exc),
        }
        return await _staff_page(request, context, status=exc.status)
    return see_other(f"{PREFIX}/staff?done=invited")


@console_page(Access.ADMIN)
async def remove(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise StaffAccountNotFound
    await staff.remove_staff(db(request), actor=staff_of(request).name, account_id=int(raw))
    return see_other(f"{PREFIX}/staff?done=removed")
