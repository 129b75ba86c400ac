"""The application factory. ``create_app`` does no I/O; resources open in cleanup contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from counter_worker.keys import KeyLayout
from countersign_core.connections import create_pg_pool, create_redis
from countersign_core.settings import Settings
from countersign_domain.petitions import PetitionDirectory
from countersign_domain.signatures import Hasher, SignatureWriter
from petition_api import admin, confirmation, docs, views
from petition_api.abuse import AbuseChecks
from petition_api.appkeys import (
    ABUSE,
    COUNTS,
    DB,
    HASHER,
    LAYOUT,
    PETITIONS,
    REDIS,
    SETTINGS,
    WRITER,
)
from petition_api.cors import setup_cors
from petition_api.counts import CountsRenderer
from petition_api.errors import error_middleware
from petition_api.live import setup_live
from petition_api.observability import observe_middleware, stamp_request_id
from petition_api.partners import setup_partners
from petition_api.ratelimit import RateLimiter
from petition_api.security import security_headers
from petition_api.signature_log import setup_signature_log
from petition_api.widget import setup_widget


def create_app(settings: Settings) -> web.Application:
    database_url, redis_url = settings.require_servers()
    app = web.Application(
        middlewares=[observe_middleware, error_middleware], client_max_size=settings.max_body_bytes
    )
    app.on_response_prepare.extend([stamp_request_id, security_headers])
    app[SETTINGS] = settings
    app[LAYOUT] = KeyLayout(settings.redis_prefix)
    app[HASHER] = Hasher(settings.require_secret_key())

    async def postgres(app: web.Application) -> AsyncIterator[None]:
        app[DB] = await create_pg_pool(
            database_url, max_size=settings.db_pool_size, application_name="petition_api"
        )
        app[PETITIONS] = PetitionDirectory(app[DB], timeout=settings.backend_timeout)
        yield
        await app[DB].close()

    async def redis(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = create_redis(redis_url)
        app[COUNTS] = CountsRenderer(
            app[REDIS],
            app[LAYOUT],
            ttl=settings.counts_cache_ms / 1000,
            timeout=settings.backend_timeout,
        )
        limiter = RateLimiter(app[REDIS], app[LAYOUT], timeout=settings.backend_timeout)
        app[ABUSE] = AbuseChecks(settings, limiter, app[HASHER])
        yield
        await app[REDIS].aclose()

    async def writer(app: web.Application) -> AsyncIterator[None]:
        app[WRITER] = SignatureWriter(
            app[DB],
            confirmation_emails=settings.confirmation_emails,
            timeout=settings.backend_timeout,
        )
        yield
        await app[WRITER].close()

    app.cleanup_ctx.extend([postgres, redis, writer])
    views.add_routes(app)
    admin.add_routes(app)
    confirmation.setup(app, settings)
    setup_partners(app)
    setup_cors(app)
    setup_live(app)
    setup_widget(app)
    setup_signature_log(app)
    docs.add_routes(app)
    return app
