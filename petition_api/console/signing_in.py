"""Signing in and out of the console, the language switch, and the console's two files.

A link request always gets the same page at once: the lookup and the email job are
done after the answer, in a task of their own, so neither the words nor the time taken
tell whether the address has an account. Opening a link shows a button; only pressing
it uses the link, so a mail scanner that fetches every link cannot spend it.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from typing import Any

import asyncpg
from aiohttp import web

from countersign_domain.errors import NotFound, Problem
from countersign_domain.sessions import (
    OpenedSession,
    SessionPolicy,
    request_sign_in_link,
    session_lifetime,
    sign_in_with_link,
    sign_in_with_token,
    sign_out,
)
from petition_api.console.pages import (
    CONSOLE_TEXTS,
    LANGUAGE_COOKIE,
    PREFIX,
    SESSION,
    SESSION_COOKIE,
    Access,
    console_page,
    db,
    forget_cookie,
    form,
    language_of,
    limit_sign_in,
    policy_of,
    render,
    see_other,
    set_cookie,
    settings_of,
    staff_of,
)

log = logging.getLogger("petition_api.console")

LINK_TASKS = web.AppKey("console_link_tasks", set[asyncio.Task[None]])
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//"):
        return value
    return f"{PREFIX}/"


@console_page(Access.PUBLIC)
async def sign_in_page(request: web.Request) -> web.Response:
    return render(request, "sign_in.html", {"next": safe_next(request.query.get("next"))})


@console_page(Access.PUBLIC)
async def request_link(request: web.Request) -> web.Response:
    fields = await form(request)
    email = fields.get("email", "").strip()
    if not 3 <= len(email) <= 254 or "@" not in email:
        return render(
            request,
            "sign_in.html",
            {"next": f"{PREFIX}/", "email_error": True},
            status=422,
        )
    await limit_sign_in(request)
    settings = settings_of(request)
    task = asyncio.create_task(
        _send_link(
            db(request),
            settings.require_secret_key(),
            email=email,
            language=language_of(request),
            policy=policy_of(settings),
        )
    )
    tasks = request.config_dict[LINK_TASKS]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return render(request, "sign_in_sent.html", {"minutes": settings.console.link_minutes})


async def _send_link(
    pool: asyncpg.Pool, secret_key: str, *, email: str, language: str, policy: SessionPolicy
) -> None:
    try:
        await request_sign_in_link(pool, secret_key, email=email, language=language, policy=policy)
    except Exception as exc:  # nobody waits for this task: say what failed, never who
        log.error("console sign-in link not queued: %s", type(exc).__name__)


async def finish_link_tasks(app: web.Application) -> None:
    """At shutdown: let links being queued finish (each is one short transaction)."""
    tasks: set[asyncio.Task[None]] = app[LINK_TASKS]
    if tasks:
        await asyncio.wait(tasks, timeout=5)


@console_page(Access.PUBLIC)
async def link_page(request: web.Request) -> web.Response:
    return render(request, "sign_in_link.html", {"secret": request.match_info["secret"]})


@console_page(Access.PUBLIC)
async def use_link(request: web.Request) -> web.StreamResponse:
    await limit_sign_in(request)
    policy = policy_of(settings_of(request))
    try:
        opened = await sign_in_with_link(db(request), request.match_info["secret"], policy)
    except Problem as problem:
        return _sign_in_refused(request, problem)
    return _signed_in(request, opened, f"{PREFIX}/")


@console_page(Access.PUBLIC)
async def use_token(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    await limit_sign_in(request)
    policy = policy_of(settings_of(request))
    try:
        opened = await sign_in_with_token(db(request), fields.get("token", ""), policy)
    except Problem as problem:
        return _sign_in_refused(request, problem)
    return _signed_in(request, opened, safe_next(fields.get("next")))


def _sign_in_refused(request: web.Request, problem: Problem) -> web.Response:
    context: dict[str, Any] = {"next": f"{PREFIX}/", "refused": problem}
    return render(request, "sign_in.html", context, status=problem.status)


def _signed_in(request: web.Request, opened: OpenedSession, target: str) -> web.StreamResponse:
    response = see_other(target)
    lifetime = session_lifetime(policy_of(settings_of(request)))
    set_cookie(response, request, SESSION_COOKIE, opened.secret, max_age=lifetime)
    return response


@console_page(Access.EXPORTER)
async def sign_out_now(request: web.Request) -> web.StreamResponse:
    await sign_out(db(request), request[SESSION], staff_of(request))
    response = see_other(f"{PREFIX}/sign-in")
    forget_cookie(response, SESSION_COOKIE)
    return response


@console_page(Access.PUBLIC)
async def choose_language(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    language = fields.get("language", "")
    if language not in request.config_dict[CONSOLE_TEXTS].languages:
        raise NotFound("no such language")
    response = see_other(safe_next(fields.get("next")))
    set_cookie(response, request, LANGUAGE_COOKIE, language)
    return response


@console_page(Access.PUBLIC)
async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise NotFound
    body = (resources.files("petition_api.console") / "static" / name).read_bytes()
    return web.Response(
        body=body,
        content_type=_STATIC[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
