"""The worker process: ``countersign worker`` or ``python -m counter_worker``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from counter_worker.keys import KeyLayout
from counter_worker.signature_log import appender_for, log_key, with_signature_log
from counter_worker.worker import CounterWorker
from countersign_core.connections import create_pg_pool, create_redis
from countersign_core.metrics import serve_metrics
from countersign_core.runtime import configure_logging, fail, run, run_until_signalled
from countersign_core.settings import Settings, SettingsError, load_settings
from countersign_domain.signature_log.heads import LogKey, SigningKeyError

log = logging.getLogger("counter_worker")


@asynccontextmanager
async def connected_worker(
    settings: Settings, database_url: str, redis_url: str
) -> AsyncIterator[CounterWorker]:
    """A worker configured from the settings, with its connections open."""
    pool = await create_pg_pool(database_url, max_size=5, application_name="counter_worker")
    redis = create_redis(redis_url)
    try:
        yield CounterWorker(
            database_url,
            pool,
            redis,
            KeyLayout(settings.redis_prefix),
            batch_size=settings.worker_batch_size,
            lease_ms=settings.worker_lease_ms,
            poll_interval=settings.worker_poll_interval,
            stop_at=settings.worker_stop_at,
        )
    finally:
        await redis.aclose()
        await pool.close()


async def serve(settings: Settings, key: LogKey | None = None) -> None:
    if settings.worker_metrics_port:
        serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    async with connected_worker(settings, *settings.require_servers()) as worker:
        appender = appender_for(settings, worker.pool, key) if key else None
        work = with_signature_log(worker.run, appender, settings.worker_poll_interval)
        await run_until_signalled(
            work, grace=settings.worker_shutdown_grace, log=log, in_hand="batch"
        )


def main() -> None:
    try:
        settings = load_settings()
        settings.require_servers()
        configure_logging(settings.log_level)
        key = log_key(settings)
    except (SettingsError, SigningKeyError) as exc:
        fail(str(exc))
    run(serve(settings, key))
