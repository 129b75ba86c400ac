"""The console's moderation pages: suspects, invalidations by criteria (a dry run first,
then applying, then undo), erasure, and the audit log. Admin only; every read of
personal data and every change writes the domain's audit entry."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web
from marshmallow import ValidationError

from countersign_domain import audit, moderation
from countersign_domain.errors import Problem, ValidationFailed
from countersign_domain.moderation import Criteria
from petition_api import appkeys as keys
from petition_api.admin.schemas import ErasureSchema, InvalidationSchema
from petition_api.console.pages import (
    TEXTS,
    Access,
    console_page,
    db,
    form,
    problem_message,
    render,
    render_form_page,
    see_other,
    staff_of,
)
from petition_api.console.petitions import petition_of, petition_url

SUSPECTS_SHOWN = 500
AUDIT_SHOWN = 200


# -- suspects ---------------------------------------------------------------------------------


@console_page(Access.ADMIN)
async def suspects_page(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    with_contact = request.query.get("contact") == "1"
    if with_contact:
        found = await moderation.suspects_with_contact(
            db(request), actor=staff_of(request).name, slug=petition.slug, limit=SUSPECTS_SHOWN
        )
    else:
        found = await moderation.list_suspects(db(request), petition.slug, SUSPECTS_SHOWN)
    context = {
        "petition": petition,
        "suspects": found,
        "with_contact": with_contact,
        "done": request.query.get("done"),
        "count": request.query.get("count"),
    }
    return render(request, "suspects.html", context)


@console_page(Access.ADMIN)
async def review_suspects(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    fields = await form(request)
    every = fields.get("selection") == "all"
    ids = [int(value) for value in fields.getall("id", []) if value.isdigit()]
    if not every and not ids:
        raise ValidationFailed("tick at least one signature, or choose all of them")
    selection = None if every else ids
    actor = staff_of(request).name
    if fields.get("decision") == "release":
        changed = await moderation.release_suspects(
            db(request), actor=actor, ids=selection, slug=petition.slug
        )
        done = "released"
    elif fields.get("decision") == "invalidate":
        changed = await moderation.invalidate_suspects(
            db(request), actor=actor, ids=selection, slug=petition.slug, reason="fraud"
        )
        done = "invalidated"
    else:
        raise ValidationFailed("choose to release or to invalidate")
    return see_other(petition_url(petition.slug, "suspects") + f"?done={done}&count={len(changed)}")


# -- invalidations ----------------------------------------------------------------------------


def _criteria_form(fields: Any) -> dict[str, Any]:
    return {
        name: fields.get(name, "").strip()
        for name in (*InvalidationSchema.CRITERIA, "reason")
        if fields.get(name, "").strip()
    }


async def _invalidations_page(
    request: web.Request, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    petition = await petition_of(request)
    found = await moderation.list_invalidations(db(request), petition.id)
    listed = {"petition": petition, "invalidations": found}
    return render_form_page(request, "invalidations.html", listed, context, status=status)


@console_page(Access.ADMIN)
async def invalidations_page(request: web.Request) -> web.Response:
    return await _invalidations_page(request, {})


@console_page(Access.ADMIN)
async def invalidate(request: web.Request) -> web.Response:
    """A dry run first (``step=check``): the count and a form to apply exactly those
    criteria; then ``step=apply``."""
    petition = await petition_of(request)
    fields = await form(request)
    typed = _criteria_form(fields)
    apply = fields.get("step") == "apply"
    try:
        data = cast(dict[str, Any], InvalidationSchema().load({**typed, "dry_run": not apply}))
        criteria = Criteria(**{name: data.get(name) for name in InvalidationSchema.CRITERIA})
        actor = staff_of(request).name
        if not apply:
            hits = await moderation.dry_run_invalidation(
                db(request), actor=actor, petition_id=petition.id, criteria=criteria
            )
            return await _invalidations_page(request, {"typed": typed, "would": hits})
        await moderation.apply_invalidation(
            db(request),
            actor=actor,
            petition_id=petition.id,
            criteria=criteria,
            reason=data["reason"],
        )
    except ValidationError as exc:
        errors = cast(dict[str, list[str]], exc.messages)
        return await _invalidations_page(request, {"typed": typed, "errors": errors}, status=422)
    return see_other(petition_url(petition.slug, "invalidations") + "?done=applied")


@console_page(Access.ADMIN)
async def undo_invalidation(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    raw = request.match_info["id"]
    try:
        await moderation.undo_invalidation(
            db(request), actor=staff_of(request).name, invalidation_id=int(raw)
        )
    except Problem as exc:
        message = problem_message(request[TEXTS], exc)
        return await _invalidations_page(request, {"message": message}, status=exc.status)
    return see_other(petition_url(petition.slug, "invalidations") + "?done=undone")


# -- erasure ----------------------------------------------------------------------------------


@console_page(Access.ADMIN)
async def erasure_page(request: web.Request) -> web.Response:
    return render(request, "erasure.html", {})


@console_page(Access.ADMIN)
async def erase(request: web.Request) -> web.Response:
    fields = await form(request)
    try:
        data = cast(dict[str, Any], ErasureSchema().load({"email": fields.get("email", "")}))
    except ValidationError:
        return render(request, "erasure.html", {"invalid": True}, status=422)
    erased = await moderation.erase_address(
        db(request), request.config_dict[keys.HASHER], data["email"], actor=staff_of(request).name
    )
    # The address is not shown again: the answer says only what was done.
    return render(request, "erasure.html", {"erased": erased})


# -- the audit log ----------------------------------------------------------------------------


@console_page(Access.ADMIN)
async def audit_page(request: web.Request) -> web.Response:
    filters = {
        name: request.query.get(name, "").strip() or None
        for name in ("actor", "action", "petition")
    }
    entries = await audit.recent(
        db(request),
        AUDIT_SHOWN,
        actor=filters["actor"],
        action=filters["action"],
        slug=filters["petition"],
    )
    return render(request, "audit.html", {"entries": entries, "filters": filters})
