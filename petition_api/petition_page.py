"""A petition's own page, ``/petitions/{slug}``: read, sign and share it, in the reader's
language, with or without JavaScript.

The page is rendered here, form included. Its form posts back to the same address and
gets an HTML page: thank you, check your inbox, or the form again with each error beside
its field and the values kept. With JavaScript (static/page.js) the same form is sent
in the background and the answer's content replaces the page's, and the count follows
the live stream. ``GET /`` lists the open petitions, or sends readers to one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from markupsafe import Markup
from marshmallow import ValidationError

from countersign_core.texts import Texts, parse_accept_language
from countersign_domain import patterns
from countersign_domain.errors import (
    InvalidForm,
    NotFound,
    OriginNotAllowed,
    PayloadTooLarge,
    PetitionClosed,
    PetitionNotFound,
    Problem,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)
from countersign_domain.petitions import (
    Petition,
    PetitionText,
    choose_language,
    goal_reached,
    list_open_petitions,
    petition_in,
)
from countersign_domain.signatures import count_signature
from petition_api import appkeys as keys
from petition_api.bodies import FORM_TYPES, read_form
from petition_api.cors import refuse_foreign_origin
from petition_api.countries import countries_in, country_name
from petition_api.errors import as_problem
from petition_api.openapi import SLUG, Reply, documented
from petition_api.pages import PUBLIC, number
from petition_api.petitions import public_petition
from petition_api.schemas import (
    LanguageQuerySchema,
    PageLanguageQuerySchema,
    SignatureFormSchema,
)
from petition_api.views import record_signature
from petition_api.widget import IF_NONE_MATCH, IMMUTABLE, NOT_MODIFIED, javascript_response

HTML = ("text/html",)
TOP_COUNTRIES = 5
# The text shown above "read more": the first paragraph, cut if longer than this.
LEAD_LENGTH = 320
_SOURCE = re.compile(f"^{patterns.SOURCE_CODE}$")
_form_schema = SignatureFormSchema()
# The form's fields, by the names of the texts that label them.
FIELD_LABELS = {
    "name": "field_name",
    "email": "field_email",
    "country": "field_country",
    "postal_code": "field_postal",
    "consent_updates": "field_consent",
}
# What a field's error says, by field; anything else is "check this field".
FIELD_ERRORS = {
    "name": "error_name",
    "email": "error_email",
    "country": "error_country",
    "postal_code": "error_postal",
}
# The share channels, in the order of their links (the copied link is "share-copy").
SHARE_CHANNELS = ("email", "whatsapp", "telegram", "x", "facebook")


# -- what a page shows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    total: int | None  # None: the counts cannot be read just now
    goal: int
    total_markup: Markup

    @property
    def reached(self) -> bool:
        return self.total is not None and goal_reached(self.total, self.goal)

    @property
    def bar(self) -> int:
        """The progress bar's value: never past the goal (the bar is full)."""
        return min(self.total or 0, self.goal)


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    count: int


@dataclass(frozen=True)
class LanguageChoice:
    code: str
    name: str
    url: str  # relative, for the switcher
    absolute: str  # for hreflang links
    current: bool


@dataclass(frozen=True)
class Share:
    copy: str  # the link to copy
    links: list[tuple[str, str]]  # (name, URL)


@dataclass(frozen=True)
class PetitionView:
    petition: Petition
    text: PetitionText
    foreign: bool  # the petition's text is not in the interface's language
    lead: list[str]
    more: list[str]
    count: Count
    top: list[Country]
    canonical: str
    page_url: str
    form_action: str
    live_url: str
    card_url: str
    description: str
    share: Share
    source: str | None

    @property
    def open(self) -> bool:
        return self.petition.effective_status == "open"


def public_base(request: web.Request) -> str:
    """Where readers reach this site: COUNTERSIGN_PUBLIC_URL, else the request's own."""
    configured = request.app[keys.SETTINGS].mail.public_url
    return configured or f"{request.scheme}://{request.host}"


def petition_path(petition: Petition, **query: str | None) -> str:
    given = {name: value for name, value in query.items() if value}
    path = f"/petitions/{quote(petition.slug)}"
    return f"{path}?{urlencode(given)}" if given else path


def paragraphs(body: str) -> tuple[list[str], list[str]]:
    """The text as paragraphs: the lead shown at once, and the rest behind "read more".
    A long first paragraph is cut in the lead and given whole with the rest."""
    found = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    if not found:
        return [], []
    first = found[0]
    if len(first) <= LEAD_LENGTH:
        return [first], found[1:]
    cut = first[:LEAD_LENGTH].rsplit(" ", 1)[0]
    return [f"{cut}…"], found


def description_of(text: PetitionText) -> str:
    flat = " ".join(text.body.split())
    return flat if len(flat) <= 200 else flat[:200].rsplit(" ", 1)[0] + "…"


