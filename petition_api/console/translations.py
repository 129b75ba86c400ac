"""The console's languages page of a petition: its text in every language, each with a
preview as readers will see it, added, replaced or removed, and the default language.

Changed through the domain's functions (the staff API's translations routes and
``countersign petition translate`` call the same ones), so the console refuses what they
refuse and writes the same audit entries.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from countersign_domain import petitions
from countersign_domain.errors import Problem, ValidationFailed
from countersign_domain.petitions import ManagedPetition, petition_in
from petition_api.console.pages import (
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
from petition_api.petition_page import paragraphs

# The fields of a language's form.
_TYPED = ("lang", "title", "text", "target")


def languages_url(slug: str) -> str:
    return f"/admin/petitions/{slug}/languages"


def _versions(petition: ManagedPetition) -> list[dict[str, Any]]:
    """Each language the petition is written in, the default first: its text, and the
    paragraphs the petition's page shows at once and behind "read more"."""
    versions = []
    for lang in petition.languages:
        text = petition_in(petition, lang)
        lead, more = paragraphs(text.body)
        versions.append({"text": text, "lead": lead, "more": more})
    return versions


def _page(
    request: web.Request,
    petition: ManagedPetition,
    *,
    typed: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    message: str | None = None,
    status: int = 200,
) -> web.Response:
    context = {
        "petition": petition,
        "versions": _versions(petition),
        "typed": typed or {},
        "errors": errors or {},
        "message": message,
        "done": request.query.get("done"),
    }
    return render(request, "languages.html", context, status=status)


@console_page(Access.EXPORTER)
async def languages_page(request: web.Request) -> web.Response:
    petition = await petitions.managed_petition(db(request), request.match_info["slug"])
    return _page(request, petition)


@console_page(Access.ADMIN)
async def save_language(request: web.Request) -> web.Response:
    """Add a language, or replace the text of one (the default's is the petition's own)."""
    petition = await petitions.managed_petition(db(request), request.match_info["slug"])
    fields = await form(request)
    typed = {name: fields.get(name, "").replace("\r\n", "\n") for name in _TYPED}
    try:
        if not typed["title"].strip():
            raise ValidationFailed(fields={"title": [request[TEXTS]("error_required")]})
        await petitions.translate_petition(
            db(request),
            actor=staff_of(request).name,
            slug=petition.slug,
            lang=typed["lang"].strip().lower(),
            title=typed["title"].strip(),
            body=typed["text"],
            target=typed["target"].strip(),
        )
    except Problem as problem:
        return _page(
            request,
            petition,
            typed=typed,
            errors={name: list(reasons) for name, reasons in (problem.fields or {}).items()},
            message=problem_message(request[TEXTS], problem),
            status=problem.status,
        )
    return see_other(languages_url(petition.slug) + "?done=language_saved")


@console_page(Access.ADMIN)
async def language_action(request: web.Request) -> web.Response:
    """Remove a language, or make it the default (its text swaps with the default's)."""
    slug, lang = request.match_info["slug"], request.match_info["lang"]
    action = (await form(request)).get("action", "")
    actor = staff_of(request).name
    try:
        if action == "remove":
            await petitions.remove_translation(db(request), actor=actor, slug=slug, lang=lang)
        elif action == "default":
            await petitions.update_petition(
                db(request), actor=actor, slug=slug, changes={"default_lang": lang}
            )
        else:
            raise ValidationFailed(fields={"action": ["Use remove or default."]})
    except Problem as problem:
        petition = await petitions.managed_petition(db(request), slug)
        message = problem_message(request[TEXTS], problem)
        return _page(request, petition, message=message, status=problem.status)
    return see_other(languages_url(slug) + f"?done=language_{action}")
