"""Public HTTP handlers: petitions, signing, counts, health."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, get_args

from aiohttp import web

from countersign_core.caching import MISSING
from countersign_core.connections import TRANSIENT_ERRORS, ping_redis, within
from countersign_core.texts import negotiate, parse_accept_language
from countersign_domain.errors import (
    CountsUnavailable,
    InvalidForm,
    InvalidJson,
    OriginNotAllowed,
    PayloadTooLarge,
    PetitionClosed,
    PetitionNotFound,
    PetitionNotGranted,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from countersign_domain.partners import Partner
from countersign_domain.petitions import Petition, choose_language, petition_in
from countersign_domain.signatures import (
    BackendUnavailable,
    NewSignature,
    SignStatus,
    count_signature,
)
from petition_api import appkeys as keys
from petition_api.bodies import FORM_TYPES, read_json_or_form
from petition_api.client_address import SIGNER_IP_HEADER, client_address, signer_address
from petition_api.cors import refuse_foreign_origin
from petition_api.errors import as_problem
from petition_api.openapi import SLUG, Reply, documented
from petition_api.partners import authenticated_partner, require_grant
from petition_api.petitions import public_petition
from petition_api.schemas import (
    CompiledLoad,
    CountsSchema,
    HealthSchema,
    LanguageQuerySchema,
    PendingConfirmationSchema,
    PrivacyNoticeSchema,
    PublicPetitionSchema,
    ReadinessSchema,
    SignatureFormSchema,
    SignatureSchema,
    SignedSchema,
)

_signature_schema = SignatureSchema()
_signature_json = CompiledLoad(_signature_schema)
_signature_form_schema = SignatureFormSchema()
_petition_schema = PublicPetitionSchema()
_privacy_schema = PrivacyNoticeSchema()
_language_query = LanguageQuerySchema()


@documented(
    "A petition, in a language",
    tags=("petitions",),
    description=(
        "Title, text and target in the language asked for (`?lang=`), else the first of "
        "Accept-Language the petition is written in, else its default language; `lang` and "
        "Content-Language say which, `languages` lists them all. One total whatever the "
        "language."
    ),
    path_parameters={"slug": SLUG},
    header_parameters={"Accept-Language": "The reader's languages, most wanted first."},
    query=LanguageQuerySchema,
    responses={
        200: Reply(
            "The petition; `status` reads closed once its close date has passed.",
            PublicPetitionSchema,
            headers={"Content-Language": ("The language of title, text and target.", True)},
        ),
    },
    problems=(PetitionNotFound, ValidationFailed, ServiceUnavailable),
)
async def get_petition(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    query = _language_query.load(request.query)
    lang = choose_language(
        petition, [query.get("lang")], parse_accept_language(request.headers.get("Accept-Language"))
    )
    text = petition_in(petition, lang)
    body = _petition_schema.dump(petition)
    body.update(
        status=petition.effective_status,
        lang=text.lang,
        title=text.title,
        text=text.body,
        target=text.target,
        privacy=_privacy_schema.dump(petition.privacy_notice(request.app[keys.SETTINGS].privacy)),
    )
    return web.json_response(
        body, headers={"Content-Language": text.lang, "Vary": "Accept-Language"}
    )


@documented(
    "Sign a petition",
    tags=("petitions",),
    description=(
        "The same 201 answers a new signature, an address that had signed already, and one "
        "held for review (too many from one place, or a throwaway address): nobody can use "
        "this to learn whether someone signed; likewise the 202 on a petition that "
        "counts a signature only once its address is confirmed by email. `website` is a "
        "honeypot and must stay empty. A partner signing server to server sends its key "
        "(`Authorization: Bearer <partner key>`) on a petition granted it: the signature "
        "then carries the partner's source, whatever the body's `source` says (it is not "
        "checked), and counts against the partner's own limit, not its server's address. "
        "The key is not a security requirement here, since anyone may sign: a wrong or "
        "revoked one is 401. A request whose `Origin` (or, without one, `Referer`) names "
        "a site that may not sign this petition is refused (403) before its body is read."
    ),
    path_parameters={"slug": SLUG},
    header_parameters={
        SIGNER_IP_HEADER: (
            "With a partner key only: the address the partner's signer signed from, for "
            "the per-address limits and the stored (keyed, expiring) IP hash. Ignored "
            "without a key."
        )
    },
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
        OriginNotAllowed,
        PetitionNotGranted,
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
    # Before the body is read: a page of another site must not make its visitors sign.
    await refuse_foreign_origin(request, petition.slug)
    if partner is not None:
        await require_grant(request, partner, petition)
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
    # The same answer whether the address is new, had signed already, or had confirmed
    # already: nobody can use this endpoint to find out whether someone signed.
    return _accepted(await record_signature(request, petition, fields, partner))


async def record_signature(
    request: web.Request,
    petition: Petition,
    fields: dict[str, Any],
    partner: Partner | None = None,
) -> SignStatus:
    """Record the signature of these checked fields (a filled honeypot records nothing)
    after the abuse checks, whichever door it came through (the API, the petition's
    page): what it will count as. Raises PetitionClosed, ServiceUnavailable, RateLimited."""
    if fields["website"]:
        # The honeypot was filled in: a bot. Answer as for anyone, store nothing.
        count_signature("rejected", "honeypot")
        return "pending_confirmation" if petition.require_confirmation else "counted"
    if partner is None:
        client = client_address(request, request.app[keys.SETTINGS].api.trusted_proxies)
    else:
        # The partner's server signs for many people: its own address says nothing about
        # them. Its key has a limit of its own; its signer, if it names one, the usual.
        client = signer_address(request)
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
        language=signature_language(request, petition, fields["language"]),
        suspect_reason=suspect_reason,
    )
    try:
        status = await request.app[keys.WRITER].write(signature)
    except BackendUnavailable:
        raise ServiceUnavailable("the signature could not be recorded; try again shortly") from None
    if status is None:
        raise PetitionClosed()
    return status


def signature_language(request: web.Request, petition: Petition, explicit: str | None) -> str:
    """The language of the signer's emails and pages: the one they chose, else their
    browser's first that we speak or the petition is written in, else the petition's
    default (as its title will be)."""
    available = request.app[keys.TEXTS].languages | set(petition.languages)
    accepted = parse_accept_language(request.headers.get("Accept-Language"))
    return negotiate([explicit, *accepted], available, petition.default_lang)


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
    """Ready when Postgres and Redis both answer within COUNTERSIGN_BACKEND_TIMEOUT."""
    timeout = request.app[keys.SETTINGS].api.backend_timeout

    async def check(probe: Awaitable[object]) -> str:
        try:
            await within(timeout, probe)
        except TRANSIENT_ERRORS:
            return "unavailable"
        return "ok"

    status = {
        "postgres": await check(request.app[keys.DB].fetchval("SELECT 1")),
        "redis": await check(ping_redis(request.app[keys.REDIS])),
    }
    ready = all(value == "ok" for value in status.values())
    return web.json_response(status, status=200 if ready else 503)
