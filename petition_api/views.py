"""Public HTTP handlers: petitions, signing, counts, health."""

from __future__ import annotations

import asyncio
from typing import Any, cast
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from marshmallow import ValidationError

from countersign_core.connections import TRANSIENT_ERRORS
from countersign_domain.petitions import Petition
from countersign_domain.signatures import (
    BackendUnavailable,
    NewSignature,
    SignStatus,
    count_signature,
)
from petition_api import appkeys as keys
from petition_api.bodies import read_json_object
from petition_api.client_address import client_address
from petition_api.errors import (
    ApiError,
    counts_unavailable,
    petition_not_found,
    unavailable,
    validation_failed,
)
from petition_api.openapi import Reply, documented, error
from petition_api.partners import NO_PARTNER_KEY, authenticated_partner
from petition_api.schemas import (
    CountsSchema,
    HealthSchema,
    PendingConfirmationSchema,
    PetitionSchema,
    ReadinessSchema,
    SignatureFormSchema,
    SignatureSchema,
    SignedSchema,
)

_signature_schema = SignatureSchema()
_signature_form_schema = SignatureFormSchema()
_petition_schema = PetitionSchema()

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

SLUG = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,99}$"}
PETITION_NOT_FOUND = error("No such petition (unknown, or a draft): `petition_not_found`.")
POSTGRES_UNAVAILABLE = error(
    "Postgres did not answer in time: `service_unavailable`.", retry_after=True
)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/petitions/{slug}", get_petition)
    app.router.add_post("/v1/petitions/{slug}/signatures", sign)
    app.router.add_get("/v1/petitions/{slug}/counts", get_counts)


async def public_petition(request: web.Request) -> Petition:
    petition = await request.app[keys.PETITIONS].get(request.match_info["slug"])
    if petition is None or not petition.is_public:
        raise petition_not_found()
    return petition


@documented(
    "A petition",
    tags=("petitions",),
    path_parameters={"slug": SLUG},
    responses={
        200: Reply(
            "The petition; `status` reads closed once its close date has passed.", PetitionSchema
        ),
        404: PETITION_NOT_FOUND,
        503: POSTGRES_UNAVAILABLE,
    },
)
async def get_petition(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    body = _petition_schema.dump(petition)
    body["status"] = petition.effective_status
    return web.json_response(body)


@documented(
    "Sign a petition",
    tags=("petitions",),
    description=(
        "The same 201 answers a new signature, an address that had signed already, and one "
        "held for review (too many from one place, or a throwaway address): nobody can use "
        "this to learn whether someone signed; likewise the 202 on a petition that "
        "counts a signature only once its address is confirmed by email. `website` is a "
        "honeypot and must stay empty. A partner signing server to server sends its key "
        "(`Authorization: Bearer <partner key>`): the signature then carries the partner's "
        "source, whatever the body's `source` says (it is not checked). The key is not a "
        "security requirement here, since anyone may sign: a wrong or revoked one is 401."
    ),
    path_parameters={"slug": SLUG},
    body={
        "application/json": SignatureSchema,
        "application/x-www-form-urlencoded": SignatureFormSchema,
        "multipart/form-data": SignatureFormSchema,
    },
    responses={
        201: Reply("Signed.", SignedSchema),
        202: Reply(
            "Signed, to be counted once confirmed: a link was emailed.", PendingConfirmationSchema
        ),
        400: error(
            "The body is not a JSON object (`invalid_json`), or not a well-formed form "
            "(`invalid_form`)."
        ),
        401: NO_PARTNER_KEY,
        404: PETITION_NOT_FOUND,
        409: error("The petition is closed: `petition_closed`."),
        413: error("The body is too large: `payload_too_large`."),
        415: error("Not JSON or a form: `unsupported_media_type`."),
        422: error("Some fields are invalid (`fields` says which): `validation_failed`."),
        429: error(
            "Too many signatures from this address, partner or overall, when the service "
            "refuses them rather than holding them for review: `rate_limited`.",
            retry_after=True,
        ),
        503: error(
            "The signature could not be recorded; try again: `service_unavailable`.",
            retry_after=True,
        ),
    },
)
async def sign(request: web.Request) -> web.Response:
    try:
        return await _sign(request)
    except ApiError as exc:
        count_signature("rejected", exc.code)
        raise
    except TRANSIENT_ERRORS:
        count_signature("rejected", "service_unavailable")
        raise


async def _sign(request: web.Request) -> web.Response:
    partner = await authenticated_partner(request)
    petition = await public_petition(request)
    if petition.effective_status != "open":
        raise ApiError(409, "petition_closed", "this petition is not taking signatures")
    data = await _read_body(request)
    if partner is not None:
        # A partner's signatures carry its own code, whatever the body says.
        data.pop("source", None)
    try:
        schema = _signature_form_schema if request.content_type in FORM_TYPES else _signature_schema
        fields = schema.load(data)
    except ValidationError as exc:
        raise validation_failed(cast(dict[str, Any], exc.messages)) from None
    if fields["website"]:
        # The honeypot was filled in: a bot. Answer as for anyone, store nothing.
        count_signature("rejected", "honeypot")
        return _accepted("pending_confirmation" if petition.require_confirmation else "counted")

    client = client_address(request, request.app[keys.SETTINGS].trusted_proxies)
    suspect_reason = await request.app[keys.ABUSE].assess(
        petition_id=petition.id,
        client=client,
        email=fields["email"],
        partner=partner.source_code if partner is not None else None,
    )
    hasher = request.app[keys.HASHER]
    today = await request.app[keys.IP_KEYS].today() if client else None
    signature = NewSignature(
        petition_id=petition.id,
        name=fields["name"],
        email=fields["email"],
        email_hash=hasher.email(fields["email"]),
        country=fields["country"],
        postal_code=fields["postal_code"],
        source=partner.source_code if partner is not None else fields["source"],
        consent_updates=fields["consent_updates"],
        ip_hash=today.ip(str(client)) if today else None,
        language=request.app[keys.TEXTS].negotiate(
            fields["language"], request.headers.get("Accept-Language")
        ),
        suspect_reason=suspect_reason,
    )
    try:
        status = await request.app[keys.WRITER].write(signature)
    except BackendUnavailable:
        raise unavailable("the signature could not be recorded; try again shortly") from None
    if status is None:
        raise ApiError(409, "petition_closed", "this petition is not taking signatures")
    # The same answer whether the address is new, had signed already, or had confirmed
    # already: nobody can use this endpoint to find out whether someone signed.
    return _accepted(status)


def _accepted(status: SignStatus) -> web.Response:
    """201 for a signature that counts; 202 for one that counts once confirmed."""
    return web.json_response({"status": status}, status=201 if status == "counted" else 202)


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        return await read_json_object(request)
    if request.content_type in FORM_TYPES:
        form = await read_form(request)
        if form is None:
            raise ApiError(400, "invalid_form", "the body is not a well-formed form")
        return form
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/json or application/x-www-form-urlencoded",
    )


