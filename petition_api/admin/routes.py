"""Staff HTTP handlers under ``/v1/admin``: petitions, summaries, exports, erasure and
invalidation. Authentication and roles are checked before any of them runs
(``petition_api.admin.auth``); handlers only add the email rule of exports. The rules
and the audit entries are the domain's: a handler reads the request, calls one domain
function and writes its answer; the domain's refusals (``Problem``) and marshmallow's
ValidationError reach the error middleware as they are."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
from aiohttp import web
from marshmallow import Schema

from countersign_domain import moderation, partners, patterns, petitions
from countersign_domain.errors import (
    ClosesAtPassed,
    DefaultLanguageKept,
    GrantNotFound,
    InsufficientRole,
    InvalidationNotFound,
    InvalidationUndone,
    InvalidJson,
    InvalidStatusTransition,
    InvalidToken,
    PartnerNotFound,
    PayloadTooLarge,
    PetitionExists,
    PetitionNotFound,
    Problem,
    ServiceUnavailable,
    TranslationNotFound,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from countersign_domain.export import UTF8_BOM, ExportFilters, audited_export
from countersign_domain.moderation import Criteria
from countersign_domain.petitions import ManagedPetition, PetitionChanges
from countersign_domain.staff import Role, Staff
from countersign_domain.summary import Summary, summarise
from petition_api import appkeys as keys
from petition_api.admin.auth import STAFF, require_role
from petition_api.admin.schemas import (
    DryRunSchema,
    ErasedSchema,
    ErasureSchema,
    ExportQuerySchema,
    InvalidationListSchema,
    InvalidationOutSchema,
    InvalidationSchema,
    ManagedPetitionListSchema,
    ManagedPetitionSchema,
    PartnerGrantListSchema,
    PartnerGrantSchema,
    PetitionCreateSchema,
    PetitionUpdateSchema,
    RepeatedIpListSchema,
    RepeatedIpQuerySchema,
    SummarySchema,
    TranslationSchema,
    UndoneInvalidationSchema,
)
from petition_api.bodies import read_json_object
from petition_api.openapi import SLUG, SOURCE, STAFF_TOKEN, H, Reply, documented

log = logging.getLogger("petition_api.admin")

_petition_schema = ManagedPetitionSchema()
_invalidation_schema = InvalidationOutSchema()
_grant_schema = PartnerGrantSchema()


# -- documentation --------------------------------------------------------------------------

# Any JSON body: not JSON, too large, not an object, or fields not valid.
JSON_BODY = (UnsupportedMediaType, PayloadTooLarge, InvalidJson, ValidationFailed)


def staff_operation(
    summary: str,
    *,
    responses: Mapping[int, Reply],
    problems: tuple[type[Problem], ...] = (),
    exporter: bool = False,
    **more: Any,
) -> Callable[[H], H]:
    """``documented`` for /v1/admin, and the role the operation needs: admin, or also
    exporter (``exporter=True``). Adds the staff token, its 401, and the 403 of operations
    an exporter may not use."""
    common: tuple[type[Problem], ...] = (Unauthorized, InvalidToken, ServiceUnavailable)
    if not exporter:
        common += (InsufficientRole,)
    document = documented(
        summary,
        tags=("staff",),
        security=STAFF_TOKEN,
        responses=responses,
        problems=(*common, *problems),
        **more,
    )

    def register(handler: H) -> H:
        require_role(handler, Role.EXPORTER if exporter else Role.ADMIN)
        return document(handler)

    return register


# -- request plumbing ---------------------------------------------------------------------


def db(request: web.Request) -> asyncpg.Pool:
    return request.config_dict[keys.DB]


def load(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    """The fields as the schema reads them; its ValidationError is the middleware's 422."""
    return cast(dict[str, Any], schema.load(data))


