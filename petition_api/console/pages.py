"""The console's plumbing: who is signed in, what each page needs, forms that only the
console's own pages can send, and HTML answers for every refusal.

Every request under ``/admin`` goes through ``console_middleware``:

1. The reader's language: the console's language cookie, else the browser's.
2. The session: the ``cs_console`` cookie (HttpOnly, SameSite=Strict, Secure when the
   public URL is https) names a session the domain checks (countersign_domain/sessions.py).
3. The page's access, declared once on its handler (``console_page``): public, exporter
   or admin (the default, so a page added without thinking is closed to exporters). An
   exporter sending an admin page's request gets 403, and the audit log says so.
4. Forms: every POST carries a CSRF token, an HMAC of the session (or, before sign-in,
   of a cookie of its own) under the secret key; a missing or wrong one is 403.
5. Refusals (``Problem``) become an HTML page in the reader's language.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from enum import Enum
from typing import Any, cast

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDictProxy

from countersign_core.settings import Settings
from countersign_core.texts import TextCatalog, Texts
from countersign_domain import audit
from countersign_domain.errors import (
    CsrfRejected,
    InsufficientRole,
    InvalidForm,
    NotFound,
    Problem,
    RateLimited,
    SessionExpired,
)
from countersign_domain.sessions import ANONYMOUS, SessionPolicy, session_staff
from countersign_domain.staff import Role, Staff
from petition_api import appkeys as keys
from petition_api.client_address import client_address, limit_subject
from petition_api.errors import as_problem
from petition_api.openapi import not_api
from petition_api.ratelimit import Limit

PREFIX = "/admin"
SESSION_COOKIE = "cs_console"
FORM_COOKIE = "cs_console_form"
LANGUAGE_COOKIE = "cs_console_lang"
CSRF_FIELD = "csrf"
# The console's pages load their own stylesheet and script, and nothing else.
CONSOLE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
CONSOLE_TEXTS = web.AppKey("console_texts", TextCatalog)

STAFF = web.RequestKey("console_staff", Staff)
SESSION = web.RequestKey("console_session", str)
TEXTS = web.RequestKey("console_texts", Texts)
CSRF = web.RequestKey("console_csrf", str)
# A browser that has no form cookie yet gets this one with the answer.
_NEW_FORM_SEED = web.RequestKey("console_new_form_seed", str)


class Access(Enum):
    PUBLIC = "public"
    EXPORTER = "exporter"
    ADMIN = "admin"


_ACCESS: dict[Callable[..., object], Access] = {}


def console_page(access: Access) -> Callable[[Handler], Handler]:
    """Declare who may use a page (pages not declared are admin-only); console pages are
    for people, not part of the API document."""

    def register(handler: Handler) -> Handler:
        _ACCESS[handler] = access
        not_api(handler)
        return handler

    return register


def policy_of(settings: Settings) -> SessionPolicy:
    console = settings.console
    return SessionPolicy(console.link_minutes, console.idle_minutes, console.session_hours)


def db(request: web.Request) -> asyncpg.Pool:
    return request.config_dict[keys.DB]


def settings_of(request: web.Request) -> Settings:
    return request.config_dict[keys.SETTINGS]


def staff_of(request: web.Request) -> Staff:
    return request[STAFF]


def csrf_token(secret_key: str, seed: str) -> str:
    return hmac.new(
        secret_key.encode(), b"console csrf\0" + seed.encode(), hashlib.sha256
    ).hexdigest()


def secure_cookies(settings: Settings) -> bool:
    return (settings.mail.public_url or "").startswith("https://")


def set_cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    *,
    max_age: timedelta | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        path=f"{PREFIX}/",
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(settings_of(request)),
        max_age=int(max_age.total_seconds()) if max_age else None,
    )


def forget_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=f"{PREFIX}/")


def language_of(request: web.Request) -> str:
    return request[TEXTS].language


async def form(request: web.Request) -> MultiDictProxy[str]:
    """The form's fields (files are refused: no console form sends one)."""
    try:
        data = await request.post()
    except ValueError:
        raise InvalidForm from None
    if any(not isinstance(value, str) for value in data.values()):
        raise InvalidForm("no console form sends files")
    return cast(MultiDictProxy[str], data)


def see_other(location: str) -> web.Response:
    """303 to a console page (returned, so the middleware still stamps its headers)."""
    return web.Response(status=303, headers={"Location": location})


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    texts = request[TEXTS]
    staff = request.get(STAFF)
    page = {
        "t": texts,
        "staff": staff,
        "is_admin": staff is not None and staff.role is Role.ADMIN,
        "csrf": request[CSRF],
        "csrf_field": CSRF_FIELD,
        "path": request.path,
        "languages": sorted(request.config_dict[CONSOLE_TEXTS].languages),
        **(context or {}),
    }
    return aiohttp_jinja2.render_template(template, request, page, status=status, app_key=TEMPLATES)


