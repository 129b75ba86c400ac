"""The console's petition pages: the list, creating and editing, status moves, and the
dashboard with its live figures.

Forms are read into the staff API's own schemas (petition_api/admin/schemas.py) and
changed through the domain's functions, so the console accepts and refuses exactly
what the API does, and writes the same audit entries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from markupsafe import Markup
from marshmallow import Schema, ValidationError
from multidict import MultiDictProxy

from countersign_domain import dashboard, petitions
from countersign_domain.errors import Problem
from countersign_domain.partners import granted_partners, list_partners
from countersign_domain.petitions import ManagedPetition, PetitionChanges
from petition_api.admin.delivery import country_bars
from petition_api.admin.schemas import PetitionCreateSchema, PetitionUpdateSchema
from petition_api.console import charts
from petition_api.console.pages import (
    PREFIX,
    TEXTS,
    Access,
    console_page,
    db,
    form,
    problem_message,
    render,
    see_other,
    staff_of,
)
from petition_api.console.worldmap import world_map

# The fields of the petition form, as the staff API names them.
TEXT_FIELDS = ("title", "text", "target")


@dataclass(frozen=True)
class FormState:
    """What the form shows: the values typed, and the reasons any was refused."""

    values: dict[str, Any]
    errors: dict[str, list[str]]
    message: str | None = None


def petition_url(slug: str, page: str = "") -> str:
    return f"{PREFIX}/petitions/{slug}{'/' + page if page else ''}"


async def petition_of(request: web.Request) -> ManagedPetition:
    return await petitions.managed_petition(db(request), request.match_info["slug"])


@console_page(Access.EXPORTER)
async def petition_list(request: web.Request) -> web.Response:
    found = await petitions.list_petitions(db(request))
    return render(request, "petitions.html", {"petitions": found})


# -- creating and editing ---------------------------------------------------------------------


def form_values(petition: ManagedPetition | None) -> dict[str, Any]:
    if petition is None:
        return {"goal": 1000, "require_confirmation": True, "status": "draft"}
    return {
        "slug": petition.slug,
        "title": petition.title,
        "text": petition.body,
        "target": petition.target,
        "goal": petition.goal,
        "next_goal": petition.next_goal or "",
        "allowed_origins": "\n".join(petition.allowed_origins),
        "closes_at": petition.closes_at.strftime("%Y-%m-%dT%H:%M") if petition.closes_at else "",
        "require_confirmation": petition.require_confirmation,
    }


def read_petition_form(
    fields: MultiDictProxy[str], schema: Schema, *, new: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what was typed, as the form shows it again; the schema's input). Empty text
    fields are left out of a new petition and clear nothing on an edit but the close
    date."""
    typed: dict[str, Any] = {name: fields.get(name, "") for name in fields if name != "csrf"}
    typed["require_confirmation"] = fields.get("require_confirmation") == "on"
    data: dict[str, Any] = {"require_confirmation": typed["require_confirmation"]}
    for name in (*TEXT_FIELDS, "slug") if new else TEXT_FIELDS:
        if name in fields and (fields[name] or name == "text"):
            data[name] = fields[name].replace("\r\n", "\n")
    goal = fields.get("goal", "").strip()
    data["goal"] = int(goal) if goal.isdigit() else goal
    # Empty: none (on an edit, it clears the next goal).
    next_goal = fields.get("next_goal", "").strip()
    if next_goal or not new:
        data["next_goal"] = (int(next_goal) if next_goal.isdigit() else next_goal) or None
    origins = [line.strip() for line in fields.get("allowed_origins", "").splitlines()]
    data["allowed_origins"] = [origin for origin in origins if origin]
    closes_at = fields.get("closes_at", "").strip()
    if closes_at or not new:
        data["closes_at"] = closes_at or None
    if new:
        data["status"] = "open" if fields.get("open_now") == "on" else "draft"
    return typed, cast(dict[str, Any], schema.load(data))


@console_page(Access.ADMIN)
async def new_petition(request: web.Request) -> web.Response:
    state = FormState(form_values(None), {})
    return render(request, "petition_form.html", {"petition": None, "state": state, "done": None})


@console_page(Access.ADMIN)
async def create_petition(request: web.Request) -> web.Response:
    fields = await form(request)
    typed: dict[str, Any] = dict(fields)
    try:
        typed, data = read_petition_form(fields, PetitionCreateSchema(), new=True)
        petition = await petitions.create_petition(
            db(request), actor=staff_of(request).name, **data
        )
    except (ValidationError, Problem) as exc:
        return _refused(request, None, typed, exc)
    return see_other(petition_url(petition.slug) + "?done=created")