def query_fields(request: web.Request) -> dict[str, str]:
    """The query string as a dict; a parameter given twice is refused, not guessed at."""
    data: dict[str, str] = {}
    for name, value in request.query.items():
        if name in data:
            raise ValidationFailed(fields={name: ["Give once."]})
        data[name] = value
    return data


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send application/json")
    return await read_json_object(request)


async def petition_of(request: web.Request) -> ManagedPetition:
    return await petitions.managed_petition(db(request), request.match_info["slug"])


def petition_json(petition: ManagedPetition) -> dict[str, Any]:
    body = cast(dict[str, Any], _petition_schema.dump(petition))
    body["status"] = petition.effective_status
    return body


# -- petitions --------------------------------------------------------------------------------


@staff_operation(
    "Every petition, drafts included",
    exporter=True,
    responses={200: Reply("The petitions, newest first.", ManagedPetitionListSchema)},
)
async def list_petitions(request: web.Request) -> web.Response:
    found = await petitions.list_petitions(db(request))
    return web.json_response({"petitions": [petition_json(p) for p in found]})


@staff_operation(
    "A petition, drafts included",
    exporter=True,
    path_parameters={"slug": SLUG},
    responses={200: Reply("The petition.", ManagedPetitionSchema)},
    problems=(PetitionNotFound,),
)
async def get_petition(request: web.Request) -> web.Response:
    return web.json_response(petition_json(await petition_of(request)))


@staff_operation(
    "Create a petition",
    description="It starts as a draft unless `status` is open.",
    body={"application/json": PetitionCreateSchema},
    responses={201: Reply("Created.", ManagedPetitionSchema)},
    problems=(PetitionExists, ClosesAtPassed, *JSON_BODY),
)
async def create_petition(request: web.Request) -> web.Response:
    fields = load(PetitionCreateSchema(), await json_body(request))
    petition = await petitions.create_petition(db(request), actor=request[STAFF].name, **fields)
    return web.json_response(petition_json(petition), status=201)


@staff_operation(
    "Change a petition",
    description=(
        "Only the fields sent change. Status moves: draft to open, open to closed, closed to open."
    ),
    path_parameters={"slug": SLUG},
    body={"application/json": PetitionUpdateSchema},
    responses={200: Reply("The petition as changed.", ManagedPetitionSchema)},
    problems=(PetitionNotFound, InvalidStatusTransition, ClosesAtPassed, *JSON_BODY),
)
async def update_petition(request: web.Request) -> web.Response:
    changes = cast(PetitionChanges, load(PetitionUpdateSchema(), await json_body(request)))
    petition = await petitions.update_petition(
        db(request), actor=request[STAFF].name, slug=request.match_info["slug"], changes=changes
    )
    return web.json_response(petition_json(petition))


# -- partners granted a petition ----------------------------------------------------------

PETITION_AND_PARTNER = {"slug": SLUG, "source": SOURCE}


def grant_of(request: web.Request) -> dict[str, str]:
    """Who grants (or takes back) which petition to which partner, from the path."""
    return {
        "actor": request[STAFF].name,
        "source_code": request.match_info["source"],
        "slug": request.match_info["slug"],
    }


@staff_operation(
    "The partners granted a petition",
    exporter=True,
    path_parameters={"slug": SLUG},
    responses={200: Reply("By source code.", PartnerGrantListSchema)},
    problems=(PetitionNotFound,),
)
async def list_partner_grants(request: web.Request) -> web.Response:
    grants = await partners.granted_partners(db(request), request.match_info["slug"])
    return web.json_response({"partners": _grant_schema.dump(grants, many=True)})


@staff_operation(
    "Grant a partner a petition",
    description=(
        "Its key may then sign and read its figures there, and its origins embed the "
        "petition and sign from the browser. Granting again changes nothing."
    ),
    path_parameters=PETITION_AND_PARTNER,
    responses={200: Reply("Granted.", PartnerGrantSchema)},
    problems=(PetitionNotFound, PartnerNotFound),
)
async def grant_partner(request: web.Request) -> web.Response:
    grant = await partners.grant_petition(db(request), **grant_of(request))
    return web.json_response(_grant_schema.dump(grant))