def render_form_page(
    request: web.Request,
    template: str,
    listed: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    """A page that lists things and has a form: what was typed and refused (nothing by
    default), and the notice of what was just done (``?done=`` after a redirect)."""
    page = {"typed": {}, "errors": {}, "done": request.query.get("done"), **listed, **context}
    return render(request, template, page, status=status)


def problem_message(texts: Texts, problem: Problem) -> str:
    """The problem in the reader's language when the console has words for it."""
    key = f"error_{problem.code}"
    return texts(key) if key in texts.strings else problem.message


def render_problem(request: web.Request, problem: Problem) -> web.Response:
    response = render(
        request,
        "problem.html",
        {"problem": problem, "message": problem_message(request[TEXTS], problem)},
        status=problem.status,
    )
    for name, value in (problem.headers or {}).items():
        if name.lower() == "retry-after":
            response.headers[name] = value
    return response


async def limit_sign_in(request: web.Request) -> None:
    """Take one attempt from this client's sign-in allowance; 429 when none is left."""
    rate = settings_of(request).console.sign_in_limit
    client = client_address(request, settings_of(request).api.trusted_proxies)
    if rate is None or client is None:
        return
    today = await request.config_dict[keys.IP_KEYS].today()
    subject = f"console:{today.rate_limit_subject(limit_subject(client))}"
    verdict = await request.config_dict[keys.LIMITER].check(
        [Limit(subject, (("attempts", rate),), "console_sign_in")]
    )
    if verdict.exceeded:
        raise RateLimited(
            "too many sign-in attempts from here; try again later",
            headers={"Retry-After": str(max(1, round(verdict.retry_after)))},
        )


def _texts(request: web.Request) -> Texts:
    catalog = request.config_dict[CONSOLE_TEXTS]
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    return catalog.get(catalog.negotiate(chosen, request.headers.get("Accept-Language")))


async def _check_csrf(request: web.Request) -> None:
    sent = (await form(request)).get(CSRF_FIELD, "")
    if not hmac.compare_digest(sent, request[CSRF]):
        staff = request.get(STAFF)
        await audit.record(
            db(request),
            staff.name if staff else ANONYMOUS,
            "console.csrf_rejected",
            details={"route": _route(request)},
        )
        raise CsrfRejected


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "?"


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[TEXTS] = _texts(request)
    try:
        response = await _handle(request, handler)
    except Problem as exc:
        response = render_problem(request, exc) if CSRF in request else _bare(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = render_problem(request, NotFound()) if CSRF in request else _bare(NotFound())
    except Exception as exc:
        problem = as_problem(exc)
        if problem is None:
            raise
        response = render_problem(request, problem) if CSRF in request else _bare(problem)
    if _NEW_FORM_SEED in request:
        set_cookie(response, request, FORM_COOKIE, request[_NEW_FORM_SEED])
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONSOLE_POLICY)
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("X-Frame-Options", "DENY")
    return response


def _bare(problem: Problem) -> web.Response:
    return web.Response(text=problem.message, status=problem.status, content_type="text/plain")


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = settings_of(request)
    secret_key = settings.require_secret_key()
    secret = request.cookies.get(SESSION_COOKIE)
    staff = await session_staff(db(request), secret, policy_of(settings)) if secret else None
    if staff is not None and secret is not None:
        request[STAFF] = staff
        request[SESSION] = secret
        seed = secret
    elif FORM_COOKIE in request.cookies:
        seed = request.cookies[FORM_COOKIE]
    else:
        seed = request[_NEW_FORM_SEED] = secrets.token_urlsafe(32)
    request[CSRF] = csrf_token(secret_key, seed)

    match_info = request.match_info
    if match_info.http_exception is not None:
        raise match_info.http_exception
    access = _ACCESS.get(match_info.handler, Access.ADMIN)
    if access is not Access.PUBLIC:
        if staff is None:
            if request.method == "GET":
                response = web.HTTPSeeOther(f"{PREFIX}/sign-in?next={request.path_qs}")
                if secret:
                    forget_cookie(response, SESSION_COOKIE)
                raise response
            raise SessionExpired
        if access is Access.ADMIN and not staff.may(Role.ADMIN):
            await audit.record(
                db(request),
                staff.name,
                "console.forbidden",
                details={"method": request.method, "route": _route(request)},
            )
            raise InsufficientRole("this needs the admin role")
    if request.method == "POST":
        await _check_csrf(request)
    return await handler(request)
