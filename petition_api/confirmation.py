"""Confirming signatures by email (double opt-in): the link's pages and new-link requests.

``GET /confirm/{token}`` shows the petition and a button; only the button's POST
confirms, so the mail scanners that open every link in an email confirm nobody. The
token is the capability: nobody can post a confirmation without it, so the form needs no
other defence against cross-site requests. Confirming sets ``confirmed_at``; the
signatures triggers and the counter worker then count it, once.

``GET /confirm`` and ``POST /confirm`` ask for a new link by address, from the pages of
an expired or damaged link. The answer is the same whether or not the address signed.
"""

from __future__ import annotations

import functools

import asyncpg
from aiohttp import web
from marshmallow import ValidationError

from countersign_core.connections import within
from countersign_domain.confirmation_tokens import ConfirmationRef, TokenExpired, TokenInvalid
from countersign_domain.errors import PayloadTooLarge, ServiceUnavailable
from countersign_domain.petitions import petition_in
from countersign_domain.signature_log.receipts import receipt_code
from petition_api import appkeys as keys
from petition_api.bodies import FORM_TYPES, read_form
from petition_api.openapi import Reply, documented
from petition_api.petition_page import petition_view, reader_of
from petition_api.schemas import ConfirmationRequestSchema

_request_schema = ConfirmationRequestSchema()

# What the page for a token says: the petition, whether what the link confirms (the
# signature, or the partner's submission $3) is confirmed, whether the petition is open,
# the signer's language. No row when the signature (or the submission) is gone.
STATE = """
SELECT p.slug, s.receipt_secret,
       CASE WHEN $3::bigint IS NULL THEN s.confirmed_at IS NOT NULL
            ELSE ps.confirmed_at IS NOT NULL END AS confirmed,
       countersign_petition_open(p) AS open,
       (SELECT j.language FROM email_jobs j WHERE j.signature_id = s.id
        ORDER BY j.sequence DESC LIMIT 1) AS language
FROM signatures s
JOIN petitions p ON p.id = s.petition_id
LEFT JOIN partner_submissions ps ON ps.id = $3 AND ps.signature_id = s.id
WHERE s.id = $1 AND s.petition_id = $2 AND s.erased_at IS NULL
  AND ($3::bigint IS NULL OR ps.id IS NOT NULL)
"""

# Confirms a pending signature of an open petition, and the partner's submission $3 (if
# any) with it: an address that had signed, even confirmed, credits the partner only
# through this link, its own. Of two concurrent confirmations, the second waits for the
# first's row lock, then finds confirmed_at set and changes nothing: the signature counts
# once.
CONFIRM = """
WITH signature AS (
    UPDATE signatures s SET confirmed_at = now()
    FROM petitions p
    WHERE s.id = $1 AND s.petition_id = $2 AND p.id = s.petition_id
      AND s.confirmed_at IS NULL AND s.erased_at IS NULL AND countersign_petition_open(p)
)
UPDATE partner_submissions ps SET confirmed_at = now()
FROM signatures s JOIN petitions p ON p.id = s.petition_id
WHERE ps.id = $3 AND ps.signature_id = $1 AND s.id = $1 AND s.petition_id = $2
  AND ps.confirmed_at IS NULL AND s.erased_at IS NULL AND countersign_petition_open(p)
"""

# Another confirmation email for each pending signature of this address on an open
# petition, within the limit of $3 emails per signature (none while one waits, held ones
# included); it confirms too the partner's submission that created the signature, if any.
REQUEST_EMAILS = """
INSERT INTO email_jobs (signature_id, sequence, language, submission_id)
SELECT s.id, so_far.queued + 1, $2, countersign_creating_submission(s.id)
FROM signatures s
JOIN petitions p ON p.id = s.petition_id
CROSS JOIN LATERAL countersign_confirmation_emails(s.id) AS so_far
WHERE s.email_hash = $1 AND s.confirmed_at IS NULL AND s.erased_at IS NULL
  AND countersign_petition_open(p) AND so_far.queued < $3 AND so_far.waiting = 0
ON CONFLICT (signature_id, kind, sequence) DO NOTHING
"""


HTML = ("text/html",)
TOKEN_PAGES = {
    200: Reply("Confirmed already, or a button to confirm.", text_types=HTML),
    404: Reply("No such link: it is damaged (cut short, altered).", text_types=HTML),
    409: Reply("The petition is closed.", text_types=HTML),
    410: Reply("The link has expired, or the signature is gone.", text_types=HTML),
}