@staff_operation(
    "Take a petition back from a partner",
    path_parameters=PETITION_AND_PARTNER,
    responses={204: Reply("No longer granted (within seconds).")},
    problems=(PetitionNotFound, PartnerNotFound, GrantNotFound),
)
async def revoke_partner_grant(request: web.Request) -> web.Response:
    await partners.revoke_grant(db(request), **grant_of(request))
    return web.Response(status=204)


LANGUAGE_PARAMETER = {"lang": {"type": "string", "pattern": patterns.PETITION_LANGUAGE}}


def language_of(request: web.Request) -> str:
    lang = request.match_info["lang"]
    if not re.fullmatch(patterns.PETITION_LANGUAGE, lang):
        raise ValidationFailed(fields={"lang": [patterns.PETITION_LANGUAGE_RULE]})
    return lang


@staff_operation(
    "Add or replace a petition's text in a language",
    description=(
        "Title, text and target in that language; in the default language, the petition's "
        "own text. Readers choose among the languages with `?lang=`, or their browser's."
    ),
    path_parameters={"slug": SLUG, **LANGUAGE_PARAMETER},
    body={"application/json": TranslationSchema},
    responses={200: Reply("The petition as changed.", ManagedPetitionSchema)},
    problems=(PetitionNotFound, *JSON_BODY),
)
async def put_translation(request: web.Request) -> web.Response:
    lang = language_of(request)
    fields = load(TranslationSchema(), await json_body(request))
    petition = await petitions.translate_petition(
        db(request),
        actor=request[STAFF].name,
        slug=request.match_info["slug"],
        lang=lang,
        **fields,
    )
    return web.json_response(petition_json(petition))


@staff_operation(
    "Remove a petition's text in a language",
    path_parameters={"slug": SLUG, **LANGUAGE_PARAMETER},
    responses={200: Reply("The petition as changed.", ManagedPetitionSchema)},
    problems=(PetitionNotFound, TranslationNotFound, DefaultLanguageKept, ValidationFailed),
)
async def delete_translation(request: web.Request) -> web.Response:
    petition = await petitions.remove_translation(
        db(request),
        actor=request[STAFF].name,
        slug=request.match_info["slug"],
        lang=language_of(request),
    )
    return web.json_response(petition_json(petition))


# -- summary ----------------------------------------------------------------------------------


@staff_operation(
    "A petition's figures",
    description="CSV when the Accept header names text/csv, JSON otherwise.",
    exporter=True,
    path_parameters={"slug": SLUG},
    responses={
        200: Reply("Totals by country, source and day.", SummarySchema, text_types=("text/csv",)),
    },
    problems=(PetitionNotFound,),
)
async def summary(request: web.Request) -> web.StreamResponse:
    petition = await petition_of(request)
    figures = await summarise(db(request), petition.id)
    if wants_csv(request):
        return web.Response(
            body=UTF8_BOM + summary_csv(figures).encode(),
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{petition.slug}-summary.csv"',
                "Cache-Control": "no-store",
            },
        )
    return web.json_response(summary_json(petition, figures), headers={"Cache-Control": "no-store"})


def wants_csv(request: web.Request) -> bool:
    """CSV when the Accept header names text/csv at all; JSON otherwise."""
    media = {
        part.split(";")[0].strip().lower()
        for header in request.headers.getall("Accept", [])
        for part in header.split(",")
    }
    return "text/csv" in media


def summary_json(petition: ManagedPetition, figures: Summary) -> dict[str, Any]:
    return {
        "petition": petition.slug,
        "title": petition.title,
        "status": petition.effective_status,
        "goal": petition.goal,
        "total": figures.total,
        "countries": [
            {"code": c.code, "name": c.name, "count": c.count} for c in figures.countries
        ],
        "sources": [{"source": s.source, "count": s.count} for s in figures.sources],
        "days": [{"date": d.date.isoformat(), "count": d.count} for d in figures.days],
        "invalidated": figures.invalidated,
        "erased": figures.erased,
        "consent_updates": figures.consent_updates,
        "first_signed_at": _iso(figures.first_signed_at),
        "last_signed_at": _iso(figures.last_signed_at),
        "generated_at": datetime.now(UTC).isoformat(),
    }


