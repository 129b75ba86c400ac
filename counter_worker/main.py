"""The worker process: ``countersign worker`` or ``python -m counter_worker``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from counter_worker.keys import KeyLayout
from counter_worker.signature_log import appender_for, log_key, with_signature_log
from counter_worker.worker import CounterWorker
from countersign_core.connections import create_pg_pool, create_redis
from countersign_core.metrics import serve_metrics
from countersign_core.runtime import configure_logging, fail, run_or_explain, run_until_signalled
from countersign_core.settings import Settings, SettingsError, load_settings
from countersign_domain.signature_log.heads import LogKey, SigningKeyError

log = logging.getLogger("counter_worker")


@asynccontextmanager
async def connected_worker(
    settings: Settings,
    database_url: str,
    redis_url: str,
    on_step: Callable[[str], None] | None = None,
) -> AsyncIterator[CounterWorker]:
    """A worker configured from the settings, with its connections open. ``database_url``
    is DATABASE_URL's or the embedded server's (which is direct)."""
    pool = await create_pg_pool(
        database_url,
        max_size=5,
        application_name="counter_worker",
        transaction_pooler=settings.database.pooled(database_url),
    )
    redis = create_redis(redis_url)
    try:
        yield CounterWorker(
            settings.database.direct(database_url),
            pool,
            redis,
            KeyLayout(settings.redis.prefix),
            settings.worker,
            on_step=on_step,
            heartbeat_interval=settings.heartbeat_interval,
        )
    finally:
        await redis.aclose()
        await pool.close()


async def serve(
    settings: Settings, key: LogKey | None = None, on_step: Callable[[str], None] | None = None
) -> None:
    async with (
        connected_worker(settings, *settings.require_servers(), on_step) as worker,
        worker.heartbeat.watching_the_loop(),
    ):
        if settings.metrics.worker_port:
            serve_metrics(
                settings.metrics.host, settings.metrics.worker_port, probes=worker.heartbeat
            )
        appender = appender_for(settings, worker.pool, key, on_step) if key else None
        work = with_signature_log(worker.run, appender, settings.worker.poll_interval)
        await run_until_signalled(
            work, grace=settings.worker.shutdown_grace, log=log, in_hand="batch"
        )


def main(on_step: Callable[[str], None] | None = None) -> None:
    """``on_step``: see CounterWorker (tests/worker_with_stop.py uses it)."""
    try:
        settings = load_settings()
        database_url, redis_url = settings.require_servers()
        settings.database.session_url()
        key = log_key(settings)
    except (SettingsError, SigningKeyError) as exc:
        fail(str(exc))
    configure_logging(settings.log_level)
    run_or_explain(serve(settings, key, on_step), database_url, redis_url)