async def counts_of(request: web.Request, petition: Petition) -> Mapping[str, Any] | None:
    """The figures ``/counts`` serves (the same renderer, the same public breakdown)."""
    rendered = await request.app[keys.COUNTS].render(petition)
    return rendered.payload if rendered is not None else None


async def petition_view(
    request: web.Request, petition: Petition, texts: Texts, lang: str, source: str | None
) -> PetitionView:
    text = petition_in(petition, lang)
    figures = await counts_of(request, petition)
    total = figures["total"] if figures else None
    count = Count(
        total,
        petition.shown_goal(total or 0),  # the next goal once this one is reached
        Markup('<strong data-total="{}">{}</strong>').format(
            "" if total is None else total, "…" if total is None else number(texts, total)
        ),
    )
    top = [
        Country(
            item["code"],
            texts("other_countries")
            if item["code"] == "other"
            else country_name(item["code"], texts.language),
            item["count"],
        )
        for item in (figures["countries"] if figures else [])[:TOP_COUNTRIES]
    ]
    base = public_base(request)
    shown_lang = None if text.lang == petition.default_lang else text.lang
    canonical = base + petition_path(petition, lang=shown_lang)
    lead, more = paragraphs(text.body)
    return PetitionView(
        petition=petition,
        text=text,
        foreign=text.lang != texts.language,
        lead=lead,
        more=more,
        count=count,
        top=top,
        canonical=canonical,
        page_url=petition_path(petition, lang=shown_lang),
        form_action=petition_path(petition, lang=shown_lang),
        live_url=f"/v1/petitions/{quote(petition.slug)}/live",
        card_url=f"{base}/petitions/{quote(petition.slug)}/card.png?lang={text.lang}",
        description=description_of(text),
        share=share_links(texts, text, base + petition_path(petition, lang=shown_lang)),
        source=source,
    )


def share_links(texts: Texts, text: PetitionText, url: str) -> Share:
    """A link per channel, each with its source code (``?source=share-whatsapp``)."""
    joiner = "&" if "?" in url else "?"

    def tagged(channel: str) -> str:
        return f"{url}{joiner}source=share-{channel}"

    pitch = texts("share_pitch", title=text.title)

    def q(value: str) -> str:
        return quote(value, safe="")

    links = {
        "email": f"mailto:?subject={q(text.title)}&body={q(pitch + chr(10) + tagged('email'))}",
        "whatsapp": f"https://wa.me/?text={q(pitch + ' ' + tagged('whatsapp'))}",
        "telegram": f"https://t.me/share/url?url={q(tagged('telegram'))}&text={q(pitch)}",
        "x": f"https://x.com/intent/post?text={q(pitch)}&url={q(tagged('x'))}",
        "facebook": f"https://www.facebook.com/sharer/sharer.php?u={q(tagged('facebook'))}",
    }
    names = {
        "email": texts("share_email"),
        "whatsapp": "WhatsApp",
        "telegram": "Telegram",
        "x": "X",
        "facebook": "Facebook",
    }
    return Share(tagged("copy"), [(names[channel], links[channel]) for channel in SHARE_CHANNELS])


def language_choices(
    request: web.Request, petition: Petition, current: str, source: str | None
) -> list[LanguageChoice]:
    catalog = request.app[keys.PAGES].catalog
    base = public_base(request)
    choices = []
    for code in petition.languages:
        name = catalog.get(code)("language_name") if code in catalog.languages else code
        path = petition_path(petition, lang=code, source=source)
        choices.append(LanguageChoice(code, name, path, base + path, code == current))
    return choices


# -- who reads, in which language ------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    texts: Texts  # the interface's language
    lang: str  # the petition's text's language
    source: str | None


def reader_of(request: web.Request, petition: Petition, explicit: str | None) -> Reader:
    """Languages in the order every door uses: the explicit choice, the browser's, the
    petition's default; and the source code the page was opened with."""
    accepted = parse_accept_language(request.headers.get("Accept-Language"))
    texts = request.app[keys.PAGES].texts_for(request, explicit, petition.default_lang)
    lang = choose_language(petition, [explicit], accepted)
    source = request.query.get("source", "").strip().lower()
    return Reader(texts, lang, source if _SOURCE.match(source) else None)


def query_language(request: web.Request) -> str | None:
    """``?lang=`` if it is a language tag; a page ignores anything else in it."""
    try:
        lang: str | None = LanguageQuerySchema().load(request.query).get("lang")
    except ValidationError:
        return None
    return lang


def preselected_country(request: web.Request) -> str:
    """The region of the browser's first language (``en-GB``: GB), for the form."""
    for tag in parse_accept_language(request.headers.get("Accept-Language")):
        region = tag.split("-")[-1].upper() if "-" in tag else ""
        return region if region in patterns.COUNTRY_CODES else ""
    return ""


