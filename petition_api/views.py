"""Public HTTP handlers: petitions, signing, counts, health."""

from __future__ import annotations

import asyncio
import json
from typing import Any, get_args

from aiohttp import web

from countersign_core.caching import MISSING
from countersign_core.connections import TRANSIENT_ERRORS, ping_redis
from countersign_domain.errors import (
    CountsUnavailable,
    InvalidForm,
    InvalidJson,
    PayloadTooLarge,
    PetitionClosed,
    PetitionNotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from countersign_domain.signatures import (
    BackendUnavailable,
    NewSignature,
    SignStatus,
    count_signature,
)
from petition_api import appkeys as keys
from petition_api.bodies import FORM_TYPES, read_json_or_form
from petition_api.client_address import client_address
from petition_api.errors import as_problem
from petition_api.openapi import SLUG, Reply, documented
from petition_api.partners import authenticated_partner
from petition_api.petitions import public_petition
from petition_api.schemas import (
    CompiledLoad,
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
_signature_json = CompiledLoad(_signature_schema)
_signature_form_schema = SignatureFormSchema()
_petition_schema = PetitionSchema()


@documented(
    "A petition",
    tags=("petitions",),
    path_parameters={"slug": SLUG},
    responses={
        200: Reply(
            "The petition; `status` reads closed once its close date has passed.", PetitionSchema
        ),
    },
    problems=(PetitionNotFound, ServiceUnavailable),
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
    },
    problems=(
        InvalidJson,
        InvalidForm,
        Unauthorized,
        PetitionNotFound,
        PetitionClosed,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        ServiceUnavailable,
    ),
)
async def sign(request: web.Request) -> web.Response:
    try:
        return await _sign(request)
    except Exception as exc:
        if (problem := as_problem(exc)) is not None:
            count_signature("rejected", problem.code)
        raise


async def _sign(request: web.Request) -> web.Response:
    partner = await authenticated_partner(request)
    petition = await public_petition(request)
    if petition.effective_status != "open":
        raise PetitionClosed()
    data = await read_json_or_form(request)
    if partner is not None:
        # A partner's signatures carry its own code, whatever the body says.
        data.pop("source", None)
    if request.content_type in FORM_TYPES:
        fields = _signature_form_schema.load(data)
    else:
        fields = _signature_json.load(data)
    if fields["website"]:
        # The honeypot was filled in: a bot. Answer as for anyone, store nothing.
        count_signature("rejected", "honeypot")
        return _accepted("pending_confirmation" if petition.require_confirmation else "counted")

    client = client_address(request, request.app[keys.SETTINGS].api.trusted_proxies)
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
        raise ServiceUnavailable("the signature could not be recorded; try again shortly") from None
    if status is None:
        raise PetitionClosed()
    # The same answer whether the address is new, had signed already, or had confirmed
    # already: nobody can use this endpoint to find out whether someone signed.
    return _accepted(status)


# The two answers a signature gets, encoded once.
_ACCEPTED = {
    status: (json.dumps({"status": status}).encode(), 201 if status == "counted" else 202)
    for status in get_args(SignStatus)
}


def _accepted(status: SignStatus) -> web.Response:
    """201 for a signature that counts; 202 for one that counts once confirmed."""
    body, code = _ACCEPTED[status]
    return web.Response(body=body, status=code, content_type="application/json", charset="utf-8")


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
    },
    problems=(PetitionNotFound, CountsUnavailable, ServiceUnavailable),
)
async def get_counts(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    counts = request.app[keys.COUNTS]
    rendered = counts.cached(petition.id)
    if rendered is MISSING:
        rendered = await counts.render(petition)
    if rendered is None:
        raise CountsUnavailable()
    # Body and headers were made once for every reader of these figures.
    if not rendered.stale and any(
        candidate.value == rendered.etag for candidate in request.if_none_match or ()
    ):
        return web.Response(status=304, headers=rendered.not_modified_headers)
    return web.Response(body=rendered.body, headers=rendered.headers)


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
        "redis": await check(ping_redis(request.app[keys.REDIS])),
    }
    ready = all(value == "ok" for value in status.values())
    return web.json_response(status, status=200 if ready else 503)
