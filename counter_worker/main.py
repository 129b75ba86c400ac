"""The worker process: ``countersign worker`` or ``python -m counter_worker``."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign.connections import create_pg_pool, create_redis
from countersign.metrics import serve_metrics
from countersign.runtime import configure_logging, fail, run
from countersign.settings import Settings, SettingsError, load_settings

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
        )
    finally:
        await redis.aclose()
        await pool.close()


async def serve(settings: Settings) -> None:
    if settings.worker_metrics_port:
        serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    async with connected_worker(settings, *settings.require_servers()) as worker:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        work = asyncio.create_task(worker.run(stopping))
        await asyncio.wait(
            {work, asyncio.create_task(stopping.wait())}, return_when="FIRST_COMPLETED"
        )
        try:
            # Finish the batch in hand, but not forever: an unfinished batch is recovered
            # by another worker once its lease lapses.
            await asyncio.wait_for(work, settings.worker_shutdown_grace)
        except TimeoutError:
            log.warning("batch not finished within the shutdown grace; leaving it to recovery")


def main() -> None:
    try:
        settings = load_settings()
        settings.require_servers()
    except SettingsError as exc:
        fail(str(exc))
    configure_logging(settings.log_level)
    run(serve(settings))