async def read_form(request: web.Request) -> dict[str, str] | None:
    """The text fields of a form body; None if it is not a well-formed form (a multipart
    body without its boundary, cut short, or with a broken part header or text that is
    not UTF-8).

    In a URL-encoded form, bytes that are not UTF-8 (``name=%ff%fe``) are kept as lone
    surrogates rather than turned into U+FFFD as aiohttp would: no field's pattern
    accepts them, so the answer is a 422 that names the field.
    """
    if request.content_type == "application/x-www-form-urlencoded":
        charset = request.charset or "utf-8"
        try:
            text = (await request.read()).rstrip().decode(charset, "surrogateescape")
            pairs = parse_qsl(
                text, keep_blank_values=True, encoding=charset, errors="surrogateescape"
            )
        except (ValueError, LookupError):  # LookupError: no such charset
            return None
        return dict(pairs)
    try:
        form = await request.post()
    except (ValueError, BadHttpMessage):
        return None
    return {key: value for key, value in form.items() if isinstance(value, str)}


@documented(
    "A petition's live counts",
    tags=("petitions",),
    description=(
        "Read from Redis, never by counting rows. If Redis cannot give them, the last "
        "figures known are served with `stale: true` and `Cache-Control: no-store`."
    ),
    path_parameters={"slug": SLUG},
    header_parameters={"If-None-Match": "An ETag from an earlier answer."},
    responses={
        200: Reply(
            "The counts, countries largest first.",
            CountsSchema,
            headers={
                "ETag": ("Of this body (absent when stale).", False),
                "Cache-Control": ("How long to reuse it.", True),
            },
        ),
        304: Reply("Unchanged since the ETag sent in If-None-Match."),
        404: PETITION_NOT_FOUND,
        503: error(
            "No counts to give yet (being built): `counts_unavailable`; or Postgres did not "
            "answer: `service_unavailable`.",
            retry_after=True,
        ),
    },
)
async def get_counts(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    rendered = await request.app[keys.COUNTS].render(petition)
    if rendered is None:
        raise counts_unavailable()
    if rendered.stale:
        return web.Response(
            body=rendered.body,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )
    headers = {
        "Cache-Control": f"public, max-age={request.app[keys.SETTINGS].counts_max_age}",
        "ETag": f'"{rendered.etag}"',
    }
    if any(candidate.value == rendered.etag for candidate in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=rendered.body, content_type="application/json", headers=headers)


@documented("The process is up", tags=("health",), responses={200: Reply("Up.", HealthSchema)})
async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@documented(
    "Postgres and Redis answer",
    tags=("health",),
    responses={
        200: Reply("Both answer.", ReadinessSchema),
        503: Reply("One or both do not.", ReadinessSchema),
    },
)
async def readyz(request: web.Request) -> web.Response:
    """Ready when Postgres and Redis both answer within a second."""

    async def check(probe: Any) -> str:
        try:
            await asyncio.wait_for(probe, timeout=1.0)
        except TRANSIENT_ERRORS:
            return "unavailable"
        return "ok"

    status = {
        "postgres": await check(request.app[keys.DB].fetchval("SELECT 1")),
        "redis": await check(request.app[keys.REDIS].ping()),
    }
    ready = all(value == "ok" for value in status.values())
    return web.json_response(status, status=200 if ready else 503)
