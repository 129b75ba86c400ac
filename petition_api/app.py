"""The application factory: the one place that wires the app.

``create_app`` does no I/O. What the app holds opens in three cleanup contexts, one per
thing it stands on (Postgres, Redis, files on disk); each opens everything that needs
its back end and nothing another context opens, so their order does not matter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from counter_worker.counts import KeyLayout
from countersign_core.connections import create_pg_pool, create_redis
from countersign_core.runtime import cancel_and_wait
from countersign_core.settings import Settings
from countersign_core.texts import TextCatalog
from countersign_domain.confirmation_tokens import ConfirmationTokens
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.origins import OriginPolicy
from countersign_domain.partners import PartnerDirectory
from countersign_domain.petitions import PetitionDirectory
from countersign_domain.signatures import Hasher, SignatureWriter
from petition_api import routes
from petition_api.abuse import AbuseChecks
from petition_api.admin.auth import staff_middleware
from petition_api.admin.delivery import templates
from petition_api.appkeys import (
    ABUSE,
    CARDS,
    COUNTS,
    DB,
    HASHER,
    IP_KEYS,
    LAYOUT,
    LIMITER,
    LIVE,
    ORIGINS,
    PAGES,
    PARTNERS,
    PETITIONS,
    REDIS,
    SETTINGS,
    TEXTS,
    TOKENS,
    WIDGET,
    WRITER,
)
from petition_api.cards import CardRenderer
from petition_api.compression import compression_middleware
from petition_api.console.app import create_console_app
from petition_api.cors import add_cors_headers, is_cross_origin
from petition_api.counts import CountsRenderer
from petition_api.live_hub import LiveHub
from petition_api.observability import observe_middleware, stamp_request_id
from petition_api.pages import Pages
from petition_api.ratelimit import RateLimiter
from petition_api.security import set_security_headers
from petition_api.widget_assets import WidgetAssets


def create_app(settings: Settings) -> web.Application:
    settings.require_servers()
    secret_key = settings.require_secret_key()
    app = web.Application(
        middlewares=[compression_middleware, observe_middleware],
        client_max_size=settings.api.max_body_bytes,
    )
    app.on_response_prepare.append(answer_headers)
    app[SETTINGS] = settings
    app[LAYOUT] = KeyLayout(settings.redis.prefix)
    app[HASHER] = Hasher(secret_key)
    app[TOKENS] = ConfirmationTokens(secret_key, max_age_days=settings.confirmation.link_days)
    app[CARDS] = CardRenderer(refresh_seconds=settings.api.card_refresh_seconds)
    app.cleanup_ctx.extend([postgres, redis, files])
    app.on_shutdown.append(end_live_streams)
    app.add_routes(routes.PUBLIC)
    app.add_subapp(routes.STAFF_PREFIX, create_staff_app())
    app.add_subapp(routes.CONSOLE_PREFIX, create_console_app(settings.texts_dir))
    return app


async def answer_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``, for every answer (streams and errors included): the
    request id, the security headers, and CORS on cross-origin routes. One hook, not
    three: each is a coroutine per answer."""
    stamp_request_id(response)
    set_security_headers(response)
    if is_cross_origin(request):
        await add_cors_headers(request, response)


def create_staff_app() -> web.Application:
    staff = web.Application(middlewares=[staff_middleware])
    staff.cleanup_ctx.append(templates)
    staff.add_routes(routes.STAFF)
    return staff


async def postgres(app: web.Application) -> AsyncIterator[None]:
    """The pool, and what reads or writes through it."""
    settings = app[SETTINGS]
    database_url, _ = settings.require_servers()
    pool = app[DB] = await create_pg_pool(
        database_url,
        max_size=settings.api.db_pool_size,
        application_name="petition_api",
        transaction_pooler=settings.database.transaction_pooler,
    )
    app[PETITIONS] = PetitionDirectory(pool, timeout=settings.api.backend_timeout)
    app[IP_KEYS] = DailyIpKeys(pool, app[HASHER], timeout=settings.api.backend_timeout)
    app[PARTNERS] = PartnerDirectory(pool, timeout=settings.api.backend_timeout)
    app[ORIGINS] = OriginPolicy(pool, timeout=settings.api.backend_timeout)
    app[WRITER] = SignatureWriter(
        pool,
        confirmation_emails=settings.confirmation.emails_per_signature,
        timeout=settings.api.backend_timeout,
    )
    yield
    await app[WRITER].close()
    await pool.close()


async def redis(app: web.Application) -> AsyncIterator[None]:
    """The client, what reads or writes through it, and the live hub's subscription."""
    settings = app[SETTINGS]
    _, redis_url = settings.require_servers()
    client = app[REDIS] = create_redis(redis_url)
    app[COUNTS] = CountsRenderer(
        client,
        app[LAYOUT],
        ttl=settings.api.counts_cache_ms / 1000,
        max_age=settings.api.counts_max_age,
        breakdown_min=settings.privacy.breakdown_min,
        timeout=settings.api.backend_timeout,
    )
    limiter = app[LIMITER] = RateLimiter(
        client, settings.redis.prefix, timeout=settings.api.backend_timeout
    )
    app[ABUSE] = AbuseChecks(settings.limits, limiter, app[IP_KEYS])
    hub = app[LIVE] = LiveHub(
        redis_url,
        client,
        app[LAYOUT],
        counts=app[COUNTS],
        breakdown_min=settings.privacy.breakdown_min,
    )
    subscription = asyncio.create_task(hub.run())
    yield
    await cancel_and_wait(subscription)
    await hub.close()
    await limiter.close()
    await client.aclose()


async def files(app: web.Application) -> AsyncIterator[None]:
    """What is read from disk once: the texts, the pages' templates, the widget."""
    app[TEXTS] = TextCatalog.load(app[SETTINGS].texts_dir)
    app[PAGES] = Pages(app[TEXTS], app[SETTINGS].privacy)
    app[WIDGET] = WidgetAssets.load()
    yield


async def end_live_streams(app: web.Application) -> None:
    """At shutdown, before the contexts close: browsers reconnect to another process."""
    app[LIVE].end_streams()