@console_page(Access.ADMIN)
async def edit_petition(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    state = FormState(form_values(petition), {})
    context = {"petition": petition, "state": state, "done": request.query.get("done")}
    return render(request, "petition_form.html", context)


@console_page(Access.ADMIN)
async def update_petition(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    fields = await form(request)
    typed: dict[str, Any] = dict(fields)
    try:
        typed, data = read_petition_form(fields, PetitionUpdateSchema(), new=False)
        await petitions.update_petition(
            db(request),
            actor=staff_of(request).name,
            slug=petition.slug,
            changes=cast(PetitionChanges, data),
        )
    except (ValidationError, Problem) as exc:
        return _refused(request, petition, typed, exc)
    return see_other(petition_url(petition.slug, "edit") + "?done=saved")


@console_page(Access.ADMIN)
async def change_status(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    status = (await form(request)).get("status", "")
    try:
        await petitions.set_status(
            db(request), actor=staff_of(request).name, slug=petition.slug, status=status
        )
    except Problem as exc:
        return _refused(request, petition, form_values(petition), exc)
    return see_other(petition_url(petition.slug, "edit") + f"?done={status}")


def _refused(
    request: web.Request,
    petition: ManagedPetition | None,
    typed: dict[str, Any],
    exc: ValidationError | Problem,
) -> web.Response:
    if isinstance(exc, ValidationError):
        errors = cast(dict[str, list[str]], exc.messages)
        state = FormState(typed, _by_field(errors))
        status = 422
    else:
        message = problem_message(request[TEXTS], exc)
        state = FormState(typed, _by_field(dict(exc.fields or {})), message)
        status = exc.status
    context = {"petition": petition, "state": state, "done": None}
    return render(request, "petition_form.html", context, status=status)


def _by_field(errors: dict[str, Any]) -> dict[str, list[str]]:
    """Field errors as lists of strings (a list field's errors come keyed by index)."""
    flat: dict[str, list[str]] = {}
    for name, reasons in errors.items():
        if isinstance(reasons, dict):
            flat[name] = [f"{index + 1}: {' '.join(r)}" for index, r in reasons.items()]
        else:
            flat[name] = [str(reason) for reason in reasons]
    return flat


# -- the dashboard ----------------------------------------------------------------------------


async def _figures(request: web.Request, petition: ManagedPetition) -> dict[str, Any]:
    figures = await dashboard.petition_dashboard(db(request), petition.id)
    partners = {p.source_code: p.name for p in await list_partners(db(request))}
    texts = request[TEXTS]
    levels = charts.map_levels({c.code: (c.name, c.count) for c in figures.summary.countries})
    return {
        "petition": petition,
        "figures": figures,
        "progress": charts.progress(figures.summary.total, petition.goal),
        "hours": charts.columns(
            [(h.hour.strftime("%d %H:00"), h.count) for h in figures.hours], every=12
        ),
        "days": charts.columns(
            [(d.date.isoformat(), d.count) for d in figures.days],
            every=max(1, len(figures.days) // 8),
        ),
        "countries": country_bars(figures.summary),
        "sources": [
            (s.source or texts("source_none"), partners.get(s.source or ""), s.count)
            for s in figures.summary.sources
        ],
        "map_levels": levels,
        # For the page's script, which shades the map again after each update.
        "map_levels_json": Markup(  # noqa: S704  (JSON with "<" escaped: inert in HTML)
            json.dumps(
                {code: [c.level, f"{c.name}: {c.count:,}"] for code, c in levels.items()}
            ).replace("<", "\\u003c")
        ),
    }


@console_page(Access.EXPORTER)
async def petition_dashboard(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    context = await _figures(request, petition)
    context["world"] = world_map()
    context["done"] = request.query.get("done")
    # The partners granted it (everyone sees them; only admins change them).
    grants = await granted_partners(db(request), petition.slug)
    granted = {grant.partner.source_code for grant in grants}
    context["grants"] = grants
    context["grantable"] = [
        p
        for p in await list_partners(db(request))
        if p.revoked_at is None and p.source_code not in granted
    ]
    return render(request, "dashboard.html", context)


@console_page(Access.EXPORTER)
async def petition_figures(request: web.Request) -> web.Response:
    """The dashboard's figures alone, for the page to replace its own every few seconds;
    304 while they have not changed."""
    petition = await petition_of(request)
    context = await _figures(request, petition)
    response = render(request, "figures.html", context)
    assert response.text is not None
    digest = hashlib.sha256(response.text.encode()).hexdigest()[:32]
    tag = f'"{digest}"'
    # Compared weakly (RFC 9110): the compression middleware marks the tag it sends W/.
    if any(sent.value == digest for sent in request.if_none_match or ()):
        return web.Response(status=304, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return response
