"""The worker process: ``countersign worker`` or ``python -m counter_worker``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.connections import create_pg_pool, create_redis
from countersign_core.metrics import serve_metrics
from countersign_core.runtime import configure_logging, fail, run, run_until_signalled
from countersign_core.settings import Settings, SettingsError, load_settings

log = logging.getLogger("counter_worker")


@asynccontextmanager
async def connected_worker(
    settings: Settings, database_url: str, redis_url: str
) -> AsyncIterator[CounterWorker]:
    """A worker configured from the settings, with its connections open."""
    pool = await create_pg_pool(database_url, max_size=4, application_name="counter_worker")
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
            ip_hash_retention_days=settings.ip_hash_retention_days,
        )
    finally:
        await redis.aclose()
        await pool.close()


async def serve(settings: Settings) -> None:
    if settings.worker_metrics_port:
        serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    async with connected_worker(settings, *settings.require_servers()) as worker:
        await run_until_signalled(
            worker.run, grace=settings.worker_shutdown_grace, log=log, in_hand="batch"
        )


def main() -> None:
    try:
        settings = load_settings()
        settings.require_servers()
    except SettingsError as exc:
        fail(str(exc))
    configure_logging(settings.log_level)
    run(serve(settings))