# -- the petition page and its form -----------------------------------------------------------


async def render_petition(
    request: web.Request,
    petition: Petition,
    reader: Reader,
    *,
    status: int = 200,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    pages = request.app[keys.PAGES]
    texts = reader.texts
    view = await petition_view(request, petition, texts, reader.lang, reader.source)
    return pages.html(
        "petition.html",
        texts,
        status=status,
        # A page echoing a form is nobody else's; the bare page may be kept and checked.
        cache=PUBLIC if values is None else "no-store",
        view=view,
        languages=language_choices(request, petition, reader.lang, reader.source),
        countries=countries_in(texts.language),
        fields={name: texts(key) for name, key in FIELD_LABELS.items()},
        values=values or {"country": preselected_country(request)},
        errors=errors or {},
        message=message,
        privacy=petition.privacy_notice(request.app[keys.SETTINGS].privacy),
        headers={
            "Content-Language": texts.language,
            "Vary": "Accept-Language",
            # Not the pages' no-referrer: under it a browser sends "Origin: null" with the
            # form, which refuse_foreign_origin must refuse; the address goes to no one else.
            "Referrer-Policy": "same-origin",
            **(headers or {}),
        },
    )


@documented(
    "A petition's page",
    html=True,
    tags=("pages",),
    description=(
        "The petition in the reader's language (`?lang=`, else Accept-Language, else its "
        "default language), its count toward the goal, its top countries, the form, and "
        "share links; Open Graph and Twitter card metadata for link previews. Works "
        "without JavaScript. `?source=` is signed with."
    ),
    path_parameters={"slug": SLUG},
    query=PageLanguageQuerySchema,
    responses={200: Reply("The page.", text_types=HTML)},
    problems=(PetitionNotFound, ServiceUnavailable),
)
async def petition_page(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    reader = reader_of(request, petition, query_language(request))
    message = None if petition.effective_status == "open" else reader.texts("closed_text")
    return await render_petition(request, petition, reader, message=message)


SIGN_ANSWERS = {
    201: Reply("Thank you: the signature counts.", text_types=HTML),
    202: Reply("Check your inbox: the signature counts once confirmed.", text_types=HTML),
}


@documented(
    "Sign from the petition's page (an HTML form)",
    html=True,
    tags=("pages",),
    description=(
        "The page's form, posted as a browser does; the answer is an HTML page. The same "
        "rules as `POST /v1/petitions/{slug}/signatures`. A refusal is the page again with "
        "its form as filled in: each invalid field with its error beside it (422), or "
        "the reason above the form (409, 429, 503)."
    ),
    path_parameters={"slug": SLUG},
    body=dict.fromkeys(FORM_TYPES, SignatureFormSchema),
    responses=SIGN_ANSWERS,
    problems=(
        PetitionNotFound,
        OriginNotAllowed,
        InvalidForm,
        PetitionClosed,
        PayloadTooLarge,
        ValidationFailed,
        RateLimited,
        ServiceUnavailable,
    ),
)
async def sign_from_page(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    # Before the body is read: another site's page must not make its visitors sign.
    await refuse_foreign_origin(request, petition.slug)
    form = await read_form(request) if request.content_type in FORM_TYPES else None
    if form is None:
        count_signature("rejected", InvalidForm.code)
        raise InvalidForm()
    reader = reader_of(request, petition, form.get("language") or query_language(request))
    values = {name: form.get(name, "") for name in (*FIELD_LABELS, "source")}
    if reader.source is None and _SOURCE.match(values["source"]):
        reader = Reader(reader.texts, reader.lang, values["source"])
    try:
        if petition.effective_status != "open":
            raise PetitionClosed()
        fields = _form_schema.load(form)
        status = await record_signature(request, petition, fields)
    except Exception as exc:
        if (problem := as_problem(exc)) is None:
            raise
        count_signature("rejected", problem.code)
        return await _form_again(request, petition, reader, problem, values)
    view = await petition_view(request, petition, reader.texts, reader.lang, reader.source)
    texts = reader.texts
    title = texts.foreign(view.text.title, view.text.lang)
    if status == "counted":
        heading, text, resend = texts("thanks_title"), texts.html("thanks_text", title=title), None
    else:
        # Where to look: the address's domain (the address itself goes back only in the
        # form that asks for the link again).
        domain = Markup('<strong dir="ltr">{}</strong>').format(fields["email"].rpartition("@")[2])
        heading, text, resend = (
            texts("inbox_title"),
            texts.html("inbox_text", domain=domain),
            fields["email"],
        )
    return request.app[keys.PAGES].html(
        "signed.html",
        texts,
        status=201 if status == "counted" else 202,
        heading=heading,
        text=text,
        resend=resend,
        view=view,
    )


async def _form_again(
    request: web.Request,
    petition: Petition,
    reader: Reader,
    problem: Problem,
    values: Mapping[str, str],
) -> web.Response:
    texts = reader.texts
    if problem.status == 422:
        errors = {
            name: texts("error_required")
            if not values.get(name, "").strip()
            else texts(FIELD_ERRORS.get(name, "error_other"))
            for name in (problem.fields or {})
        }
        return await render_petition(
            request, petition, reader, status=422, values=values, errors=errors
        )
    message = {
        409: "closed_text",
        429: "rate_limited_text",
    }.get(problem.status, "unavailable_text")
    return await render_petition(
        request,
        petition,
        reader,
        status=problem.status,
        values=values,
        message=texts(message),
        headers=problem.headers,
    )


# -- the home page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    title: str
    lang: str
    url: str
    total: int | None


@documented(
    "The open petitions",
    html=True,
    tags=("pages",),
    description=(
        "Each open petition's title (in the reader's language where it has one), count "
        "and page; or, with COUNTERSIGN_HOME_PETITION set, a redirect to that petition's page."
    ),
    query=PageLanguageQuerySchema,
    responses={
        200: Reply("The list.", text_types=HTML),
        302: Reply("To the petition the settings name.", headers={"Location": ("Its page.", True)}),
    },
    problems=(ServiceUnavailable,),
)
async def home(request: web.Request) -> web.Response:
    home_petition = request.app[keys.SETTINGS].api.home_petition
    if home_petition:
        raise web.HTTPFound(f"/petitions/{quote(home_petition)}")
    pages = request.app[keys.PAGES]
    explicit = query_language(request)
    texts = pages.texts_for(request, explicit)
    accepted = parse_accept_language(request.headers.get("Accept-Language"))
    listed = []
    for petition in await list_open_petitions(request.app[keys.DB]):
        text = petition_in(petition, choose_language(petition, [explicit], accepted))
        figures = await counts_of(request, petition)
        shown = None if text.lang == petition.default_lang else text.lang
        url = petition_path(petition, lang=shown)
        listed.append(Listed(text.title, text.lang, url, figures["total"] if figures else None))
    return pages.html(
        "home.html",
        texts,
        cache=PUBLIC,
        heading=texts("home_title"),
        petitions=listed,
        headers={"Content-Language": texts.language, "Vary": "Accept-Language"},
    )


# -- the share card ---------------------------------------------------------------------------


@documented(
    "A petition's share card (1200x630 PNG)",
    tags=("pages",),
    description=(
        "The title and the current count, in the language chosen as for the page "
        "(`?lang=`, Accept-Language, the default); drawn again at most once a minute "
        "(COUNTERSIGN_CARD_REFRESH_SECONDS) per petition and language."
    ),
    path_parameters={"slug": SLUG},
    query=LanguageQuerySchema,
    responses={
        200: Reply(
            "The image.",
            media_schemas={"image/png": {"type": "string", "format": "binary"}},
            headers={"ETag": ("Of this image.", True), "Cache-Control": ("How long.", True)},
        ),
        304: Reply("Unchanged since the ETag sent in If-None-Match."),
    },
    problems=(PetitionNotFound, ValidationFailed, ServiceUnavailable),
)
async def card(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    explicit = LanguageQuerySchema().load(request.query).get("lang")
    reader = reader_of(request, petition, explicit)
    figures = await counts_of(request, petition)
    drawn = await request.app[keys.CARDS].card(
        petition,
        petition_in(petition, reader.lang),
        reader.texts,
        figures["total"] if figures else None,
    )
    settings = request.app[keys.SETTINGS].api
    headers = {
        "ETag": f'"{drawn.etag}"',
        "Cache-Control": f"public, max-age={max(int(settings.card_refresh_seconds), 1)}",
        "Content-Language": reader.lang,
        "Vary": "Accept-Language",
    }
    if any(candidate.value == drawn.etag for candidate in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=drawn.png, content_type="image/png", headers=headers)


# -- the pages' script --------------------------------------------------------------------------


@documented(
    "The pages' script, by version",
    tags=("pages",),
    path_parameters={"version": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}},
    header_parameters=IF_NONE_MATCH,
    responses={
        200: Reply(
            "The script (cached for a year: its URL changes with it).",
            text_types=("text/javascript",),
        ),
        304: NOT_MODIFIED,
    },
    problems=(NotFound,),
)
async def page_script(request: web.Request) -> web.Response:
    script = request.app[keys.PAGES].script
    # Another version (a process of the previous or next deploy wrote the page): ours,
    # but not for long, since this URL should hold other bytes.
    fresh = request.match_info["version"] == script.version
    return javascript_response(
        script.body,
        IMMUTABLE if fresh else "no-cache",
        etag=script.version,
        request=request,
    )