@documented(
    "The page of a confirmation link",
    html=True,
    tags=("confirmation",),
    description="Shows the petition and a button; opening the link confirms nothing.",
    responses=TOKEN_PAGES,
    problems=(ServiceUnavailable,),
)
async def show_confirmation(request: web.Request) -> web.Response:
    return await _answer(request, confirm=False)


@documented(
    "Confirm a signature (the button of the link's page)",
    html=True,
    tags=("confirmation",),
    description="The token in the path is the capability; the body is ignored.",
    responses={**TOKEN_PAGES, 200: Reply("Confirmed.", text_types=HTML)},
    problems=(ServiceUnavailable,),
)
async def confirm(request: web.Request) -> web.Response:
    return await _answer(request, confirm=True)


async def _answer(request: web.Request, *, confirm: bool) -> web.Response:
    pages = request.app[keys.PAGES]
    try:
        ref = request.app[keys.TOKENS].read(request.match_info["token"])
    except TokenExpired:
        return pages.render(request, "expired", status=410)
    except TokenInvalid:
        # No confirmation has this address: a link cut short, altered or forged.
        return pages.render(request, "damaged", status=404)
    row = await within(
        request.app[keys.SETTINGS].api.backend_timeout,
        confirmation_state(request.app[keys.DB], ref, confirm=confirm),
    )
    petition = await request.app[keys.PETITIONS].get(row["slug"]) if row else None
    if row is None or petition is None:  # purged unconfirmed, or erased
        return pages.render(request, "gone", status=410)
    # In the signer's language first (the one their email spoke).
    reader = reader_of(request, petition, row["language"])
    text = petition_in(petition, reader.lang)
    page = functools.partial(
        pages.render,
        request,
        title=text.title,
        title_lang=text.lang,
        texts=reader.texts,
        privacy=petition.privacy_notice(request.app[keys.SETTINGS].privacy),
    )
    if row["confirmed"]:
        # The signer's receipt (the signature log): the page is theirs, the link a secret.
        secret = row["receipt_secret"]
        receipt = receipt_code(row["slug"], ref.signature_id, secret) if secret else None
        # Not a dead end: the count it joined, and the links to share the petition.
        view = await petition_view(request, petition, reader.texts, reader.lang, None)
        return page("confirmed", receipt=receipt, view=view)
    if not row["open"]:
        return page("closed", status=409)
    return page("confirm")


async def confirmation_state(
    pool: asyncpg.Pool, ref: ConfirmationRef, *, confirm: bool
) -> asyncpg.Record | None:
    """The signature's state, after confirming it if ``confirm`` (the POST; a GET
    writes nothing)."""
    ids = (ref.signature_id, ref.petition_id, ref.submission_id)
    if confirm:
        await pool.execute(CONFIRM, *ids)
    row: asyncpg.Record | None = await pool.fetchrow(STATE, *ids)
    return row


@documented(
    "The form asking for a new confirmation link",
    html=True,
    tags=("confirmation",),
    responses={200: Reply("The form.", text_types=HTML)},
)
async def new_link_form(request: web.Request) -> web.Response:
    return request.app[keys.PAGES].render(request, "request")


@documented(
    "Ask for a new confirmation link",
    html=True,
    tags=("confirmation",),
    description=(
        "The same answer whether or not the address signed: this tells nobody whether someone did."
    ),
    body=dict.fromkeys(FORM_TYPES, ConfirmationRequestSchema),
    responses={
        202: Reply("Any pending signature of this address gets a new link.", text_types=HTML),
        400: Reply("The form again: the body is not a well-formed form.", text_types=HTML),
        422: Reply("The form again: the address is not valid.", text_types=HTML),
    },
    problems=(PayloadTooLarge, ServiceUnavailable),
)
async def request_new_link(request: web.Request) -> web.Response:
    pages = request.app[keys.PAGES]
    form = await read_form(request)
    if form is None:
        return pages.render(request, "request", status=400, invalid=True)
    try:
        fields = _request_schema.load(form)
    except ValidationError:
        return pages.render(request, "request", status=422, invalid=True)
    app = request.app
    await within(
        app[keys.SETTINGS].api.backend_timeout,
        request_emails(
            app[keys.DB],
            app[keys.HASHER].email(fields["email"]),
            language=app[keys.TEXTS].negotiate(None, request.headers.get("Accept-Language")),
            limit=app[keys.SETTINGS].confirmation.emails_per_signature,
        ),
    )
    # The same page whether a signature was waiting or not: this form tells nobody
    # whether an address signed.
    return pages.render(request, "requested", status=202)


async def request_emails(
    pool: asyncpg.Pool, email_hash: bytes, *, language: str, limit: int
) -> None:
    await pool.execute(REQUEST_EMAILS, email_hash, language, limit)