def summary_csv(figures: Summary) -> str:
    """One table a spreadsheet can filter: section, key, name, count."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["section", "key", "name", "count"])
    writer.writerow(["total", "", "", figures.total])
    writer.writerow(["invalidated", "", "", figures.invalidated])
    writer.writerow(["erased", "", "", figures.erased])
    writer.writerow(["consent_updates", "", "", figures.consent_updates])
    writer.writerows(["country", c.code, c.name, c.count] for c in figures.countries)
    # Signatures without a source: an empty key, named "(none)".
    writer.writerows(
        ["source", s.cell or "", s.label if s.source is None else "", s.count]
        for s in figures.sources
    )
    writer.writerows(["day", d.date.isoformat(), "", d.count] for d in figures.days)
    return out.getvalue()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- export -----------------------------------------------------------------------------------


@staff_operation(
    "Export a petition's signatures (CSV)",
    description=(
        "Counted signatures, streamed; every export is written to the audit log first. "
        "`include=email` needs the admin role."
    ),
    exporter=True,
    path_parameters={"slug": SLUG},
    query=ExportQuerySchema,
    responses={
        200: Reply("The signatures.", text_types=("text/csv",)),
    },
    # insufficient_role: emails asked for by an exporter.
    problems=(InsufficientRole, PetitionNotFound, ValidationFailed),
)
async def export_signatures(request: web.Request) -> web.StreamResponse:
    petition = await petition_of(request)
    query = load(ExportQuerySchema(), query_fields(request))
    return await send_export(request, request[STAFF], petition, query)


async def send_export(
    request: web.Request, staff: Staff, petition: ManagedPetition, query: dict[str, Any]
) -> web.StreamResponse:
    """Stream the export ``query`` (ExportQuerySchema's fields) asks for, audited: for
    the staff API and for the console's download."""
    include_email = query.pop("include", None) == "email"
    if include_email and not staff.may(Role.ADMIN):
        raise InsufficientRole("emails are exported for the admin role only")
    response = web.StreamResponse(
        headers={
            "Content-Disposition": f'attachment; filename="{petition.slug}-signatures.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.content_type = "text/csv"
    response.charset = "utf-8"

    async def send(chunk: bytes) -> None:
        # Headers go with the first bytes, once the export is on record: a failure
        # before that is still an ordinary error answer.
        if not response.prepared:
            await response.prepare(request)
        await response.write(chunk)

    try:
        await audited_export(
            db(request),
            actor=staff.name,
            via="http",
            petition_id=petition.id,
            filters=ExportFilters(**query),
            include_email=include_email,
            sink=send,
            timeout=request.config_dict[keys.SETTINGS].export_timeout,
        )
    except ConnectionResetError:
        log.info("export of petition %s: the client left before the end", petition.id)
        return response
    except Exception as exc:
        if not response.prepared:
            raise
        # The status line is sent: cut the connection, so the client sees a broken
        # download rather than a short file that looks complete.
        log.error("export of petition %s failed with %s", petition.id, type(exc).__name__)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


# The JSON schema of the fields, and what they alone cannot say: at least one criterion,
# and a reason unless dry_run.
INVALIDATION_BODY = {
    "allOf": [
        InvalidationSchema,
        {"anyOf": [{"required": [name]} for name in InvalidationSchema.CRITERIA]},
        {
            "anyOf": [
                {"required": ["reason"]},
                {"required": ["dry_run"], "properties": {"dry_run": {"enum": [True]}}},
            ]
        },
    ]
}
INVALIDATION_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_INVALIDATION_ID = re.compile(r"[0-9]{1,19}")


# -- fraud and erasure ------------------------------------------------------------------------


@staff_operation(
    "Client addresses that signed a petition repeatedly (keyed hashes)",
    path_parameters={"slug": SLUG},
    query=RepeatedIpQuerySchema,
    responses={
        200: Reply("Up to 100, most signatures first.", RepeatedIpListSchema),
    },
    problems=(PetitionNotFound, ValidationFailed),
)
async def repeated_ip_hashes(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    query = load(RepeatedIpQuerySchema(), query_fields(request))
    found = await moderation.search_ip_hashes(
        db(request),
        actor=request[STAFF].name,
        petition_id=petition.id,
        min_signatures=query["min_signatures"],
    )
    return web.json_response(
        {
            "ip_hashes": [
                {
                    **item,
                    "first_signed_at": _iso(item["first_signed_at"]),
                    "last_signed_at": _iso(item["last_signed_at"]),
                }
                for item in found
            ]
        }
    )


@staff_operation(
    "Invalidate signatures by criteria (or count them, with dry_run)",
    description="Give at least one criterion, and a reason unless `dry_run`.",
    path_parameters={"slug": SLUG},
    body={"application/json": INVALIDATION_BODY},
    responses={
        200: Reply("dry_run: how many signatures it would invalidate.", DryRunSchema),
        201: Reply("Done.", InvalidationOutSchema),
    },
    problems=(PetitionNotFound, *JSON_BODY),
)
async def create_invalidation(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    fields = load(InvalidationSchema(), await json_body(request))
    criteria = Criteria(**{name: fields.get(name) for name in InvalidationSchema.CRITERIA})
    actor = request[STAFF].name
    if fields["dry_run"]:
        hits = await moderation.dry_run_invalidation(
            db(request), actor=actor, petition_id=petition.id, criteria=criteria
        )
        return web.json_response({"would_invalidate": hits})
    invalidation = await moderation.apply_invalidation(
        db(request),
        actor=actor,
        petition_id=petition.id,
        criteria=criteria,
        reason=fields["reason"],
    )
    return web.json_response(_invalidation_schema.dump(invalidation), status=201)


@staff_operation(
    "A petition's invalidations",
    path_parameters={"slug": SLUG},
    responses={200: Reply("Newest first.", InvalidationListSchema)},
    problems=(PetitionNotFound,),
)
async def list_invalidations(request: web.Request) -> web.Response:
    petition = await petition_of(request)
    found = await moderation.list_invalidations(db(request), petition.id)
    return web.json_response({"invalidations": _invalidation_schema.dump(found, many=True)})


@staff_operation(
    "Undo an invalidation",
    path_parameters={"id": INVALIDATION_ID},
    responses={
        200: Reply("Undone; `restored` signatures count again.", UndoneInvalidationSchema),
    },
    problems=(InvalidationNotFound, InvalidationUndone),
)
async def undo_invalidation(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    # Digits only (int() would take " 1", "+1" and "1_0"), within bigint.
    if not _INVALIDATION_ID.fullmatch(raw) or not 1 <= int(raw) <= 2**63 - 1:
        raise InvalidationNotFound
    invalidation, restored = await moderation.undo_invalidation(
        db(request), actor=request[STAFF].name, invalidation_id=int(raw)
    )
    return web.json_response({**_invalidation_schema.dump(invalidation), "restored": restored})


@staff_operation(
    "Erase an address's signatures, on every petition",
    body={"application/json": ErasureSchema},
    responses={200: Reply("What was erased.", ErasedSchema)},
    problems=JSON_BODY,
)
async def erase(request: web.Request) -> web.Response:
    fields = load(ErasureSchema(), await json_body(request))
    erased = await moderation.erase_address(
        db(request), request.config_dict[keys.HASHER], fields["email"], actor=request[STAFF].name
    )
    return web.json_response({"erased": erased.signatures, "petitions": erased.petitions})
